"""Recurrent layers unrolled over the (static) training sequence length.

ONNX Runtime 1.19's CPU training crashes (SIGSEGV) in ``LSTM``/``GRU`` gradients and its
training ``LSTM`` kernel accepts only forward, sigmoid-gated layers, even frozen. The
rules below write each node as the ONNX equations over the probed sequence length,
with the weights read from the node's own ``W``, ``R``, ``B`` (and ``P``) tensors by
graph ops, so the initializers keep their names and train. Cases:

1. ``LSTM`` (gates ``i, o, f, c``; optional peepholes ``P``, initial ``h``/``c``) and
   ``GRU`` (gates ``z, r, h``; ``linear_before_reset`` 0 or 1), every ``direction``
   (forward, reverse, bidirectional: one pass per direction, the reverse one from the
   last step), ``layout`` 0 and 1; outputs ``Y``, ``Y_h`` (and ``Y_c``) as named.
2. ``X @ W^T + Wb`` is computed once for all steps; each step adds ``H @ R^T`` (+ ``Rb``).
3. Activations ``Sigmoid``, ``Tanh``, ``Relu``, ``HardSigmoid`` (with its alpha/beta).
4. Declined (the node is then frozen, with the reason): ``clip``, ``input_forget``,
   other activations, or ``sequence_lens`` that is not a constant equal to the length.
"""

from __future__ import annotations

__all__: list[str] = []

import numpy as np
import onnx

from onnxprune.training.legalize import NodeBuilder, rule

_ACTIVATIONS = {"sigmoid", "tanh", "relu", "hardsigmoid"}
_DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _index(b: NodeBuilder, x: str, index: int, axis: int = 0) -> str:
    """``x`` at ``index`` of ``axis``, the axis removed."""
    return b.op("Gather", [x, b.ints(index)], axis=axis)


def _columns(b: NodeBuilder, x: str, start: int, stop: int) -> str:
    """``x[..., start:stop]``."""
    return b.op("Slice", [x, b.ints([start]), b.ints([stop]), b.ints([-1])])


def _unsqueeze(b: NodeBuilder, x: str, axis: int, out: str | None = None) -> str:
    if b.opset >= 13:
        return b.op("Unsqueeze", [x, b.ints([axis])], out)
    return b.op("Unsqueeze", [x], out, axes=[axis])


def _activation(b: NodeBuilder, name: str, x: str, alpha: float | None,
                beta: float | None) -> str:
    kind = name.lower()
    if kind == "hardsigmoid":
        scaled = b.op("Add", [b.op("Mul", [x, b.const(0.2 if alpha is None else alpha)]),
                              b.const(0.5 if beta is None else beta)])
        return b.op("Min", [b.op("Max", [scaled, b.const(0.0)]), b.const(1.0)])
    return b.op({"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[kind], [x])


class _Cell:
    """What both recurrent rules need: sizes, activations, per-direction weights."""

    def __init__(self, b: NodeBuilder, gates: int) -> None:
        self.b, self.gates = b, gates
        self.hidden = int(b.attr("hidden_size"))
        self.layout = int(b.attr("layout", 0))
        direction = b.attr("direction", "forward")
        self.directions = {"forward": [False], "reverse": [True],
                           "bidirectional": [False, True]}.get(direction)
        shape = b.shape(b.x)
        self.seq, self.batch = (shape[1], shape[0]) if self.layout else (shape[0], shape[1])
        names = b.attr("activations") or None
        per = len(_DEFAULTS[b.node.op_type])
        names = [n.decode() if isinstance(n, bytes) else n for n in names] if names else \
            _DEFAULTS[b.node.op_type] * len(self.directions or [0])
        alphas, betas = b.attr("activation_alpha") or [], b.attr("activation_beta") or []
        self.acts = [(names[i], alphas[i] if i < len(alphas) else None,
                      betas[i] if i < len(betas) else None) for i in range(len(names))]
        self.per = per

    def reason(self) -> str | None:
        b = self.b
        if self.directions is None:
            return f"unknown direction {b.attr('direction')!r}"
        if b.attr("clip") is not None:
            return "the clip attribute is not unrolled"
        if int(b.attr("input_forget", 0)):
            return "input_forget=1 is not unrolled"
        unknown = {a[0] for a in self.acts} - {"Sigmoid", "Tanh", "Relu", "HardSigmoid"}
        if unknown:
            return f"activations {sorted(unknown)} are not unrolled"
        lens = b.input(4)
        if lens:
            value = b.inits.get(lens)
            if value is None or not np.all(np.asarray(value) == self.seq):
                return "sequence_lens other than a constant full length is not unrolled"
        return None

    def act(self, direction: int, which: int, x: str) -> str:
        name, alpha, beta = self.acts[direction * self.per + which]
        return _activation(self.b, name, x, alpha, beta)

    def weights(self, d: int) -> tuple[str, str, str | None, str | None]:
        """``W^T [I, gH]``, ``R^T [H, gH]``, ``Wb``, ``Rb`` of direction ``d``."""
        b, size = self.b, self.gates * self.hidden
        w = b.op("Transpose", [_index(b, b.input(1), d)], perm=[1, 0])
        r = b.op("Transpose", [_index(b, b.input(2), d)], perm=[1, 0])
        wb = rb = None
        if b.input(3):
            bias = _index(b, b.input(3), d)
            wb, rb = _columns(b, bias, 0, size), _columns(b, bias, size, 2 * size)
        return w, r, wb, rb

    def initial(self, index: int, d: int) -> str:
        b = self.b
        name = b.input(index)
        if name:
            return _index(b, name, d)
        return b.const(np.zeros((self.batch, self.hidden), np.float32))

    def inputs(self) -> str:
        """``X`` as ``[seq, batch, I]``."""
        b = self.b
        return b.op("Transpose", [b.x], perm=[1, 0, 2]) if self.layout else b.x

    def outputs(self, sequences: list[list[str]], finals: list[list[str]]) -> None:
        """``Y [seq, D, batch, H]`` (layout 1: ``[batch, seq, D, H]``) and the final
        states ``[D, batch, H]`` (layout 1: ``[batch, D, H]``) under the node's names."""
        b, node = self.b, self.b.node
        if node.output[0]:
            per_direction = []
            for steps in sequences:
                stacked = b.op("Concat", [_unsqueeze(b, h, 0) for h in steps], axis=0)
                per_direction.append(_unsqueeze(b, stacked, 1))
            y = b.op("Concat", per_direction, None if self.layout else node.output[0], axis=1)
            if self.layout:
                b.op("Transpose", [y], node.output[0], perm=[2, 0, 1, 3])
        for position, states in enumerate(finals, start=1):
            if len(node.output) <= position or not node.output[position]:
                continue
            out = node.output[position]
            joined = b.op("Concat", [_unsqueeze(b, s, 0) for s in states],
                          None if self.layout else out, axis=0)
            if self.layout:
                b.op("Transpose", [joined], out, perm=[1, 0, 2])


def _projected(cell: _Cell, x: str, w: str, wb: str | None) -> list[str]:
    """Rule 2: ``x_t @ W^T + Wb`` for every step."""
    b = cell.b
    projected = b.op("MatMul", [x, w])
    if wb is not None:
        projected = b.op("Add", [projected, wb])
    return [_index(b, projected, t) for t in range(cell.seq)]


@rule("LSTM", shapes=True)
def lstm(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    if b.shape(b.x) is None:
        return "input shape unknown"
    cell = _Cell(b, 4)
    reason = cell.reason()
    if reason:
        return f"LSTM: {reason}"
    x, hidden = cell.inputs(), cell.hidden
    sequences, final_h, final_c = [], [], []
    for d, backward in enumerate(cell.directions):
        w, r, wb, rb = cell.weights(d)
        steps = _projected(cell, x, w, wb)
        peep = _index(b, b.input(7), d) if b.input(7) else None
        h, c = cell.initial(5, d), cell.initial(6, d)
        outputs = []
        for t in (reversed(range(cell.seq)) if backward else range(cell.seq)):
            gates = b.op("Add", [steps[t], b.op("MatMul", [h, r])])
            if rb is not None:
                gates = b.op("Add", [gates, rb])
            i, o, f, g = (_columns(b, gates, k * hidden, (k + 1) * hidden) for k in range(4))
            if peep is not None:
                i = b.op("Add", [i, b.op("Mul", [_columns(b, peep, 0, hidden), c])])
                f = b.op("Add", [f, b.op("Mul", [_columns(b, peep, 2 * hidden, 3 * hidden), c])])
            i, f, g = cell.act(d, 0, i), cell.act(d, 0, f), cell.act(d, 1, g)
            c = b.op("Add", [b.op("Mul", [f, c]), b.op("Mul", [i, g])])
            if peep is not None:
                o = b.op("Add", [o, b.op("Mul", [_columns(b, peep, hidden, 2 * hidden), c])])
            h = b.op("Mul", [cell.act(d, 0, o), cell.act(d, 2, c)])
            outputs.append(h)
        sequences.append(outputs[::-1] if backward else outputs)
        final_h.append(h)
        final_c.append(c)
    cell.outputs(sequences, [final_h, final_c])
    return b.done()


@rule("GRU", shapes=True)
def gru(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    if b.shape(b.x) is None:
        return "input shape unknown"
    cell = _Cell(b, 3)
    reason = cell.reason()
    if reason:
        return f"GRU: {reason}"
    x, hidden = cell.inputs(), cell.hidden
    before_reset = bool(int(b.attr("linear_before_reset", 0)))
    sequences, finals = [], []
    one = b.const(1.0)
    for d, backward in enumerate(cell.directions):
        w, r, wb, rb = cell.weights(d)
        steps = _projected(cell, x, w, wb)
        r_zr = _columns(b, r, 0, 2 * hidden)
        r_h = _columns(b, r, 2 * hidden, 3 * hidden)
        rb_zr = _columns(b, rb, 0, 2 * hidden) if rb is not None else None
        rb_h = _columns(b, rb, 2 * hidden, 3 * hidden) if rb is not None else None
        h = cell.initial(5, d)
        outputs = []
        for t in (reversed(range(cell.seq)) if backward else range(cell.seq)):
            xt = steps[t]
            recurrent = b.op("MatMul", [h, r_zr])
            if rb_zr is not None:
                recurrent = b.op("Add", [recurrent, rb_zr])
            zr = b.op("Add", [_columns(b, xt, 0, 2 * hidden), recurrent])
            z = cell.act(d, 0, _columns(b, zr, 0, hidden))
            reset = cell.act(d, 0, _columns(b, zr, hidden, 2 * hidden))
            if before_reset:
                hh = b.op("MatMul", [h, r_h])
                hh = b.op("Add", [hh, rb_h]) if rb_h is not None else hh
                hh = b.op("Mul", [reset, hh])
            else:
                hh = b.op("MatMul", [b.op("Mul", [reset, h]), r_h])
                hh = b.op("Add", [hh, rb_h]) if rb_h is not None else hh
            candidate = cell.act(d, 1, b.op("Add", [_columns(b, xt, 2 * hidden, 3 * hidden),
                                                    hh]))
            keep = b.op("Mul", [z, h])
            h = b.op("Add", [b.op("Mul", [b.op("Sub", [one, z]), candidate]), keep])
            outputs.append(h)
        sequences.append(outputs[::-1] if backward else outputs)
        finals.append(h)
    cell.outputs(sequences, [finals])
    return b.done()
