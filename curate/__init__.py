"""curate: build, clean and use web-scale datasets for video action understanding."""
__version__ = "0.1.0"
