"""evalsuite: evaluate language models with typed, reproducible, per-sample records."""

__version__ = "0.1.0"
