"""Fine-tuning on the ONNX graph with ONNX Runtime training (see docs/finetune.md).

``finetune(model, data, ...)`` trains a model's weights (distillation from a teacher
by default) and returns the same graph with new weights; ``cubic_schedule`` gives the
per-step targets of progressive pruning (``compress --steps N``); ``trainability`` says
what would train without training, ``first_step`` runs one optimizer step.
"""

from __future__ import annotations

from onnxprune.planning.schedule import cubic_schedule
from onnxprune.training.finetune import FinetuneResult, finetune, first_step, trainability

__all__ = ["FinetuneResult", "cubic_schedule", "finetune", "first_step", "trainability"]
