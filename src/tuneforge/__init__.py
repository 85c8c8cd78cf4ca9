"""TuneForge: turn a pretrained language model and your own data into a measured, served model."""

__version__ = "0.1.0"
