"""The onnxprune version, in a module of its own so that no module inside the package
imports the package root (``onnxprune/__init__.py`` re-exports it)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
