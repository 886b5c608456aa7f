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
    """A model's outputs and head logits by name, from one session."""

    def __init__(self, model: onnx.ModelProto, heads: list) -> None:
        self.session = runtime.make_session(with_logit_outputs(model, heads))
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(None, feeds)))


def tensor_values(model: onnx.ModelProto, heads: list, feeds: dict[str, np.ndarray],
                  ) -> dict[str, np.ndarray]:
    """Outputs and head logits of ``model`` on ``feeds``, by name (what losses read)."""
    return Tensors(model, heads)(feeds)


