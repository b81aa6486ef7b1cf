"""sandboxkit: run and debug code in Kubernetes sandboxes from a notebook."""

__version__ = "0.1.0"

__all__ = ["__version__"]
