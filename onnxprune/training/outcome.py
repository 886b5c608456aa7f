"""What a progressive run hands back: never a collapsed model, silently.

Rules (``compress --steps N`` with held-out evaluation data):

1. The progressive result is compared on the held-out split with the *one-shot
   candidate*: the original pruned once to the same fraction of the metric, with the
   best training-free recovery (``--recover auto`` measures ``bias`` against ``lsq`` on
   the same split). The higher task metric wins (accuracy with labels, else agreement,
   else cosine similarity; progressive on a tie); ``flow`` in the result says which and
   both values.
2. The kept model's task metric and the original's form the result's ``accuracy``
   section (:mod:`onnxprune.calibration.accuracy`): a drop beyond ``--max-drop`` (default
   0.05) is exit 11 with nothing written, unless ``--accept-drop``.
3. Progressive fine-tuning is the default with ``--data`` only from
   :data:`PROGRESSIVE_MIN_SAMPLES` training samples on; with fewer, the default is
   one-shot with the best recovery (see docs/finetune.md for the measurement), and
   ``flow`` says so. An explicit ``--steps`` is always obeyed.
"""

from __future__ import annotations

__all__ = ["PROGRESSIVE_MIN_SAMPLES", "choose_flow", "one_shot_candidate"]

import logging
import pathlib
from typing import Any

logger = logging.getLogger(__name__)

PROGRESSIVE_MIN_SAMPLES = 256

_SINGLE = {"steps": 1, "finetune_epochs": 0.0, "train_steps": None, "max_drop": None,
           "html_report": None, "bench": False, "mobile": False, "resume": False,
           "eval_data": None, "accept_drop": True}


def one_shot_candidate(model: str, options: Any, train: Any, evaluation: Any,
                       output: pathlib.Path, target: float) -> Any:
    """Rule 1: the one-shot compress result (written to ``output``, measured on
    ``evaluation``: its ``accuracy`` section holds the metrics)."""
    from onnxprune.compress import compress

    single = {**_SINGLE, "target": min(max(target, 1e-6), 1.0 - 1e-6)}
    return compress(model, output=output, report=False,
                    options=options.model_copy(update=single), calibration_data=train,
                    evaluation_data=evaluation)


def choose_flow(progressive: tuple[str, float] | None, one_shot: tuple[str, float] | None,
                ) -> dict:
    """Rule 1: ``{"chosen", "progressive", "one_shot", "metric", "message"}``."""
    if progressive is None or one_shot is None:
        return {"chosen": "progressive", "message": "progressive (nothing to compare with)"}
    name, value = progressive
    other = one_shot[1]
    chosen = "one-shot" if other > value else "progressive"
    message = (f"{chosen} kept: held-out {name} {value:.4f} progressive vs {other:.4f} "
               "one-shot with the best recovery")
    logger.info("%s", message)
    return {"chosen": chosen, "metric": name, "progressive": round(value, 6),
            "one_shot": round(other, 6), "message": message}
