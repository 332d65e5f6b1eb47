"""Networks: the Anycost generator, its encoder, and their arithmetic cost."""
