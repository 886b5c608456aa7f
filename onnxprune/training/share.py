"""The trainable share of a fine-tuning run and what it adds to a progressive step row.

1. :func:`trainable_share`: parameters (elements) trained of those the user did not
   freeze; below :data:`onnxprune.training.setup.MIN_TRAINABLE` the trainer stops
   with :class:`onnxprune.errors.FrozenError` (exit 10) unless ``allow_frozen``.
2. :func:`share_line` is the line the CLI, the notes and the report show.
3. :func:`finetune_row`: the flat values a step row gets from a fine-tuning summary.
"""

from __future__ import annotations

__all__ = ["finetune_row", "share_line", "trainable_share"]

from typing import Any

import numpy as np
import onnx


def trainable_share(model: onnx.ModelProto, candidates: list[str], trainable: list[str],
                    ) -> dict:
    """``{"trainable", "total", "fraction"}``: parameters (elements) trained of those the
    user did not freeze."""
    sizes = {t.name: int(np.prod(t.dims)) if t.dims else 1 for t in model.graph.initializer}
    total = sum(sizes.get(c, 0) for c in candidates)
    trained = sum(sizes.get(c, 0) for c in trainable)
    return {"trainable": trained, "total": total,
            "fraction": round(trained / total, 6) if total else 1.0}


def share_line(share: dict) -> str:
    """``trainable: X of Y parameters (Z%)``."""
    return (f"trainable: {share['trainable']} of {share['total']} parameters "
            f"({100 * share['fraction']:.1f}%)")


def finetune_row(summary: dict) -> dict:
    """What a fine-tuning summary (``FinetuneResult.summary()``) adds to a progressive
    step's row, as flat values: the trainable share, the frozen nodes with reasons, and
    the tensor every loss term reads."""
    row: dict[str, Any] = {}
    share = summary.get("trainable_share") or {}
    if share:
        row["trainable"] = share_line(share).split(": ", 1)[1]
        row["trainable_fraction"] = share["fraction"]
    if summary.get("frozen_nodes"):
        row["frozen"] = "; ".join(f"{k}: {v}" for k, v in summary["frozen_nodes"].items())
    stopping = summary.get("early_stopping") or {}
    if stopping.get("early_stopping"):
        row["epochs_run"], row["best_epoch"] = stopping["epochs_run"], stopping["best_epoch"]
    terms = (summary.get("loss") or {}).get("terms")
    if terms:
        row["loss_reads"] = ", ".join(f"{t['output']} <- {t['reads']} ({t['kind']})"
                                      for t in terms)
    return row


