"""Fine-tuning settings, the job handed to the child process, and the learning rate.

1. :class:`Settings`: the keyword arguments of ``finetune``; :meth:`Settings.validate`
   raises :class:`~onnxprune.errors.UsageError` naming the bad value.
2. :class:`Job`: everything the child process needs (picklable).
3. :func:`lr_at`: the learning rate of each optimizer step: linear warm-up over
   ``warmup`` of the steps, then ``lr_schedule`` (cosine decay by default, linear, or
   constant).
"""

from __future__ import annotations

__all__ = ["SCHEDULES", "Job", "Report", "Settings", "lr_at"]

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxprune.data import DataSource
from onnxprune.errors import UsageError

SCHEDULES = ("cosine", "linear", "constant")
# progress callback of the child: (kind, payload), e.g. ("progress", {"step": 3, ...})
Report = Callable[[str, Any], None]


@dataclasses.dataclass
class Settings:
    """Fine-tuning settings (the keyword arguments of ``finetune``)."""

    loss: str = "distill"
    epochs: float = 1.0
    lr: float = 1e-3
    optimizer: str = "adamw"
    batch_size: int = 32
    seed: int = 0
    frozen: tuple[str, ...] = ()
    temperature: float = 4.0
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup: float = 0.0
    loss_weights: tuple[float, ...] | None = None
    threads: int | None = None
    optimization: str = "all"
    bn: str = "auto"
    recalibrate_bn: bool = True
    bn_samples: int = 2048
    shuffle_pool: int = 8192
    max_steps: int | None = None
    allow_frozen: bool = False
    patience: int = 2  # epochs without a better held-out loss before stopping
    distill_features: str = "auto"  # on | off | auto (= FEATURES_BY_DEFAULT)

    def validate(self) -> None:
        if self.epochs <= 0 and not self.max_steps:
            raise UsageError(f"epochs must be > 0, got {self.epochs}")
        if self.lr <= 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")
        if self.optimizer not in ("adamw", "sgd"):
            raise UsageError(f"unknown optimizer {self.optimizer!r} (adamw, sgd)")
        if self.lr_schedule not in SCHEDULES:
            raise UsageError(f"unknown lr schedule {self.lr_schedule!r} "
                             f"({', '.join(SCHEDULES)})")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if self.bn not in ("auto", "batch", "frozen"):
            raise UsageError(f"unknown bn mode {self.bn!r} (auto, batch, frozen)")
        if self.distill_features not in ("auto", "on", "off"):
            raise UsageError(f"unknown distill_features {self.distill_features!r} "
                             "(auto, on, off)")
        if self.temperature <= 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}")


@dataclasses.dataclass
class Job:
    """Everything the child process needs (picklable)."""

    model: bytes
    teacher: bytes | None
    data: DataSource
    settings: Settings
    masks: dict[str, np.ndarray] | None = None
    evaluation: DataSource | None = None  # held-out split: early stopping (early_stop.py)


def lr_at(step: int, total: int, settings: Settings) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total``."""
    warm = int(settings.warmup * total)
    if step < warm:
        return settings.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    if settings.lr_schedule == "cosine":
        return settings.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if settings.lr_schedule == "linear":
        return settings.lr * (1.0 - progress)
    return settings.lr

