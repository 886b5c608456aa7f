"""Step 5 of a fine-tuning job: the training loop.

1. Shuffled fixed-size batches (:mod:`onnxprune.training.batches`), the learning rate of
   every step from :func:`~onnxprune.training.settings.lr_at`.
2. Masks (sparsity) re-applied after every optimizer step, so masked weights stay zero.
3. Teacher outputs per sample computed once and cached (at most 256 MiB; beyond that
   they are recomputed per batch).
4. A non-finite loss stops with :class:`~onnxprune.errors.UnsupportedModelError` ("lower
   --lr").
5. With a held-out split (``Job.evaluation``) the held-out loss is measured after every
   epoch, the best epoch's weights are kept and training stops after ``patience`` epochs
   without improvement (:mod:`onnxprune.training.early_stop`).
"""

from __future__ import annotations

__all__ = ["TeacherCache", "apply_masks", "held_out", "train"]

import logging
import math
import time
from typing import Any

import numpy as np

from onnxprune.errors import UnsupportedModelError
from onnxprune.training.batches import shuffled_batches, steps_per_epoch
from onnxprune.training.early_stop import HeldOut
from onnxprune.training.settings import Job, Report, lr_at
from onnxprune.training.setup import TrainingSetup
from onnxprune.training.tensors import Tensors

logger = logging.getLogger(__name__)


def apply_masks(state: Any, masks: dict[str, np.ndarray]) -> None:
    """Rule 2: multiply every masked parameter by its mask."""
    for name, mask in masks.items():
        parameter = state.parameters[name]
        parameter.data = (parameter.data * mask).astype(np.float32)


class TeacherCache:
    """Rule 3: teacher outputs per sample position, computed once (at most ``limit`` bytes)."""

    def __init__(self, tensors: Tensors | None, samples: int, limit: int = 256 << 20) -> None:
        self.tensors, self.samples, self.limit = tensors, samples, limit
        self.store: dict[str, np.ndarray] | None = None
        self.filled = np.zeros(samples, dtype=bool)
        self.enabled = tensors is not None

    def __call__(self, batch) -> dict[str, np.ndarray]:
        if self.tensors is None:
            return {}
        pos = batch.positions
        if self.store is not None and self.filled[pos].all():
            return {k: s[pos] for k, s in self.store.items()}
        outputs = self.tensors(batch.feeds)
        if self.enabled and self.store is None:
            size = sum(o.nbytes for o in outputs.values()) // len(pos) * self.samples
            self.enabled = size <= self.limit
            if self.enabled:
                self.store = {k: np.zeros((self.samples, *o.shape[1:]), o.dtype)
                              for k, o in outputs.items()}
        if self.store is not None:
            for name, value in outputs.items():
                self.store[name][pos] = value
            self.filled[pos] = True
        return outputs



def held_out(setup: TrainingSetup, job: Job) -> HeldOut:
    """Rule 5: the held-out measurement of ``job.evaluation`` (inactive without it)."""
    def loss_feeds(feeds: dict, labels: Any) -> dict:
        return setup.plan.feeds(setup.teacher(feeds) if setup.teacher else {}, labels)

    return HeldOut(job.evaluation, setup.batch, job.settings.patience, loss_feeds)


def train(setup: TrainingSetup, job: Job, report: Report,
          held: HeldOut) -> tuple[list[dict], float, int]:
    """Rules 1-5; returns the per-epoch history, the seconds spent and the steps taken."""
    settings, data = job.settings, job.data
    module, optimizer, state = setup.module, setup.optimizer, setup.state
    masks = {k: np.asarray(v, np.float32) for k, v in (job.masks or {}).items()
             if k in setup.trainable}
    apply_masks(state, masks)
    per_epoch = steps_per_epoch(data, setup.batch)
    total = settings.max_steps or max(1, round(settings.epochs * per_epoch))
    order = module.input_names()
    rng = np.random.default_rng(settings.seed)
    history, step, started = [], 0, time.perf_counter()
    teacher = TeacherCache(setup.teacher, data.num_samples)
    module.train()
    epoch = 0
    while step < total:
        epoch += 1
        losses, epoch_start = [], time.perf_counter()
        for batch in shuffled_batches(data, setup.batch, rng, settings.shuffle_pool):
            lr = lr_at(step, total, settings)
            optimizer.set_learning_rate(lr)
            feeds = dict(batch.feeds)
            feeds.update(setup.plan.feeds(teacher(batch), batch.labels))
            module.lazy_reset_grad()
            loss = float(module(*[feeds[name] for name in order]))
            optimizer.step()
            if masks:
                apply_masks(state, masks)
            if not math.isfinite(loss):
                raise UnsupportedModelError(
                    f"the training loss became {loss} at step {step + 1}; lower --lr")
            losses.append(loss)
            step += 1
            if step % max(1, total // 50) == 0 or step == total:
                report("progress", {"epoch": epoch, "step": step, "steps": total,
                                    "loss": float(np.mean(losses)), "lr": lr})
            if step >= total:
                break
        seconds = time.perf_counter() - epoch_start
        history.append({"epoch": epoch, "steps": len(losses), "loss": float(np.mean(losses)),
                        "lr": lr, "seconds": round(seconds, 3),
                        "samples_per_second": round(len(losses) * setup.batch / seconds, 1)})
        if held.active:
            history[-1].update(held.after_epoch(epoch, module, state, setup.trainable))
            if held.stopped:
                break
    if held.restore(state):
        logger.info("kept the weights of epoch %d (lowest held-out loss)", held.best_epoch)
    return history, time.perf_counter() - started, step

