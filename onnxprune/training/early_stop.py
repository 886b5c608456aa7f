"""Early stopping inside one fine-tuning run, on a held-out split.

Rules (:class:`HeldOut`):

1. After every epoch the held-out data is run through ONNX Runtime's *eval* model (the
   same loss as training, inference semantics: no dropout, stored BatchNormalization
   statistics) in full batches of the training batch size; the epoch's held-out loss
   is the mean over those batches. The loss inputs come from the teacher (distill) or
   the held-out labels (ce, mse), exactly as in training.
2. The weights of the epoch with the lowest held-out loss are kept (a copy of the
   trained parameters); after ``patience`` epochs without a lower loss (relative
   improvement below ``min_delta``) training stops.
3. At the end the best weights are written back into the training state, so the
   exported model and its recomputed BatchNormalization statistics are those of the
   best epoch. ``summary()`` says how many epochs ran, which was best and whether it
   stopped early.
4. Held-out data smaller than one batch cannot be scored: early stopping is off, with
   a note.
"""

from __future__ import annotations

__all__ = ["HeldOut"]

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxprune.data import DataSource

logger = logging.getLogger(__name__)


class HeldOut:
    """Rules 1-4 for one run; ``loss_feeds(feeds, labels)`` gives the loss inputs."""

    def __init__(self, data: DataSource | None, batch: int, patience: int,
                 loss_feeds: Callable[[dict, Any], dict], min_delta: float = 1e-4) -> None:
        self.data, self.batch, self.patience, self.min_delta = data, batch, patience, min_delta
        self.loss_feeds = loss_feeds
        self.best: float | None = None
        self.best_epoch = 0
        self.epochs = 0
        self.stopped = False
        self.weights: dict[str, np.ndarray] | None = None
        self.note: str | None = None
        if data is not None and data.num_samples < batch:
            self.note = (f"early stopping off: {data.num_samples} held-out samples, fewer than "
                         f"one training batch of {batch}")
            logger.warning("%s", self.note)
            self.data = None

    @property
    def active(self) -> bool:
        return self.data is not None

    def score(self, module: Any) -> float:
        """Rule 1: the mean eval-model loss over the held-out batches."""
        order = module.input_names()
        module.eval()
        losses = []
        for labels, feeds in self.data.labeled_batches(self.batch):
            if len(next(iter(feeds.values()))) < self.batch:
                break
            inputs = {**feeds, **self.loss_feeds(feeds, labels)}
            losses.append(float(module(*[inputs[name] for name in order])))
        module.train()
        return float(np.mean(losses))

    def after_epoch(self, epoch: int, module: Any, state: Any, names: list[str]) -> dict:
        """Rule 2 after ``epoch``; returns what to record in the epoch's history entry."""
        self.epochs = epoch
        value = self.score(module)
        if self.best is None or value < self.best - self.min_delta * abs(self.best):
            self.best, self.best_epoch = value, epoch
            self.weights = {n: np.array(state.parameters[n].data) for n in names}
        elif epoch - self.best_epoch >= self.patience:
            self.stopped = True
            logger.info("early stopping after epoch %d: held-out loss %.6g, best %.6g at "
                        "epoch %d", epoch, value, self.best, self.best_epoch)
        return {"heldout_loss": value}

    def restore(self, state: Any) -> bool:
        """Rule 3: write the best epoch's weights back; True when they differ from the
        last epoch's."""
        if self.weights is None or self.best_epoch == self.epochs:
            return False
        for name, value in self.weights.items():
            state.parameters[name].data = value
        return True

    def summary(self) -> dict:
        if not self.active:
            return {"early_stopping": False, **({"note": self.note} if self.note else {})}
        return {"early_stopping": True, "epochs_run": self.epochs, "best_epoch": self.best_epoch,
                "best_heldout_loss": self.best, "stopped_early": self.stopped}
