"""Fine-tuning jobs that stop before training: what would train, and one step.

1. :func:`inspect_job`: steps 1-4 of :mod:`onnxprune.training.trainer`
   (:mod:`onnxprune.training.setup`: loss plan, legalization, artifacts, ORT sessions)
   and the trainable share, frozen nodes and loss terms; ``allow_frozen`` is implied so
   a low share is returned, not raised.
2. :func:`first_step_job`: additionally one optimizer step on the first batch in data
   order: the loss, each trained parameter's gradient norm and update norm.
"""

from __future__ import annotations

__all__ = ["first_step_job", "inspect_job"]

import numpy as np

from onnxprune.training.ort import scratch_folder
from onnxprune.training.settings import Job, Report, lr_at
from onnxprune.training.setup import TrainingSetup


def inspect_job(job: Job, report: Report) -> dict:
    """Rule 1."""
    job.settings.validate()
    job.settings.allow_frozen = True
    with scratch_folder() as folder:
        setup = TrainingSetup(job, folder, report)
        return {"trainable_share": setup.share, "frozen_nodes": setup.legal.frozen_nodes,
                "rewritten": setup.legal.rewritten, "loss": setup.plan.to_dict(),
                "trainable": setup.trainable, "notes": setup.notes}


def first_step_job(job: Job, report: Report) -> dict:
    """Rule 2 (benchmarks/finetune_vs_framework.py compares it with the framework)."""
    job.settings.validate()
    with scratch_folder() as folder:
        setup = TrainingSetup(job, folder, report)
        module, state, optimizer = setup.module, setup.state, setup.optimizer
        feeds = {**setup.first, **setup.plan.feeds(
            setup.teacher(setup.first) if setup.teacher else {}, setup.first_labels)}
        before = {n: np.array(state.parameters[n].data) for n in setup.trainable}
        module.train()
        module.lazy_reset_grad()
        loss = float(module(*[feeds[name] for name in module.input_names()]))
        grads = {n: float(np.linalg.norm(np.asarray(state.parameters[n].grad, np.float64)))
                 for n in setup.trainable}
        optimizer.set_learning_rate(lr_at(0, 1, job.settings))
        optimizer.step()
        updates = {n: float(np.linalg.norm(np.asarray(state.parameters[n].data, np.float64)
                                           - before[n])) for n in setup.trainable}
        return {"loss": loss, "grad_norms": grads, "update_norms": updates,
                "batch_size": setup.batch, "bn": setup.bn_mode, "plan": setup.plan.to_dict(),
                "trainable_share": setup.share}


