"""The fine-tuning step of progressive sparsity: ``onnxprune.training.finetune``.

Rules:

1. ``onnxprune.training`` (ONNX Runtime training) is imported only when fine-tuning
   runs; when it is missing a :class:`RuntimeMissingError` says what to install.
2. Every call passes the current masks (initializer name -> 0/1 array shaped like the
   weight): the trainer re-applies them after every optimizer step, so masked weights
   stay exactly zero. The dense original model is the distillation teacher.
3. The masks are applied once more to the returned model and any weight that was not
   exactly zero is counted (``violations``): the output never stores a masked non-zero.
"""

from __future__ import annotations

__all__ = ["FinetuneSettings", "finetune_masked", "load_finetune"]

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.errors import RuntimeMissingError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    epochs: float
    lr: float
    batch_size: int
    seed: int
    loss: str = "distill"
    optimizer: str = "adamw"
    temperature: float = 4.0
    max_steps: int | None = None  # optimizer steps instead of epochs


def load_finetune() -> Callable:
    """``onnxprune.training.finetune`` (rule 1)."""
    try:
        from onnxprune.training import finetune
    except ImportError as exc:
        missing = getattr(exc, "name", "") or ""
        if missing.startswith("onnxprune.training") or missing == "onnxprune":
            raise RuntimeMissingError(
                "fine-tuning (--finetune-epochs > 0) needs onnxprune.training, the ONNX "
                "Runtime training integration, which this onnxprune build lacks; run with "
                "--finetune-epochs 0 (one-shot) or install an onnxprune with training "
                "support and pip install 'onnxprune[train]'") from exc
        raise RuntimeMissingError(f"fine-tuning needs ONNX Runtime training: {exc}; "
                                  "pip install 'onnxprune[train]'") from exc
    return finetune


def finetune_masked(model: onnx.ModelProto, teacher: onnx.ModelProto, data,
                    masks: dict[str, np.ndarray], settings: FinetuneSettings,
                    ) -> tuple[onnx.ModelProto, dict]:
    """Fine-tune ``model`` with ``masks`` held (rules 2-3); ``(model, info)``."""
    finetune = load_finetune()
    inits = {t.name: t for t in model.graph.initializer}
    mask_arrays = {name: keep.astype(numpy_helper.to_array(inits[name]).dtype)
                   for name, keep in masks.items()}
    logger.info("fine-tuning %.2f epoch(s) with %d masked weights", settings.epochs,
                len(mask_arrays))
    result = finetune(model, data, teacher=teacher, epochs=settings.epochs, lr=settings.lr,
                      batch_size=settings.batch_size, seed=settings.seed, masks=mask_arrays,
                      loss=settings.loss, optimizer=settings.optimizer,
                      temperature=settings.temperature, max_steps=settings.max_steps)
    tuned = result.model
    return tuned, {"epochs": settings.epochs, "lr": settings.lr,
                   "violations": reapply_masks(tuned, masks)}


def reapply_masks(model: onnx.ModelProto, masks: dict[str, np.ndarray]) -> int:
    """Zero the masked entries of ``model``'s initializers in place; return how many
    were not already exactly zero."""
    violations = 0
    for tensor in model.graph.initializer:
        keep = masks.get(tensor.name)
        if keep is None:
            continue
        array = numpy_helper.to_array(tensor)
        wrong = int(np.count_nonzero(array[~keep]))
        if wrong:
            violations += wrong
            array = np.where(keep, array, np.zeros((), dtype=array.dtype)).astype(array.dtype)
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return violations
