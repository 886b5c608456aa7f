"""Target sweeps: the compress pipeline at every target x criterion, in parallel through
:mod:`onnxprune.parallel`, with comparable latencies, one JSON and a Pareto page."""

from __future__ import annotations

from onnxprune.sweep.html import render_sweep_html, write_sweep_html
from onnxprune.sweep.points import Point, grid, run_point
from onnxprune.sweep.run import SWEEP_SCHEMA_VERSION, default_folder, sweep

__all__ = ["SWEEP_SCHEMA_VERSION", "Point", "default_folder", "grid", "render_sweep_html",
           "run_point", "sweep", "write_sweep_html"]
