"""What rewrite passes and op rules may do to the graph.

``RewriteContext`` extends the :class:`KeepView` of the plan with the two edits
rules need: read a constant input, and replace a constant input by a new
initializer (never editing a tensor another node still reads).
"""

from __future__ import annotations

__all__ = ["RewriteContext"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.keep import KeepView


class RewriteContext(KeepView):
    def __init__(self, analysis, removed_units) -> None:
        super().__init__(analysis, removed_units)
        self.graph = analysis.model.graph
        self._names = set(self.graph.initializers) | {
            v.name for n in self.graph for v in n.outputs if v.name
        } | {v.name for v in self.graph.inputs} | {n.name for n in self.graph if n.name}

    def fresh_name(self, base: str) -> str:
        name, k = f"{base}_pruned", 1
        while name in self._names:
            k += 1
            name = f"{base}_pruned{k}"
        self._names.add(name)
        return name

    def const_input(self, node: ir.Node, index: int) -> np.ndarray:
        return node.inputs[index].const_value.numpy()

    def set_const_input(self, node: ir.Node, index: int, array: np.ndarray) -> None:
        """Make input ``index`` of ``node`` a new initializer holding ``array``."""
        old = node.inputs[index] if index < len(node.inputs) else None
        base = old.name if old is not None and old.name else f"{node.name or node.op_type}_{index}"
        name = self.fresh_name(base)
        value = ir.Value(name=name, shape=ir.Shape(array.shape),
                         type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                         const_value=ir.tensor(array, name=name))
        self.graph.register_initializer(value)
        node.replace_input_with(index, value)
