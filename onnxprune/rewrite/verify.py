"""Checks a rewritten model must pass before it is written.

Rules:

1. ``onnx.checker`` accepts it.
2. ONNX Runtime runs it and the original on the same random inputs: ``input_shapes``
   when given, else the run's resolved input shapes
   (:mod:`onnxprune.graph.input_shapes`) with a dynamic batch of 2, else symbolic
   dimensions set to 2 (so dynamic axes stay exercised); output names, dtypes and
   shapes are equal. The shapes used are recorded in ``Verification.input_shapes``.
3. With masks given, its outputs equal the masked original's within ``rtol``
   (relative to the largest magnitude of each output) - the equivalence oracle.

Any failure raises :class:`VerificationError`; the caller then writes nothing.
"""

from __future__ import annotations

__all__ = ["Verification", "verify", "verify_declared"]

import dataclasses
import logging

import numpy as np
import onnx

from onnxprune.errors import OnnxPruneError, VerificationError
from onnxprune.graph import runtime
from onnxprune.rewrite.oracle import masked_model

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Verification:
    checker: bool
    outputs_match: bool
    max_rel_diff: float | None
    input_shapes: dict[str, list[int]]
    reference: str = "original model run"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(path: str) -> None:
    try:
        onnx.checker.check_model(path)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"rewritten model fails onnx.checker: {exc}") from exc


def _session(proto: onnx.ModelProto | str, what: str, optimize: bool = False):
    try:
        return runtime.make_session(proto, optimize=optimize)
    except OnnxPruneError:
        raise
    except Exception as exc:
        raise VerificationError(f"{what} does not load in ONNX Runtime: {exc}") from exc


def _run(proto_or_session, feeds: dict[str, np.ndarray], what: str) -> tuple[list, list]:
    session = proto_or_session
    if isinstance(proto_or_session, onnx.ModelProto):
        session = _session(proto_or_session, what)
    try:
        return session.get_outputs(), session.run(None, feeds)
    except Exception as exc:
        if isinstance(exc, VerificationError):
            raise
        raise VerificationError(f"{what} does not run in ONNX Runtime: {exc}") from exc


def relative_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-6)
    return float(np.max(np.abs(a.astype(np.float64) - b))) / scale if a.size else 0.0


def verify(original: onnx.ModelProto, pruned: str, masks: dict | None = None,
           *, seed: int = 0, rtol: float = 1e-4,
           input_shapes: dict[str, tuple[int, ...]] | None = None,
           original_path: str | None = None) -> Verification:
    """Apply rules 1-3 to the model file ``pruned`` and return what was measured.

    ``original`` must hold its weights in memory (for the masked twin);
    ``original_path`` lets the runtime read the unchanged original from disk
    instead of serializing it again.
    """
    _check(str(pruned))
    session = _session(original_path or original, "original model")
    feeds = runtime.dummy_inputs(session, seed=seed, dynamic_dim=2, shapes=input_shapes)
    ref_args, ref = _run(session, feeds, "original model")
    # the rewritten model runs with every graph optimization on, as users will run it
    new_args, new = _run(_session(str(pruned), "rewritten model", optimize=True), feeds,
                         "rewritten model")
    for r_arg, n_arg, r, n in zip(ref_args, new_args, ref, new):
        if (r_arg.name, r_arg.type, np.shape(r)) != (n_arg.name, n_arg.type, np.shape(n)):
            raise VerificationError(
                f"output '{r_arg.name}' changed: {r_arg.type}{list(np.shape(r))} -> "
                f"'{n_arg.name}' {n_arg.type}{list(np.shape(n))}")
    if len(ref_args) != len(new_args):
        raise VerificationError("the rewritten model has a different number of outputs")
    worst = None
    if masks is not None:
        _, expected = _run(masked_model(original, masks), feeds, "masked original")
        worst = max((relative_diff(n, e) for n, e in zip(new, expected)
                     if np.issubdtype(np.asarray(e).dtype, np.floating)), default=0.0)
        if not worst <= rtol:
            raise VerificationError(
                f"rewritten model differs from the masked original by {worst:.2e} "
                f"(relative, tolerance {rtol:.0e}); this is an onnxprune bug, please report it")
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    return Verification(True, True, worst, shapes)


def verify_declared(declared: list[tuple[str, str, tuple[int | None, ...] | None]], pruned: str,
                    *, seed: int = 0,
                    input_shapes: dict[str, tuple[int, ...]] | None = None) -> Verification:
    """Large-model variant: check the rewritten file alone against the original's
    *declared* outputs (name, type, static dimensions), so only one model is ever
    held by the runtime. Used when the weights exceed ``LARGE_MODEL_BYTES``."""
    _check(str(pruned))
    session = _session(str(pruned), "rewritten model", optimize=True)
    feeds = runtime.dummy_inputs(session, seed=seed, dynamic_dim=2, shapes=input_shapes)
    args, outputs = _run(session, feeds, "rewritten model")
    if [a.name for a in args] != [d[0] for d in declared]:
        raise VerificationError("the rewritten model's outputs differ from the original's: "
                                f"{[a.name for a in args]} vs {[d[0] for d in declared]}")
    for arg, array, (name, kind, dims) in zip(args, outputs, declared):
        shape = np.shape(array)
        static_ok = dims is None or (len(dims) == len(shape) and all(
            d is None or d == s for d, s in zip(dims, shape)))
        if arg.type != kind or not static_ok:
            raise VerificationError(f"output '{name}' changed: declared {kind}{list(dims or [])},"
                                    f" rewritten model gives {arg.type}{list(shape)}")
    return Verification(True, True, None, {k: list(v.shape) for k, v in feeds.items()},
                        reference="declared outputs (large model: original not run)")
