"""``--recover auto`` by measurement: keep the recovery whose held-out metric is higher.

Rule: each candidate (``bias``, then ``lsq`` refitted on top of it) is measured on the
held-out data with the task metric (:func:`onnxprune.calibration.accuracy.task_metric`:
accuracy with labels, else agreement, else cosine similarity to the original); the
highest wins, the first listed on a tie. The report keeps every candidate's value.
"""

from __future__ import annotations

__all__ = ["choose_recovery"]

import logging

logger = logging.getLogger(__name__)


def choose_recovery(values: dict[str, float]) -> dict:
    """``{"chosen", "candidates", "message"}`` for ``values`` (method -> held-out metric)."""
    chosen = max(values, key=lambda name: (values[name], -list(values).index(name)))
    shown = ", ".join(f"{name} {value:.4f}" for name, value in values.items())
    message = f"recover auto: {chosen} kept (held-out metric: {shown})"
    logger.info("%s", message)
    return {"chosen": chosen, "candidates": {k: round(v, 6) for k, v in values.items()},
            "message": message}
