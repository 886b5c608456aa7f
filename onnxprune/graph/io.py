"""Load and save ONNX models safely.

Rules:

1. ``load_model`` accepts any ONNX file, with or without external data. Below opset
   11 it is converted first (:mod:`onnxprune.graph.convert`; a failed conversion is
   an :class:`UnsupportedModelError`). Every failure is an :class:`InvalidModelError`
   or :class:`UnsupportedModelError` naming the file and what to do.
2. Weights stored as ``Constant`` nodes or as ``Identity`` of an initializer are
   normalised into plain initializers so later layers see one form only.
3. ``save_model`` never overwrites its source, writes to a temporary file in the
   destination folder and renames it into place, so a failed or interrupted
   write leaves no partial file. Models whose weights exceed ``EXTERNAL_DATA_BYTES``
   (or that came with external data) are saved with an external data file beside
   them.
4. After rule 2, every loaded graph is canonicalized (:mod:`onnxprune.graph.canonicalize`:
   constant subexpressions folded, dead nodes removed, decomposed LayerNorm chains
   fused), so compress, analyze, sensitivity and bench all see the same graph, and
   the original that the masked oracle runs is the canonical one. What changed is in
   ``notes`` and ``facts["canonical"]``. A canonicalization that fails is skipped
   with a note (the model is analysed as loaded).
"""

from __future__ import annotations

__all__ = ["EXTERNAL_DATA_BYTES", "MIN_OPSET", "LoadedModel", "load_model", "save_model"]

import contextlib
import dataclasses
import errno
import logging
import os
import pathlib
import shutil
import tempfile

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass, RemoveInitializersFromInputsPass

from onnxprune.errors import InvalidModelError, OutputError
from onnxprune.graph.canonicalize import canonicalize
from onnxprune.graph.convert import MIN_OPSET, convert_opset

logger = logging.getLogger(__name__)

EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclasses.dataclass
class LoadedModel:
    """A model in editable form plus facts about where it came from."""

    model: ir.Model
    path: pathlib.Path | None
    file_size: int
    external_data: bool
    notes: list[str] = dataclasses.field(default_factory=list)
    facts: dict = dataclasses.field(default_factory=dict)

    @property
    def opset(self) -> int:
        return default_opset(self.model)


def default_opset(model: ir.Model) -> int:
    """Opset version of the default ONNX domain (``""`` or ``ai.onnx``)."""
    imports = model.opset_imports
    return int(imports.get("", imports.get("ai.onnx", 0)))


def _check_path(path: pathlib.Path) -> None:
    if not path.exists():
        raise InvalidModelError(f"{path}: no such file")
    if path.is_dir():
        raise InvalidModelError(f"{path}: is a directory, expected an .onnx file")
    if path.stat().st_size == 0:
        raise InvalidModelError(f"{path}: file is empty")


def _other_proto(data: bytes) -> str | None:
    """Name of another ONNX message type the bytes parse as, if any."""
    for kind in (onnx.TensorProto, onnx.GraphProto, onnx.NodeProto):
        message = kind()
        try:
            message.ParseFromString(data)
        except Exception:
            continue
        if message.ListFields() and (getattr(message, "name", "") or kind is onnx.NodeProto):
            return kind.__name__
    return None


def _parse(path: pathlib.Path) -> onnx.ModelProto:
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types
        other = _other_proto(path.read_bytes()) if path.stat().st_size < 2**31 else None
        if other:
            raise InvalidModelError(f"{path}: holds an ONNX {other}, not a model") from exc
        raise InvalidModelError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); "
            "is the file truncated or of another format?"
        ) from exc
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise InvalidModelError(f"{path}: the protobuf holds no ONNX graph; not a model")
    return proto


def _check_external_data(proto: onnx.ModelProto, base: pathlib.Path) -> bool:
    """Return whether the model uses external data; raise if a data file is missing or short."""
    used = False
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        used = True
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = base / info.get("location", "")
        if not location.is_file():
            raise InvalidModelError(
                f"external data file {location} for tensor '{tensor.name}' is missing; "
                "keep the .data file next to the model"
            )
        need = int(info.get("offset", 0)) + int(info.get("length", 0))
        if location.stat().st_size < need:
            raise InvalidModelError(
                f"external data file {location} is too short for tensor '{tensor.name}' "
                f"(needs {need} bytes, has {location.stat().st_size})"
            )
    return used


def _check_structure(path: pathlib.Path) -> None:
    """onnx.checker on the file (read by the C++ checker, external data included)."""
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidModelError(f"{path}: not a valid ONNX model: {first}") from exc
    except Exception as exc:  # the checker itself failed on a malformed file
        raise InvalidModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: "
                                f"{exc})") from exc


def _lift_identity_of_initializers(model: ir.Model) -> int:
    """Replace ``y = Identity(initializer)`` by the initializer itself.

    Cases: 1. ``y`` is no graph output: every use of ``y`` now reads the
    initializer and the node is removed. 2. ``y`` is a graph output: kept.
    """
    graph = model.graph
    count = 0
    for node in list(graph):
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx"):
            continue
        source = node.inputs[0]
        if source is None or not source.is_initializer() or node.outputs[0].is_graph_output():
            continue
        node.outputs[0].replace_all_uses_with(source)
        graph.remove(node, safe=True)
        count += 1
    return count


def normalize(model: ir.Model) -> list[str]:
    """Bring weights into one form (initializers); return notes on what changed."""
    notes = []
    RemoveInitializersFromInputsPass()(model)
    result = LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    if result.modified:
        notes.append("Constant nodes were turned into initializers")
    lifted = _lift_identity_of_initializers(model)
    if lifted:
        notes.append(f"{lifted} Identity node(s) of initializers were folded")
    return notes


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load, validate and normalise an ONNX model file (see module docstring)."""
    path = pathlib.Path(path)
    _check_path(path)
    proto = _parse(path)
    external = _check_external_data(proto, path.parent)
    _check_structure(path)
    proto, converted = convert_opset(proto, str(path))
    model, notes = _normalized(proto, path)
    notes = ([converted] if converted else []) + notes
    facts: dict = {}
    try:
        done = canonicalize(model)
    except Exception as exc:  # a bug, or a graph the folder cannot evaluate: keep it as loaded
        logger.warning("canonicalization of %s skipped: %s", path, exc)
        model, _ = _normalized(proto, path)
        notes.append(f"canonicalization skipped ({type(exc).__name__}: {exc})")
    else:
        facts["canonical"] = done.to_dict()
        notes.extend(done.notes())
    return LoadedModel(model, path, path.stat().st_size, external, notes, facts)


def _normalized(proto: onnx.ModelProto, path: pathlib.Path) -> tuple[ir.Model, list[str]]:
    model = _proto_to_ir(proto, path)
    try:
        return model, normalize(model)
    except Exception as exc:  # a malformed graph the checker let through
        raise InvalidModelError(f"{path}: cannot normalise the graph: {exc}") from exc


def _proto_to_ir(proto: onnx.ModelProto, path: pathlib.Path) -> ir.Model:
    try:
        return model_from_proto(proto, path.parent)
    except Exception as exc:
        raise InvalidModelError(f"{path}: the ONNX graph is malformed: {exc}") from exc


def model_from_proto(proto: onnx.ModelProto, base_dir: str | os.PathLike[str] = "") -> ir.Model:
    """Deserialize an in-memory proto (external data resolved relative to ``base_dir``)."""
    model = ir.serde.deserialize_model(proto)
    if base_dir:
        ir.external_data.set_base_dir(model.graph, base_dir)
    return model


def weight_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value)


def check_destination(out: str | os.PathLike[str],
                      source: str | os.PathLike[str] | None = None) -> None:
    """Fail early when ``out`` cannot be written: the input itself, a missing or
    read-only folder, or an existing directory."""
    out = pathlib.Path(out)
    if source is not None and _same_file(out, pathlib.Path(source)):
        raise OutputError(f"{out}: output path equals the input model; choose another -o path")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory; give a file name")
    if not out.parent.is_dir():
        raise OutputError(f"{out.parent}: output folder does not exist")
    if not os.access(out.parent, os.W_OK):
        raise OutputError(f"{out.parent}: output folder is not writable")


class StagedOutput:
    """A model written next to its destination, moved into place only on ``commit``.

    Use as a context manager: leaving the block without ``commit`` (an error, a
    failed check, Ctrl-C) removes the staged files, so no partial output remains.
    """

    def __init__(self, out: str | os.PathLike[str], *,
                 source: str | os.PathLike[str] | None = None) -> None:
        self.out = pathlib.Path(out)
        check_destination(self.out, source)
        try:
            self._tmp = pathlib.Path(tempfile.mkdtemp(dir=self.out.parent, prefix=".onnxprune-"))
        except OSError as exc:
            raise _output_error(self.out, exc) from exc
        self.path = self._tmp / self.out.name
        self.data_name: str | None = None

    def write(self, model: ir.Model, external_data: bool | None = None) -> pathlib.Path:
        if external_data is None:
            external_data = weight_bytes(model) > EXTERNAL_DATA_BYTES
        self.data_name = self.out.name + ".data" if external_data else None
        try:
            ir.save(model, self.path, external_data=self.data_name)
        except OSError as exc:
            raise _output_error(self.out, exc) from exc
        return self.path

    def commit(self) -> pathlib.Path:
        if self.data_name:
            os.replace(self._tmp / self.data_name, self.out.parent / self.data_name)
        os.replace(self.path, self.out)
        self.discard()
        logger.info("wrote %s", self.out)
        return self.out

    def discard(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def save_model(
    model: ir.Model,
    out: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    external_data: bool | None = None,
) -> pathlib.Path:
    """Write ``model`` to ``out`` atomically (see module docstring, rule 3)."""
    with StagedOutput(out, source=source) as staged:
        staged.write(model, external_data)
        return staged.commit()


def _output_error(out: pathlib.Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{out}: disk full while writing; nothing was written")
    return OutputError(f"{out}: could not write ({exc.strerror or exc}); nothing was written")


def _same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
