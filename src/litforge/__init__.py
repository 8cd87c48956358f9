"""litforge: a Lightning + Hydra experiment template."""

__version__ = "0.1.0"
