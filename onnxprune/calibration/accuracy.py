"""The number a user cares about: the task metric of the original and of the result.

Rules:

1. The task metric of a fidelity result (:mod:`onnxprune.calibration.fidelity`):
   ``accuracy`` against the labels when the evaluation data has them, else top-1
   ``agreement`` with the original (classifier and sigmoid heads), else the ``cosine
   similarity`` to the original (1 - the worst standardised cosine distance of any
   output or part). The original scores its own accuracy, 1.0 for the others.
2. ``drop`` = original - result. The budget is ``max_drop`` (``--max-drop``), else
   :data:`DEFAULT_MAX_DROP` (5 points). Only a metric measured on *held-out* data
   (``--eval-data``, or the held-out split of ``--data``) is checked against it.
3. A drop beyond the budget raises :class:`AccuracyDropError` (exit 11, nothing written)
   unless ``accept_drop``; accepted, the section says ``accepted`` and the flows warn in
   the summary, the JSON and the report.
4. Without evaluation data nothing is measured: the section says so and how to measure.
5. A held-out split of fewer than :data:`MIN_HELD_OUT` samples measures nothing
   (a sample is 1/32 = 3 points of accuracy): :class:`DataError` (exit 6) with advice.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_DROP", "MIN_HELD_OUT", "accuracy_section", "check_accuracy",
           "check_held_out", "not_measured", "task_metric"]

import logging

from onnxprune.errors import AccuracyDropError, DataError

logger = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 0.05
MIN_HELD_OUT = 32
HOW_TO_MEASURE = ("pass --eval-data FILE (held-out inputs, with 'labels' for accuracy) to "
                  "measure it, or --data to calibrate and hold part of it out with --steps")


def task_metric(metrics: dict) -> tuple[str, float, float] | None:
    """Rule 1: ``(name, result's value, original's value)``, or None."""
    if "accuracy" in metrics and "reference_accuracy" in metrics:
        return "accuracy", metrics["accuracy"], metrics["reference_accuracy"]
    if "agreement" in metrics:
        return "agreement with the original", metrics["agreement"], 1.0
    if "cosine" in metrics:
        return "cosine similarity to the original", 1.0 - metrics["cosine"], 1.0
    return None


def not_measured(reason: str) -> dict:
    """Rule 4."""
    return {"measured": False,
            "message": f"accuracy was not measured ({reason}); {HOW_TO_MEASURE}"}


def accuracy_section(metrics: dict, *, data: str, samples: int, held_out: bool,
                     max_drop: float | None, accepted: bool) -> dict:
    """Rules 1-2 as the result's ``accuracy`` section."""
    found = task_metric(metrics)
    if found is None:
        return not_measured("the outputs cannot be compared")
    name, value, original = found
    budget = DEFAULT_MAX_DROP if max_drop is None else max_drop
    samples = metrics.get("samples", samples)
    drop = round(original - value, 6)
    exceeded = held_out and drop > budget
    section = {"measured": True, "metric": name, "original": round(original, 6),
               "result": round(value, 6), "drop": drop, "max_drop": budget,
               "held_out": held_out, "data": data, "samples": samples,
               "exceeded": exceeded, "accepted": bool(exceeded and accepted),
               "fidelity": metrics}
    where = "held-out" if held_out else "calibration (not held-out)"
    section["message"] = (f"{name}: original {original:.4f}, result {value:.4f} "
                          f"(drop {drop:+.4f}) on {samples} {where} samples")
    if exceeded:
        section["message"] += (f": MORE THAN THE BUDGET {budget:g} "
                               + ("(accepted with --accept-drop)" if accepted else ""))
    return section


def check_accuracy(section: dict) -> None:
    """Rule 3."""
    if not section.get("exceeded") or section.get("accepted"):
        if section.get("accepted"):
            logger.warning("%s", section["message"])
        return
    raise AccuracyDropError(
        f"the result's {section['metric']} is {section['result']:.4f} against "
        f"{section['original']:.4f} for the original (drop {section['drop']:.4f} > "
        f"--max-drop {section['max_drop']:g}) on {section['samples']} held-out samples; "
        "nothing was written. Prune less (--target), give more --data / fine-tuning, raise "
        "--max-drop, or pass --accept-drop to write it anyway")


def check_held_out(samples: int, origin: str, split: bool) -> None:
    """Rule 5."""
    if samples >= MIN_HELD_OUT:
        return
    how = ("raise --holdout or give more --data" if split else
           "use a larger --eval-data file")
    raise DataError(f"{origin}: {samples} held-out sample(s) cannot measure accuracy (one "
                    f"sample is {100 / max(samples, 1):.0f} points; at least {MIN_HELD_OUT} "
                    f"needed): {how}, or pass --eval-data with {MIN_HELD_OUT} or more samples")
