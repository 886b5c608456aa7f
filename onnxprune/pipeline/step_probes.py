"""What a progressive run measures once, on the original model (steps.py rule 9).

Rules:

1. ``--metric latency``: the latency table of the original (measured, or read from its
   cache) is made once; every step plans on it
   (:func:`onnxprune.benchmark.latency_check.plan_latency_step`).
2. ``--round-to auto`` (asked for, or the default with ``--metric latency``): the
   original's layers are probed once (:func:`onnxprune.benchmark.layer_steps.auto_group_round`)
   and every step keeps those channel blocks per source layer (names survive the
   rewrite), instead of probing each step model's new widths.
3. Each of them adds one note to the run.
"""

from __future__ import annotations

__all__ = ["OriginalProbes"]

from typing import Any

import onnx
import onnx_ir as ir

from onnxprune.options import CompressOptions
from onnxprune.pipeline.calibrated import uses_round_auto


class OriginalProbes:
    """Rules 1-3, computed on first use and kept for the run."""

    def __init__(self, original: onnx.ModelProto, options: CompressOptions,
                 notes: list[str]) -> None:
        self.original, self.options, self.notes = original, options, notes
        self._latency_base: tuple | None = None
        self._round_base: tuple | None = None
        self._analysis: Any = None

    def _original(self) -> tuple[onnx.ModelProto, Any]:
        """The runtime proto of the original and its analysis made once."""
        if self._analysis is None:
            from onnxprune.analysis import analyze
            from onnxprune.graph.runtime import to_runtime_proto

            proto = to_runtime_proto(self.original)
            analysis = analyze(ir.serde.deserialize_model(proto),
                               prune_hidden=self.options.prune_hidden)
            analysis.ignore(self.options.ignore)
            self._analysis = (proto, analysis)
        return self._analysis

    def round_blocks(self) -> tuple | None:
        """Rule 2: the ``--round-to auto`` blocks, probed once on the original."""
        if not uses_round_auto(self.options):
            return None
        if self._round_base is None:
            from onnxprune.benchmark.latency_check import settings_of
            from onnxprune.benchmark.layer_steps import auto_group_round, describe

            proto, analysis = self._original()
            self._round_base, info = auto_group_round(proto, analysis,
                                                      settings_of(self.options))
            self.notes.append(describe(info) + " (probed once, on the original; every step "
                              "keeps these blocks)")
        return self._round_base

    def latency_table(self) -> tuple | None:
        """Rule 1: (table, cache file) of the original, measured once per run."""
        if self.options.metric != "latency":
            return None
        if self._latency_base is None:
            from onnxprune.benchmark.latency_check import settings_of
            from onnxprune.benchmark.latency_table import latency_table

            proto, analysis = self._original()
            table, _, info = latency_table(proto, analysis, settings_of(self.options))
            self._latency_base = (table, info["cache"])
            self.notes.append(f"--metric latency: one latency table of the original for every "
                              f"step ({info['cache']}, "
                              f"{'from the cache' if info['cache_hit'] else 'measured'})")
        return self._latency_base
