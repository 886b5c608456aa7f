"""Steps 1-4 of a fine-tuning job: loss plan, legalized model, artifacts, ORT objects.

1. Read the first full batch; run the model (and the teacher) on it to plan the loss
   (:mod:`onnxprune.training.losses`); with feature distillation, add its term
   (:mod:`onnxprune.training.features`).
2. Legalize the model at the training batch (:mod:`onnxprune.training.legalize`) and
   check that it equals the model on that batch.
3. ``bn="auto"`` (default) trains BatchNormalization with batch statistics when they fit
   the data (:func:`onnxprune.training.batchnorm.statistics_mismatch` <= ``BN_MISMATCH``),
   else keeps the stored statistics (``frozen``) with a note. Trainable = the candidate
   initializers (:mod:`onnxprune.training.params`) minus ``frozen`` and what frozen nodes
   depend on. BatchNormalization running statistics are listed as frozen parameters so
   the eval model reads them from the checkpoint.
4. Build the artifacts. When ONNX Runtime rejects an op at build or load time, the nodes
   of that op are frozen and the build is retried (at most ``MAX_RETRIES`` times); the
   rejection is reported as a warning. At least ``MIN_TRAINABLE`` of the weights must
   train (:class:`~onnxprune.errors.FrozenError`), unless ``allow_frozen``.
"""

from __future__ import annotations

__all__ = ["BN_MISMATCH", "FEATURES_BY_DEFAULT", "MAX_RETRIES", "MIN_TRAINABLE", "TrainingSetup"]

import logging
import re

import onnx

from onnxprune.errors import DataError, FrozenError, UnsupportedModelError, UsageError
from onnxprune.graph import runtime
from onnxprune.graph.outputs import output_heads
from onnxprune.training.batchnorm import batchnorm_stats, statistics_mismatch
from onnxprune.training.features import feature_map, match_channels
from onnxprune.training.legalize import legalize, max_relative_diff
from onnxprune.training.losses import add_feature_term, append_loss, plan_loss
from onnxprune.training.ort import (
    build_artifacts,
    import_training,
    runtime_ready,
    training_session_options,
)
from onnxprune.training.params import select_frozen, trainable_candidates
from onnxprune.training.settings import Job, Report
from onnxprune.training.share import share_line, trainable_share
from onnxprune.training.tensors import Tensors, tensor_values

logger = logging.getLogger(__name__)

MAX_RETRIES = 4
MIN_TRAINABLE = 0.9  # below this share of the weights, fine-tuning stops (FrozenError)
BN_MISMATCH = 0.2  # relative output distance above which bn="auto" keeps BN statistics
FEATURES_BY_DEFAULT = False  # distill_features="auto" (measured: docs/finetune.md)


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


class TrainingSetup:
    """Steps 1-4 for ``job`` in ``folder``: after construction ``module``, ``optimizer`` and
    ``state`` are ready to train ``trainable``; ``plan`` is the loss, ``legal`` the
    legalized model, ``first``/``first_labels`` the first batch, ``notes`` the warnings."""

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

