"""A model's outputs and head logits by name: what the training losses read.

:func:`tensor_values` runs the model with every activated head's logits added as
outputs (:func:`onnxprune.graph.outputs.with_logit_outputs`) and returns every tensor by
name; :class:`Tensors` keeps the session for repeated batches (the teacher).
"""

from __future__ import annotations

__all__ = ["Tensors", "tensor_values"]

import numpy as np
import onnx

from onnxprune.graph import runtime
from onnxprune.graph.outputs import with_logit_outputs


class Tensors:
    """A model's outputs, head logits and ``extra`` tensors by name, from one session."""

    def __init__(self, model: onnx.ModelProto, heads: list, extra: tuple[str, ...] = ()) -> None:
        proto = with_logit_outputs(model, heads)
        present = {o.name for o in proto.graph.output}
        for name in extra:
            if name not in present:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
        self.session = runtime.make_session(proto)
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(None, feeds)))


def tensor_values(model: onnx.ModelProto, heads: list, feeds: dict[str, np.ndarray],
                  extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Outputs, head logits and ``extra`` tensors of ``model`` on ``feeds``, by name."""
    return Tensors(model, heads, extra)(feeds)


