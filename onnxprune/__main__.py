"""``python -m onnxprune`` runs the command line."""

from __future__ import annotations

from onnxprune.cli import main

main()
