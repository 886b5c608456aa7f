"""ONNX Runtime training 1.19 plumbing: versions, artifacts, sessions.

Rules:

1. Everything handed to ORT 1.19 has IR version <= 10 and default-domain opset <= 21:
   :func:`runtime_ready` converts a newer opset down with ``onnx.version_converter``
   and lowers the IR version; the models ``generate_artifacts`` writes (training,
   eval and the optimizer model it builds from scratch) are lowered when saved.
2. ``onnxruntime.training`` is imported without torch (:func:`import_training`);
   without the training build, :class:`RuntimeMissingError` (exit 7) says what to
   install.
3. ``generate_artifacts`` prints about twenty INFO lines per call from a session
   created inside onnxblock; they are written to a temporary file instead of the
   terminal and quoted in the error when generation fails.
"""

from __future__ import annotations

__all__ = ["OPTIMIZERS", "TrainingArtifacts", "build_artifacts", "import_training",
           "runtime_ready", "training_available"]

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import os
import pathlib
import sys
import tempfile
import types
from collections.abc import Iterator
from typing import Any

import onnx

from onnxprune.errors import RuntimeMissingError, UnsupportedModelError
from onnxprune.graph.runtime import runtime_limits

logger = logging.getLogger(__name__)

ADAM_EPS = 1e-8  # torch.optim.AdamW / paddle.optimizer.AdamW default
OPTIMIZERS = ("adamw", "sgd")  # the optimizers _optimizer_block builds (onnxprune.choices)

MISSING = ("fine-tuning needs the ONNX Runtime training build: pip install "
           "'onnxprune[train]' (onnxruntime-training-cpu 1.19.2, Python 3.8-3.12 on Linux "
           "x86_64, Windows or macOS)")


def import_training() -> tuple[Any, Any]:
    """``(artifacts, api)`` of ``onnxruntime.training`` without importing torch.

    ``onnxruntime/training/__init__.py`` imports torch-based helpers; registering a
    bare package module with the real ``__path__`` first lets the torch-free
    submodules load. Raises :class:`RuntimeMissingError` when they are absent.
    """
    folder = _training_folder()
    if folder is None:
        raise RuntimeMissingError(MISSING)
    if "onnxruntime.training" not in sys.modules:
        package = types.ModuleType("onnxruntime.training")
        package.__path__ = [str(folder)]
        sys.modules["onnxruntime.training"] = package
    try:
        artifacts = importlib.import_module("onnxruntime.training.artifacts")
        api = importlib.import_module("onnxruntime.training.api")
    except ImportError as exc:
        raise RuntimeMissingError(f"{MISSING} ({exc})") from exc
    return artifacts, api


def training_available() -> bool:
    """Whether the ONNX Runtime training build is installed (checked without importing
    ``onnxruntime.training``)."""
    return _training_folder() is not None


def _training_folder() -> pathlib.Path | None:
    """``onnxruntime/training`` when it holds the training API, found without importing
    ``onnxruntime`` or its ``training`` package."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = pathlib.Path(spec.origin).parent / "training"
    return folder if (folder / "artifacts.py").is_file() else None


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def runtime_ready(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` the installed runtime reads (rule 1)."""
    max_ir, max_opset = runtime_limits()
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    if _default_opset(proto) > max_opset:
        logger.info("converting opset %d down to %d for ONNX Runtime training",
                    _default_opset(proto), max_opset)
        try:
            proto = onnx.version_converter.convert_version(proto, max_opset)
        except Exception as exc:
            raise UnsupportedModelError(
                f"the model's opset {_default_opset(model)} is newer than ONNX Runtime "
                f"{max_opset} reads and could not be converted down ({exc}); export it with "
                f"opset <= {max_opset}") from exc
    proto.ir_version = min(proto.ir_version, max_ir)
    return proto


class _LoweringOnnx(types.ModuleType):
    """``onnx`` as seen by ``onnxruntime.training.artifacts``: ``save`` lowers the IR."""

    def __init__(self, max_ir: int) -> None:
        super().__init__("onnx")
        self._max_ir = max_ir

    def __getattr__(self, name: str) -> Any:
        return getattr(onnx, name)

    def save(self, proto: onnx.ModelProto, path: Any, *args: Any, **kwargs: Any) -> None:
        proto.ir_version = min(proto.ir_version, self._max_ir)
        onnx.save(proto, path, *args, **kwargs)


@contextlib.contextmanager
def _quiet_stderr(log: pathlib.Path) -> Iterator[None]:
    """Send file descriptor 2 (native ORT logging) to ``log`` for the block (rule 3)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with open(log, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclasses.dataclass
class TrainingArtifacts:
    """Paths of the files ``generate_artifacts`` wrote."""

    folder: pathlib.Path
    trainable: list[str]
    frozen: list[str]

    @property
    def training_model(self) -> str:
        return str(self.folder / "training_model.onnx")

    @property
    def eval_model(self) -> str:
        return str(self.folder / "eval_model.onnx")

    @property
    def optimizer_model(self) -> str:
        return str(self.folder / "optimizer_model.onnx")

    @property
    def checkpoint(self) -> str:
        return str(self.folder / "checkpoint")


def _optimizer_block(name: str, weight_decay: float) -> Any:
    from onnxruntime.training import onnxblock

    if name == "adamw":  # eps of PyTorch and Paddle (ORT's default 1e-6 shrinks small steps)
        return onnxblock.optim.AdamW(eps=ADAM_EPS, weight_decay=weight_decay)
    if name == "sgd":
        return onnxblock.optim.SGD()
    raise UnsupportedModelError(f"unknown optimizer {name!r} ({', '.join(OPTIMIZERS)})")


def build_artifacts(model: onnx.ModelProto, trainable: list[str], frozen: list[str],
                    folder: str | os.PathLike[str], optimizer: str = "adamw",
                    weight_decay: float = 0.0) -> TrainingArtifacts:
    """Training, eval and optimizer models plus checkpoint for ``model``.

    ``model``'s only graph output must be the scalar loss. Failures raise
    ``RuntimeError`` with ORT's message and the end of its log.
    """
    artifacts, _ = import_training()
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    max_ir = runtime_limits()[0]
    log = folder / "generate_artifacts.log"
    original_onnx = artifacts.onnx
    artifacts.onnx = _LoweringOnnx(max_ir)
    try:
        with _quiet_stderr(log):
            artifacts.generate_artifacts(
                runtime_ready(model), requires_grad=trainable, frozen_params=frozen, loss=None,
                optimizer=_optimizer_block(optimizer, weight_decay),
                artifact_directory=str(folder))
    except Exception as exc:
        raise RuntimeError(f"{exc} (log: {_tail(log)})") from exc
    finally:
        artifacts.onnx = original_onnx
    return TrainingArtifacts(folder, list(trainable), list(frozen))


def _tail(log: pathlib.Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def training_session_options(threads: int | None, optimize: str = "all") -> Any:
    """Session options for the training/eval/optimizer sessions."""
    import onnxruntime as ort

    from onnxprune.graph.runtime import session_options

    options = session_options(ort)  # project log settings
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options.graph_optimization_level = levels[optimize]
    return options


def scratch_folder(prefix: str = "onnxprune-train-") -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
