"""The fine-tuning job, run in a child process (see :mod:`onnxprune.training.isolate`).

Steps of :func:`run_job`:

1. Read the first full batch; run the model (and the teacher) on it to plan the
   loss (:mod:`onnxprune.training.losses`).
2. Legalize the model at the training batch (:mod:`onnxprune.training.legalize`) and
   check that it equals the model on that batch.
3. ``bn="auto"`` (default) trains BatchNormalization with batch statistics when they
   fit the data (:func:`onnxprune.training.batchnorm.statistics_mismatch` <=
   ``BN_MISMATCH``), else keeps the stored statistics (``frozen``) with a note.
   Trainable = the candidate initializers (:mod:`onnxprune.training.params`) minus
   ``frozen`` and what frozen nodes depend on. BatchNormalization running statistics
   are listed as frozen parameters so the eval model reads them from the checkpoint.
4. Build the artifacts. When ONNX Runtime rejects an op at build or load time, the
   nodes of that op are frozen and the build is retried (at most
   ``MAX_RETRIES`` times); the rejection is reported as a warning.
5. Train: shuffled fixed-size batches, learning rate per step from the schedule
   (linear warm-up over ``warmup`` of the steps, then cosine decay by default),
   masks re-applied after every optimizer step. With a held-out split
   (``Job.evaluation``) the held-out loss is measured after every epoch, the best
   epoch's weights are kept and training stops after ``patience`` epochs without
   improvement (:mod:`onnxprune.training.early_stop`).
6. Recompute BatchNormalization statistics (:mod:`onnxprune.training.batchnorm`) and
   write them into the checkpoint (with ``recalibrate_bn=False``: export the running
   statistics ORT updated with momentum while training), then check that the original
   op structure with the trained weights equals the legalized model with them
   (``export_diff``) and that its numpy loss equals the eval model's loss on the first
   batch.
"""

from __future__ import annotations

__all__ = ["MAX_RETRIES", "MIN_TRAINABLE", "Job", "Settings", "finetune_row", "lr_at",
           "run_job", "tensor_values"]

import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.data import DataSource
from onnxprune.errors import (
    DataError,
    FrozenError,
    UnsupportedModelError,
    UsageError,
    VerificationError,
)
from onnxprune.graph import runtime
from onnxprune.graph.outputs import output_heads
from onnxprune.training.batches import shuffled_batches, steps_per_epoch
from onnxprune.training.batchnorm import batchnorm_stats, recalibrate, statistics_mismatch
from onnxprune.training.early_stop import HeldOut
from onnxprune.training.features import feature_map, match_channels
from onnxprune.training.legalize import legalize, max_relative_diff
from onnxprune.training.losses import add_feature_term, append_loss, plan_loss
from onnxprune.training.ort import (
    build_artifacts,
    import_training,
    runtime_ready,
    scratch_folder,
    training_session_options,
)
from onnxprune.training.params import select_frozen, trainable_candidates, with_weights
from onnxprune.training.share import finetune_row, share_line, trainable_share
from onnxprune.training.tensors import Tensors, tensor_values

logger = logging.getLogger(__name__)

MAX_RETRIES = 4
MIN_TRAINABLE = 0.9  # below this share of the weights, fine-tuning stops (FrozenError)
BN_MISMATCH = 0.2  # relative output distance above which bn="auto" keeps BN statistics
SCHEDULES = ("cosine", "linear", "constant")
FEATURES_BY_DEFAULT = False  # distill_features="auto" (measured: docs/finetune.md)


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


Report = Callable[[str, Any], None]


def _ort_message(exc: Exception) -> str:
    """ORT's error without the C++ source location and signature."""
    text = " ".join(str(exc).split())
    if " was false. " in text:
        text = text.split(" was false. ", 1)[1]
    return text[:300]


def _rejected(message: str, model: onnx.ModelProto) -> str | None:
    """What ORT rejected: ``node:NAME`` when it names a node, else ``op:TYPE``."""
    match = re.search(r"registered: (\w+) for node (\S+)", message)
    if match:
        return f"node:{match.group(2)}"
    ops = sorted({n.op_type for n in model.graph.node}, key=len, reverse=True)
    for op in ops:
        if re.search(rf"\b{re.escape(op)}(Grad)?\b", message):
            return f"op:{op}"
    return None


class _Setup:
    """Steps 1-4: loss plan, legalized model, artifacts, ORT training objects."""

    def __init__(self, job: Job, folder: str, report: Report) -> None:
        settings = job.settings
        self.model = runtime_ready(onnx.load_from_string(job.model))
        data = job.data
        batch = data.fixed_batch or settings.batch_size
        if data.num_samples < batch:
            if data.fixed_batch:
                raise DataError(f"{data.origin}: {data.num_samples} samples, fewer than the "
                                f"model's fixed batch of {batch}")
            logger.warning("only %d samples: training batch reduced from %d", data.num_samples,
                           batch)
            batch = data.num_samples
        self.batch = batch
        self.first_labels, self.first = next(data.labeled_batches(batch))
        self.heads = output_heads(self.model)
        values = tensor_values(self.model, self.heads, self.first)
        outputs = [values[o.name] for o in self.model.graph.output]
        self.teacher: Tensors | None = None
        teacher_values, teacher_heads = None, None
        if settings.loss == "distill":
            teacher = runtime_ready(onnx.load_from_string(job.teacher)) if job.teacher \
                else self.model
            teacher_heads = output_heads(teacher)
            self.teacher = Tensors(teacher, teacher_heads)
            teacher_values = self.teacher(self.first)
        self.plan = plan_loss(settings.loss, self.heads, values, teacher_values,
                              settings.temperature, settings.loss_weights, teacher_heads)
        self.feature_note: str | None = None
        wanted = settings.distill_features == "on" or (
            settings.distill_features == "auto" and FEATURES_BY_DEFAULT)
        if settings.loss == "distill" and wanted:
            self._add_feature_term(teacher, teacher_heads)
        self.bn_mode, self.bn_note = self._bn_mode(settings.bn)
        self._build(job, folder, report, outputs)

    def _add_feature_term(self, teacher: onnx.ModelProto, teacher_heads: list) -> None:
        """Intermediate-feature distillation (:mod:`onnxprune.training.features`)."""
        student_name = feature_map(self.model, self.heads, _shapes(self.model))
        teacher_name = feature_map(teacher, teacher_heads, _shapes(teacher))
        if student_name is None or teacher_name is None:
            self.feature_note = "no feature map before the head: feature distillation off"
            logger.warning("%s", self.feature_note)
            return
        student = tensor_values(self.model, self.heads, self.first, (student_name,))
        self.teacher = Tensors(teacher, teacher_heads, (teacher_name,))
        reference = self.teacher(self.first)
        channels = match_channels(student[student_name], reference[teacher_name])
        term = add_feature_term(self.plan, student_name, teacher_name, channels,
                                student[student_name], reference[teacher_name])
        logger.info("feature distillation: %s", term.reason)

    def _bn_mode(self, requested: str) -> tuple[str, str | None]:
        """``auto``: batch statistics when the model's stored ones fit the data."""
        if requested != "auto" or not batchnorm_stats(self.model):
            return ("batch" if requested == "auto" else requested), None
        mismatch = statistics_mismatch(self.model, self.first)
        if mismatch <= BN_MISMATCH:
            return "batch", None
        note = (f"BatchNormalization kept its statistics (bn=frozen): with batch statistics "
                f"the outputs differ by {mismatch:.0%} on this data (> {BN_MISMATCH:.0%})")
        logger.warning("%s", note)
        return "frozen", note

    def _build(self, job: Job, folder: str, report: Report, outputs: list) -> None:
        settings = job.settings
        _, api = import_training()
        extra: dict[str, str] = {}
        for attempt in range(MAX_RETRIES + 1):
            legal = legalize(self.model, self.batch, self.first, extra, bn=self.bn_mode)
            diff = max_relative_diff(runtime.make_session(legal.model, optimize=False).run(
                None, self.first), outputs)
            if diff > 1e-4:
                raise UnsupportedModelError(
                    f"the training form of the model differs from it by {diff:.1e} "
                    "(relative); this is an onnxprune bug, please report it")
            present = {t.name for t in legal.model.graph.initializer}
            candidates = [c for c in trainable_candidates(self.model) if c in present]
            frozen = select_frozen(candidates, settings.frozen) | legal.frozen_params
            trainable = [c for c in candidates if c not in frozen]
            if not trainable:
                raise UsageError("nothing to fine-tune: every weight is frozen "
                                 f"({len(candidates)} candidates)")
            self.bn_stats = [n for n in batchnorm_stats(legal.model) if n not in trainable]
            frozen_list = sorted((set(candidates) & frozen) | set(self.bn_stats))
            try:
                self.artifacts = build_artifacts(
                    append_loss(legal.model, self.plan), trainable, frozen_list,
                    f"{folder}/a{attempt}", settings.optimizer, settings.weight_decay)
                self.state = api.CheckpointState.load_checkpoint(self.artifacts.checkpoint)
                options = training_session_options(settings.threads, settings.optimization)
                self.module = api.Module(self.artifacts.training_model, self.state,
                                         self.artifacts.eval_model, session_options=options)
                self.optimizer = api.Optimizer(self.artifacts.optimizer_model, self.module)
            except Exception as exc:
                message = _ort_message(exc)
                key = _rejected(message, legal.model)
                if key is None or key in extra or attempt == MAX_RETRIES:
                    raise UnsupportedModelError(
                        f"ONNX Runtime training cannot train this model: {message}") from exc
                extra[key] = ("ONNX Runtime training rejected it: "
                              f"{message.split(' (log: ', 1)[0]}")
                continue
            break
        self.legal, self.trainable, self.frozen = legal, trainable, sorted(frozen)
        self.notes = legal.notes() + [n for n in (self.bn_note, self.feature_note) if n]
        chosen = [c for c in candidates if c not in select_frozen(candidates, settings.frozen)]
        self.share = trainable_share(self.model, chosen, trainable)
        self._check_share(settings.allow_frozen, legal.frozen_nodes)

    def _check_share(self, allow: bool, frozen_nodes: dict[str, str]) -> None:
        """Step 4b: at least ``MIN_TRAINABLE`` of the weights must train, unless allowed."""
        share = self.share
        line = share_line(share)
        self.notes.insert(0, line)
        if share["fraction"] >= MIN_TRAINABLE:
            logger.info("%s", line)
            return
        nodes = "; ".join(f"{k}: {v}" for k, v in list(frozen_nodes.items())[:5])
        more = f" (and {len(frozen_nodes) - 5} more)" if len(frozen_nodes) > 5 else ""
        if not allow:
            raise FrozenError(
                f"fine-tuning would train only {line.split(': ', 1)[1]}: ONNX Runtime training "
                f"cannot differentiate {nodes}{more}. Pass --allow-frozen (allow_frozen=True) "
                "to fine-tune the rest anyway, or --finetune-epochs 0 to skip fine-tuning")
        logger.warning("--allow-frozen: fine-tuning trains only %s; frozen: %s%s",
                       line.split(": ", 1)[1], nodes, more)


def _apply_masks(state: Any, masks: dict[str, np.ndarray]) -> None:
    for name, mask in masks.items():
        parameter = state.parameters[name]
        parameter.data = (parameter.data * mask).astype(np.float32)


class _TeacherCache:
    """Teacher outputs per sample position, computed once (at most ``limit`` bytes)."""

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


def _shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Tensor shapes from onnx shape inference (``None`` for unknown dims; empty where it
    fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an unusual graph: no feature map is found
        return {}
    return {v.name: tuple(d.dim_value if d.HasField("dim_value") else None
                          for d in v.type.tensor_type.shape.dim) for v in
            [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}


def _held_out(setup: _Setup, job: Job) -> HeldOut:
    def loss_feeds(feeds: dict, labels: Any) -> dict:
        return setup.plan.feeds(setup.teacher(feeds) if setup.teacher else {}, labels)

    return HeldOut(job.evaluation, setup.batch, job.settings.patience, loss_feeds)


def _train(setup: _Setup, job: Job, report: Report,
           held: HeldOut) -> tuple[list[dict], float, int]:
    settings, data = job.settings, job.data
    module, optimizer, state = setup.module, setup.optimizer, setup.state
    masks = {k: np.asarray(v, np.float32) for k, v in (job.masks or {}).items()
             if k in setup.trainable}
    _apply_masks(state, masks)
    per_epoch = steps_per_epoch(data, setup.batch)
    total = settings.max_steps or max(1, round(settings.epochs * per_epoch))
    order = module.input_names()
    rng = np.random.default_rng(settings.seed)
    history, step, started = [], 0, time.perf_counter()
    teacher = _TeacherCache(setup.teacher, data.num_samples)
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
                _apply_masks(state, masks)
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
        setup = _Setup(job, folder, report)
        held = _held_out(setup, job)
        history, seconds, steps = _train(setup, job, report, held)
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


def initializer_arrays(model: onnx.ModelProto, names: list[str]) -> dict[str, np.ndarray]:
    wanted = set(names)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.name in wanted}
