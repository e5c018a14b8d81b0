"""minivae: autoencoders, denoising autoencoders and VAEs from first principles."""

__version__ = "0.1.0"
