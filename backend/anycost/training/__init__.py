"""Training: Anycost GAN training (staged, multi-resolution, adaptive channels), few-shot
training, losses, discriminators and metrics."""
