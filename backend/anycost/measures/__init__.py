"""How close two images are: PSNR and LPIPS.

Inference (projection, the preview choice, the search) and training measure alike, so these live
outside ``training``: ``psnr`` (images in [-1, 1]) and ``perceptual`` (LPIPS from locally cached
backbone weights, never downloaded).
"""
