"""What a model expects on each input, and checking arrays against it.

Rules:

1. Axis 0 of every input is the sample (batch) axis. A static batch dimension fixes
   the batch size the data is fed in. A dim is static only when it is a positive int
   (``dim_value <= 0``, ``'?'`` and empty dims are dynamic, see
   :func:`onnxprune.graph.input_shapes.is_dynamic`).
2. An array matches an input when it has the input's rank and every static
   dimension after axis 0; symbolic dimensions accept any size.
3. Dtypes must be of the same kind: any float array feeds a float input (cast to
   the input's precision), any integer array feeds an integer input, bool feeds
   bool. Anything else (uint8 images into a float model, floats into token ids)
   is a :class:`DataError` naming the input, the expected and the received dtype.
"""

from __future__ import annotations

__all__ = ["InputSpec", "check_array", "model_input_specs"]

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxprune.errors import DataError
from onnxprune.graph.input_shapes import is_dynamic


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input: name, numpy dtype and dims (``None`` for a symbolic one)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    @property
    def batch(self) -> int | None:
        """The static batch size, or ``None`` when axis 0 is symbolic (rule 1)."""
        return self.shape[0] if self.shape else None

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def model_input_specs(model: ir.Model) -> list[InputSpec]:
    """The specs of every graph input that is not an initializer."""
    specs = []
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        dtype = value.dtype
        np_dtype = np.dtype(dtype.numpy()) if dtype is not None else np.dtype(np.float32)
        shape = () if value.shape is None else tuple(
            None if is_dynamic(d) else int(d) for d in value.shape)
        specs.append(InputSpec(value.name or "", np_dtype, shape))
    return specs


def _kind(dtype: np.dtype) -> str:
    if np.issubdtype(dtype, np.floating):
        return "float"
    if np.issubdtype(dtype, np.integer):
        return "integer"
    if dtype == np.bool_:
        return "bool"
    return str(dtype)


def check_array(spec: InputSpec, shape: tuple[int, ...], dtype: np.dtype, origin: str) -> None:
    """Raise :class:`DataError` unless an array of ``shape``/``dtype`` feeds ``spec`` (rules 2-3).

    ``shape`` includes the sample axis; ``origin`` names the file (and key) it came from.
    """
    received = f"{np.dtype(dtype)}[{', '.join(str(d) for d in shape)}]"
    where = f"{origin}: input '{spec.name}'"
    if spec.shape and len(shape) != len(spec.shape):
        raise DataError(f"{where} expects rank {len(spec.shape)} ({spec.describe()}), "
                        f"received rank {len(shape)} ({received})")
    for axis, (want, got) in enumerate(zip(spec.shape[1:], shape[1:]), start=1):
        if want is not None and want != got:
            raise DataError(f"{where} expects {spec.describe()}, received {received} "
                            f"(axis {axis} is {got}, must be {want})")
    if _kind(np.dtype(dtype)) != _kind(spec.dtype):
        hint = ""
        if _kind(spec.dtype) == "float" and _kind(np.dtype(dtype)) == "integer":
            hint = "; scale/normalise the data to floats first (or pass an image folder)"
        raise DataError(f"{where} expects dtype {spec.dtype} ({spec.describe()}), "
                        f"received {np.dtype(dtype)} ({received}){hint}")
