"""``finetune``: train an ONNX model's weights on data with ONNX Runtime training.

Rules:

1. The model is legalized for training, trained on shuffled fixed-size batches of
   ``data`` (:mod:`onnxprune.training.trainer`), and the trained initializers are
   written into a copy of the *given* model: same nodes, names, opset and outputs,
   new weights (and recomputed BatchNormalization statistics). Weights held in
   ``Constant`` nodes or shared through ``Identity(initializer)`` become initializers
   first (:func:`onnxprune.training.params.untie_weights`, noted in ``notes``).
2. ``loss="distill"`` (default) learns the outputs of ``teacher`` (default: the
   model as given) on the same batch; ``ce`` and ``mse`` use the data's labels. Losses
   read the logits of outputs that end in Softmax/LogSoftmax/Sigmoid
   (:mod:`onnxprune.training.losses`).
3. ``masks`` maps initializer names to 0/1 arrays of the same shape; masked weights
   are zeroed before training and after every optimizer step, so they stay zero (the
   default teacher is then the given model before masking).
4. Training runs in a child process (``isolate=True``), so a native crash of ONNX
   Runtime becomes an :class:`UnsupportedModelError`; without the training build a
   :class:`RuntimeMissingError` (exit 7) says what to install.
5. The result is checked before it is returned: ``onnx.checker``, an ONNX Runtime
   run on the first batch with the same output names, types and shapes as the given
   model, and equality with the trained training-form model (``export_diff``).
"""

from __future__ import annotations

__all__ = ["FinetuneResult", "finetune", "first_step", "trainability"]

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.data import DataSource
from onnxprune.errors import UsageError, VerificationError
from onnxprune.graph import runtime
from onnxprune.training.isolate import run_isolated
from onnxprune.training.jobs import first_step_job, inspect_job
from onnxprune.training.ort import import_training, runtime_ready
from onnxprune.training.params import untie_weights, with_weights
from onnxprune.training.trainer import Job, Settings, run_job

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FinetuneResult:
    """The fine-tuned model and what happened (``summary()`` is plain data)."""

    model: onnx.ModelProto
    history: list[dict]
    loss: dict
    trainable: list[str]
    frozen: list[str]
    frozen_nodes: dict[str, str]
    rewritten: dict[str, int]
    notes: list[str]
    steps: int
    batch_size: int
    seconds: float
    samples_per_second: float | None
    export_diff: float
    eval_loss: float
    exported_loss: float
    trainable_params: int
    bn: str = "batch"
    trainable_share: dict = dataclasses.field(default_factory=dict)
    early_stopping: dict = dataclasses.field(default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None

    def summary(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "model"}
        data["final_loss"] = self.final_loss
        return data


def _check_masks(model: onnx.ModelProto, masks: dict[str, np.ndarray] | None,
                 ) -> dict[str, np.ndarray] | None:
    if not masks:
        return None
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    checked = {}
    for name, mask in masks.items():
        mask = np.asarray(mask)
        if name not in shapes:
            raise UsageError(f"mask for '{name}': the model has no initializer of that name")
        if mask.shape != shapes[name]:
            raise UsageError(f"mask for '{name}' has shape {list(mask.shape)}, the weight "
                             f"{list(shapes[name])}")
        if not np.isin(mask, (0, 1)).all():
            raise UsageError(f"mask for '{name}' must hold only 0 and 1")
        checked[name] = mask.astype(np.float32)
    return checked


def _verify(original: onnx.ModelProto, tuned: onnx.ModelProto,
            feeds: dict[str, np.ndarray]) -> None:
    """Rule 5 (the runtime parts): checker, run, output names/types/shapes."""
    try:
        onnx.checker.check_model(tuned)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"fine-tuned model fails onnx.checker: {exc}") from exc
    before = runtime.make_session(runtime_ready(original), optimize=False)
    after = runtime.make_session(runtime_ready(tuned))
    ref, new = before.run(None, feeds), after.run(None, feeds)
    for r_arg, n_arg, r, n in zip(before.get_outputs(), after.get_outputs(), ref, new):
        if (r_arg.name, r_arg.type, np.shape(r)) != (n_arg.name, n_arg.type, np.shape(n)):
            raise VerificationError(f"fine-tuning changed output '{r_arg.name}'")
        if np.issubdtype(np.asarray(n).dtype, np.floating) and not np.isfinite(n).all():
            raise VerificationError(f"fine-tuned output '{n_arg.name}' is not finite; "
                                    "lower the learning rate")
    if len(ref) != len(new):
        raise VerificationError("fine-tuning changed the number of outputs")


def finetune(model: onnx.ModelProto, data: DataSource, *,
             teacher: onnx.ModelProto | None = None, loss: str = "distill",
             epochs: float = 1.0, lr: float = 1e-3, optimizer: str = "adamw",
             batch_size: int = 32, seed: int = 0, frozen: Iterable[str] = (),
             masks: dict[str, np.ndarray] | None = None,
             progress: Callable[[dict], Any] | None = None, isolate: bool = True,
             eval_data: DataSource | None = None, **settings: Any) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` (rules 1-5).

    Extra keyword arguments are :class:`onnxprune.training.trainer.Settings` fields:
    ``temperature`` (4.0), ``weight_decay`` (0.0), ``lr_schedule`` (cosine, linear,
    constant), ``warmup`` (fraction of steps), ``loss_weights`` (one per float output),
    ``threads``, ``optimization`` (basic, extended, all), ``bn`` (``batch``: train
    BatchNormalization with batch statistics and recompute the running ones afterwards;
    ``frozen``: keep inference semantics; ``auto``, the default: ``batch`` when the
    stored statistics fit the data), ``recalibrate_bn`` (True),
    ``bn_samples``, ``shuffle_pool``, ``max_steps`` (stop early), ``allow_frozen``
    (False: raise :class:`FrozenError`, exit 10, when less than 90% of the weights can
    train), ``patience`` (2). ``eval_data``: a held-out split scored after every epoch;
    the best epoch's weights are kept (``early_stopping`` in the result).
    """
    unknown = set(settings) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise UsageError(f"unknown fine-tuning option(s): {', '.join(sorted(unknown))}")
    options = Settings(loss=loss, epochs=float(epochs), lr=float(lr), optimizer=optimizer,
                       batch_size=int(batch_size), seed=int(seed),
                       frozen=tuple(frozen), **settings)
    options.validate()
    import_training()  # fail fast (exit 7) before starting a process
    model, untied = untie_weights(model)
    masks = _check_masks(model, masks)
    if masks:  # rule 3 for every masked weight, trained or not; the teacher stays unmasked
        teacher = teacher or model
        model = with_weights(model, {t.name: numpy_helper.to_array(t) * masks[t.name]
                                     for t in model.graph.initializer if t.name in masks})
    job = Job(model.SerializeToString(), teacher.SerializeToString() if teacher else None,
              data, options, masks, eval_data)

    def on_report(kind: str, payload: Any) -> None:
        if kind == "progress" and progress is not None:
            progress(payload)

    if isolate:
        out = run_isolated(run_job, job, what="fine-tuning", on_report=on_report)
    else:
        out = run_job(job, on_report)
    tuned = with_weights(model, out.pop("arrays"))
    if untied:
        out["notes"].insert(0, f"{untied} Constant/Identity weight node(s) became initializers")
    first = next(data.batches(out["batch_size"]))
    _verify(model, tuned, first)
    for note in out["notes"]:
        logger.info("%s", note)
    return FinetuneResult(model=tuned, **out)


def trainability(model: onnx.ModelProto, data: DataSource, *, loss: str = "distill",
                 batch_size: int = 32, isolate: bool = True, **settings: Any) -> dict:
    """What :func:`finetune` would train, without training: the model is legalized and
    its training artifacts are built and loaded. Returns ``trainable_share``
    (``{"trainable", "total", "fraction"}``), ``frozen_nodes`` (node -> reason),
    ``rewritten`` (op -> count), ``loss`` (the loss terms) and ``trainable`` (names)."""
    options = Settings(loss=loss, batch_size=int(batch_size), **settings)
    options.validate()
    import_training()
    model, _ = untie_weights(model)
    job = Job(model.SerializeToString(), None, data, options)
    if isolate:
        return run_isolated(inspect_job, job, what="building the training graph")
    return inspect_job(job, lambda kind, payload: None)


def first_step(model: onnx.ModelProto, data: DataSource, *, teacher: onnx.ModelProto | None = None,
               loss: str = "distill", batch_size: int = 32, isolate: bool = True,
               **settings: Any) -> dict:
    """One optimizer step of :func:`finetune` on the first ``batch_size`` samples of
    ``data`` (in order): ``loss``, ``grad_norms`` and ``update_norms`` per trained
    initializer, ``bn`` (the BatchNormalization mode used), ``plan`` (the loss terms)."""
    options = Settings(loss=loss, batch_size=int(batch_size), **settings)
    options.validate()
    import_training()
    model, _ = untie_weights(model)
    job = Job(model.SerializeToString(), teacher.SerializeToString() if teacher else None,
              data, options)
    if isolate:
        return run_isolated(first_step_job, job, what="one fine-tuning step")
    return first_step_job(job, lambda kind, payload: None)
