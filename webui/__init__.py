"""Portrait-focused Stable Diffusion web UI."""

__version__ = "0.1.0"
