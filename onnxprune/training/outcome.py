"""What a progressive run hands back: never a collapsed model, silently (the choice; the
one-shot candidate is pruned by :mod:`onnxprune.pipeline.progressive`).

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

__all__ = ["PROGRESSIVE_MIN_SAMPLES", "choose_flow"]

import logging

logger = logging.getLogger(__name__)

PROGRESSIVE_MIN_SAMPLES = 256

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
