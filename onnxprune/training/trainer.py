"""The fine-tuning job, run in a child process (see :mod:`onnxprune.training.isolate`).

Steps of :func:`run_job`, one concern per module:

1-4. Setup (:mod:`onnxprune.training.setup`): the loss plan on the first full batch,
     the legalized model (checked equal to the model on that batch), the
     BatchNormalization mode (``bn="auto"``), the trainable parameters, the ORT
     artifacts (ops ORT rejects are frozen and the build retried) and the
     trainable-share check.
5. Train (:mod:`onnxprune.training.loop`): shuffled fixed-size batches, the learning
   rate of :func:`~onnxprune.training.settings.lr_at`, masks re-applied after every
   optimizer step, early stopping on a held-out split.
6. Recompute BatchNormalization statistics (:mod:`onnxprune.training.batchnorm`) and
   write them into the checkpoint (with ``recalibrate_bn=False``: export the running
   statistics ORT updated with momentum while training), then check that the original
   op structure with the trained weights equals the legalized model with them
   (``export_diff``) and that its numpy loss equals the eval model's loss on the first
   batch.

The settings and the job itself live in :mod:`onnxprune.training.settings`; the names
callers import (``Job``, ``Settings``, ``lr_at``, ``run_job`` ...) stay importable from
here.
"""

from __future__ import annotations

__all__ = ["MAX_RETRIES", "MIN_TRAINABLE", "Job", "Settings", "finetune_row", "lr_at",
           "run_job", "tensor_values"]

import logging

import numpy as np

from onnxprune.data import DataSource
from onnxprune.errors import VerificationError
from onnxprune.graph import runtime
from onnxprune.training.batchnorm import recalibrate
from onnxprune.training.legalize import max_relative_diff
from onnxprune.training.loop import held_out, train
from onnxprune.training.ort import scratch_folder
from onnxprune.training.params import with_weights
from onnxprune.training.settings import Job, Report, Settings, lr_at
from onnxprune.training.setup import MAX_RETRIES, MIN_TRAINABLE, TrainingSetup
from onnxprune.training.share import finetune_row
from onnxprune.training.tensors import tensor_values

logger = logging.getLogger(__name__)


def _bn_batches(data: DataSource, batch: int, limit: int):
    seen = 0
    for feeds in data.batches(batch):
        if len(next(iter(feeds.values()))) < batch or seen >= limit:
            return
        seen += batch
        yield feeds


def run_job(job: Job, report: Report) -> dict:
    """Steps 1-6; returns the trained arrays and what happened (plain data)."""
    job.settings.validate()
    with scratch_folder() as folder:
        setup = TrainingSetup(job, folder, report)
        held = held_out(setup, job)
        history, seconds, steps = train(setup, job, report, held)
        state = setup.state
        arrays = {name: np.array(state.parameters[name].data) for name in setup.trainable}
        legal = with_weights(setup.legal.model, arrays)
        if setup.bn_stats and job.settings.recalibrate_bn:
            stats = recalibrate(legal, _bn_batches(job.data, setup.batch,
                                                   job.settings.bn_samples))
            for name, value in stats.items():
                state.parameters[name].data = value
        else:  # ORT's momentum updates of the running statistics (frozen parameters)
            stats = {name: np.array(state.parameters[name].data) for name in setup.bn_stats}
        if stats:
            arrays.update(stats)
            legal = with_weights(setup.legal.model, arrays)
        exported = with_weights(setup.model, arrays)
        reference = runtime.make_session(legal, optimize=False).run(None, setup.first)
        exported_values = tensor_values(exported, setup.heads, setup.first,
                                        tuple(setup.plan.tensors))
        outputs = [exported_values[o.name] for o in exported.graph.output]
        export_diff = max_relative_diff(outputs, reference)
        if export_diff > 1e-4:
            raise VerificationError(
                f"the fine-tuned model differs from its training form by {export_diff:.1e}; "
                "this is an onnxprune bug, please report it")
        loss_feeds = setup.plan.feeds(setup.teacher(setup.first) if setup.teacher else {},
                                      setup.first_labels)
        setup.module.eval()
        eval_feeds = {**setup.first, **loss_feeds}
        eval_loss = float(setup.module(*[eval_feeds[n] for n in setup.module.input_names()]))
        return {
            "arrays": arrays, "history": history, "notes": setup.notes,
            "trainable": setup.trainable, "frozen": setup.frozen,
            "frozen_nodes": setup.legal.frozen_nodes, "rewritten": setup.legal.rewritten,
            "loss": setup.plan.to_dict(), "batch_size": setup.batch, "steps": steps,
            "bn": setup.bn_mode,
            "seconds": round(seconds, 3),
            "samples_per_second": round(steps * setup.batch / seconds, 1) if seconds else None,
            "export_diff": export_diff, "eval_loss": eval_loss,
            "exported_loss": setup.plan.value(exported_values, loss_feeds),
            "trainable_params": int(sum(np.asarray(a).size for n, a in arrays.items()
                                        if n in setup.trainable)),
            "trainable_share": setup.share, "early_stopping": held.summary(),
        }

