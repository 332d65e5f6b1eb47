"""Training data: the synthetic labelled face set and image-folder datasets."""
