"""Run-time input shapes: one resolved set per run, used by every run of the model.

Rules:

1. A dimension is *dynamic* unless it is an int ``> 0``: ``dim_param`` (also ``'?'``),
   an empty dim, and ``dim_value`` ``-1`` or ``0`` (as Paddle2ONNX writes them) are
   all dynamic (``is_dynamic``). ``normalize_dynamic_dims`` rewrites the non-positive
   ``dim_value`` of graph inputs/outputs as empty dims, so ONNX Runtime (which
   enforces a ``0`` literally) and shape inference see them as dynamic.
2. ``parse_input_shapes`` reads ``NAME:1x3x48x192`` strings (repeatable; the name may
   contain ``:``) or a recipe mapping ``{name: [1, 3, 48, 192]}`` / ``{name: "1x3x.."}``.
3. :class:`RunShapes` holds one shape per model input and why it was chosen
   (``given``, ``data``, ``metadata``, ``probed``, ``default``, ``static``). A dynamic
   batch axis (axis 0) stays open: ``concrete(batch)`` fills it (verification uses 2,
   costs 1). ``alternate()`` changes every other dynamic dimension while keeping its
   divisibility (``d + lowbit(d)``, at most ``+64``), for the static-dim probe.
4. The shapes resolved for a run are *entered* once (``with using(shapes):``) by the
   entry point (compress, analyze, sensitivity, bench); every run of the model inside
   (probes, verification, oracle, calibration, synthetic data, costs, bench) reads
   them with ``current()``. Outside any run ``current()`` is ``None`` and the callers
   keep their own defaults.
"""

from __future__ import annotations

__all__ = ["InputShape", "RunShapes", "current", "format_shapes", "is_dynamic",
           "normalize_dynamic_dims",
           "normalize_proto_dims", "parse_input_shapes", "using"]

import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import onnx
import onnx_ir as ir

from onnxprune.errors import UsageError

logger = logging.getLogger(__name__)

SOURCES = ("given", "data", "metadata", "probed", "default", "static")


def is_dynamic(dim: Any) -> bool:
    """Rule 1: only a positive int is a static dimension."""
    return not (isinstance(dim, int) and not isinstance(dim, bool) and dim > 0)


def normalize_dynamic_dims(model: ir.Model) -> list[str]:
    """Rule 1 on an in-memory model; returns the names of the values changed."""
    changed = []
    for value in (*model.graph.inputs, *model.graph.outputs):
        shape = value.shape
        if shape is None or not any(isinstance(d, int) and d <= 0 for d in shape):
            continue
        value.shape = ir.Shape([ir.SymbolicDim(None) if isinstance(d, int) and d <= 0 else d
                                for d in shape])
        changed.append(value.name or "")
    if changed:
        logger.info("dims <= 0 on %s treated as dynamic", ", ".join(changed))
    return changed


def normalize_proto_dims(proto: onnx.ModelProto) -> bool:
    """Rule 1 on a ``ModelProto`` (in place); whether anything changed."""
    changed = False
    for value in (*proto.graph.input, *proto.graph.output):
        if not value.type.HasField("tensor_type"):
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value <= 0:
                dim.Clear()
                changed = True
    return changed


def _parse_dims(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.strip().lower().split("x"))
    except ValueError:
        return ()
    return shape if shape and min(shape) >= 1 else ()


def _bad(spec: Any) -> UsageError:
    return UsageError(f"bad input shape {spec!r}: expected NAME:D0xD1x... with positive "
                      "integers, e.g. --input-shape images:1x3x320x320")


def parse_input_shapes(specs: Iterable[str] | dict[str, Any] | str | None,
                       ) -> dict[str, tuple[int, ...]]:
    """Rule 2: CLI strings or a recipe mapping -> ``{name: dims}``."""
    if not specs:
        return {}
    if isinstance(specs, str):
        specs = [specs]
    shapes: dict[str, tuple[int, ...]] = {}
    if isinstance(specs, dict):
        for name, dims in specs.items():
            if isinstance(dims, str):
                shape = _parse_dims(dims)
            else:
                try:
                    shape = tuple(int(d) for d in dims)
                except (TypeError, ValueError):
                    shape = ()
                shape = shape if shape and min(shape) >= 1 else ()
            if not shape or not name:
                raise _bad(f"{name}: {dims}")
            shapes[str(name)] = shape
        return shapes
    for spec in specs:
        name, sep, dims = str(spec).rpartition(":")
        shape = _parse_dims(dims)
        if not sep or not name or not shape:
            raise _bad(spec)
        shapes[name] = shape
    return shapes


def _lowbit_step(dim: int) -> int:
    return min(dim & -dim, 64)


@dataclasses.dataclass(frozen=True)
class InputShape:
    """One input: ``dims`` (``None`` only on a dynamic batch axis), which axes the model
    leaves dynamic, and the source of the choice (rule 3)."""

    name: str
    dims: tuple[int | None, ...]
    dynamic: tuple[bool, ...]
    source: str

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d is None else d for d in self.dims)

    def alternate(self) -> InputShape:
        dims = tuple(d if d is None or not dyn or axis == 0 else d + _lowbit_step(d)
                     for axis, (d, dyn) in enumerate(zip(self.dims, self.dynamic)))
        return dataclasses.replace(self, dims=dims)

    def describe(self) -> str:
        return "x".join("N" if d is None else str(d) for d in self.dims)


@dataclasses.dataclass(frozen=True)
class RunShapes:
    """The run-time shapes of every model input (rule 3)."""

    inputs: tuple[InputShape, ...]

    def get(self, name: str) -> InputShape | None:
        return next((s for s in self.inputs if s.name == name), None)

    def concrete(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        return {s.name: s.concrete(batch) for s in self.inputs}

    def alternate(self) -> RunShapes:
        return RunShapes(tuple(s.alternate() for s in self.inputs))

    def has_dynamic(self) -> bool:
        """Whether any non-batch dimension had to be chosen."""
        return any(any(dyn for axis, dyn in enumerate(s.dynamic) if axis) for s in self.inputs)

    def describe(self) -> str:
        return ", ".join(f"{s.name}:{s.describe()} ({s.source})" for s in self.inputs)

    def to_dict(self) -> dict[str, dict]:
        """``{name: {"shape": [..., None for a dynamic batch], "source": ...}}``."""
        return {s.name: {"shape": list(s.dims), "source": s.source} for s in self.inputs}


def format_shapes(shapes: dict[str, dict]) -> str:
    """``RunShapes.to_dict()`` as one line: ``images 1x3x320x320 (metadata), ...``."""
    return ", ".join(f"{name} {'x'.join('N' if d is None else str(d) for d in s['shape'])} "
                     f"({s['source']})" for name, s in shapes.items())


_CURRENT: contextvars.ContextVar[RunShapes | None] = contextvars.ContextVar(
    "onnxprune_run_shapes", default=None)


def current() -> RunShapes | None:
    """The shapes of the run in progress, or ``None`` (rule 4)."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(shapes: RunShapes | None) -> Iterator[RunShapes | None]:
    """Make ``shapes`` the current run's shapes inside the block (rule 4)."""
    token = _CURRENT.set(shapes)
    try:
        yield shapes
    finally:
        _CURRENT.reset(token)
