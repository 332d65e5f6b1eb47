"""Reading and writing model files (the project's format and official checkpoints)."""
