"""Einsum with one constant operand: a linear layer written as an equation.

Letters of ``x`` (the run-time operand) and ``W`` (a constant initializer) fall in four
kinds: *contracted* (in both, not in the output: the input features), *created*
(in ``W`` and the output only: the output features), *shared* (in both and the output:
a group axis, as in ``btgi,gih->btgh``) and *free* (in ``x`` and the output only:
batch, time, ``...``).

Cases:

1. A layout on a contracted axis of ``x`` couples ``W``'s axis of that letter (the
   input features of ``...i,ij->...j``, ``bti,ih->bth``, ``bij,jk->bik``).
2. A layout on a free axis passes to the output's axis of that letter; a layout on a
   shared axis does too and couples ``W``'s axis of that letter (pruning whole groups
   of ``btgi,gih->btgh``). The output features are then not a source (its layout
   is taken), as for MatMul.
3. Otherwise the created letter's axis of the output is a new source coupled to
   ``W``'s axis of that letter (one created letter; in a grouped form each group
   loses the same output features, since ``W``'s axis is shared by the groups).
4. Blocked, with the equation in the reason: no constant operand (two run-time
   operands, e.g. attention's ``bhqd,bhkd->bhqk``), more than two operands, a letter
   repeated within one operand (diagonals), an ellipsis in ``W``, more than one
   created letter, or a layout on ``x`` whose length does not match ``W``.
5. MACs: the output's kept elements times the kept sizes of the contracted letters.
"""

from __future__ import annotations

__all__ = ["EinsumRule", "parse_equation"]

import dataclasses
import math

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register

_FRESH = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclasses.dataclass(frozen=True)
class Equation:
    operands: tuple[str, ...]  # letters per operand, ellipses expanded
    output: str


def parse_equation(equation: str, ranks: list[int | None]) -> Equation | str:
    """Letters per operand and output with ``...`` expanded to fresh capitals (reason
    string when the equation cannot be read)."""
    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        return "operand count differs from the equation"
    dots = 0
    for term, rank in zip(terms, ranks):
        if "..." in term:
            if rank is None:
                return "rank unknown under '...'"
            dots = max(dots, rank - len(term.replace("...", "")))
    fresh = _FRESH[-dots:] if dots else ""
    if any(c in text for c in fresh):
        return "'...' next to capital letters"
    expanded = []
    for term, rank in zip(terms, ranks):
        if "..." in term:
            own = rank - len(term.replace("...", ""))
            term = term.replace("...", fresh[len(fresh) - own:] if own else "")
        expanded.append(term)
    if arrow:
        output = rhs.replace("...", fresh)
    else:
        counts = {c: "".join(expanded).count(c) for c in "".join(expanded)}
        output = fresh + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in fresh))
    return Equation(tuple(expanded), output)


def _equation(node: ir.Node) -> str:
    attr = node.attributes.get("equation")
    return "" if attr is None else str(attr.value)


@register("Einsum", since=12)
class EinsumRule(OpRule):
    data_inputs = None

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        eq = _equation(node)
        where = f"{describe(node)}: Einsum '{eq}'"
        if not any(ctx.layout(v) is not None for v in node.inputs) and not self._creates(
                node, ctx):
            return
        found = _operands(node, ctx)
        if isinstance(found, str):
            ctx.block_inputs(node, f"{where} {found}")
            return
        x_index, w_index, parsed = found
        x, w = node.inputs[x_index], node.inputs[w_index]
        xl, wl = parsed.operands[x_index], parsed.operands[w_index]
        created = [c for c in wl if c in parsed.output and c not in xl]
        if len(created) > 1:
            ctx.block_inputs(node, f"{where} creates features on several axes "
                                   f"({', '.join(created)})")
            return
        w_shape = tuple(int(d) for d in w.const_value.shape)
        layout = ctx.layout(x)
        out = node.outputs[0]
        if layout is not None:
            letter = xl[layout.axis]
            if letter in wl and len(layout) != w_shape[wl.index(letter)]:
                ctx.block(layout.ids, f"{where}: input has {len(layout)} features on "
                                      f"'{letter}', the weight {w_shape[wl.index(letter)]}")
                return
            if letter in wl:
                role = "in" if letter not in parsed.output else "const"
                ctx.couple(node, w_index, wl.index(letter), layout.ids, role=role)
            if letter in parsed.output:  # case 2
                ctx.set_layout(out, parsed.output.index(letter), layout.ids)
                return
        if created:
            axis = wl.index(created[0])
            ids = ctx.new_source(node, out, parsed.output.index(created[0]), w_shape[axis],
                                 "Einsum output")
            ctx.couple(node, w_index, axis, ids, role="out")

    @staticmethod
    def _creates(node: ir.Node, ctx: AnalysisContext) -> bool:
        return len(node.inputs) == 2 and any(ctx.is_param(v) for v in node.inputs)

    def macs(self, node, ctx) -> float:
        found = _operands(node, ctx)
        if isinstance(found, str) or ctx.shape(node.outputs[0]) is None:
            return 0.0
        x_index, w_index, parsed = found
        x, w = node.inputs[x_index], node.inputs[w_index]
        xl, wl = parsed.operands[x_index], parsed.operands[w_index]
        sizes = []
        for letter in (c for c in wl if c in xl and c not in parsed.output):
            sizes.append(ctx.kept_count(x, axis=xl.index(letter),
                                        fallback=int(w.const_value.shape[wl.index(letter)])))
        return float(ctx.numel_kept(node.outputs[0]) * math.prod(sizes))


def _operands(node: ir.Node, ctx) -> tuple[int, int, Equation] | str:
    """(x index, W index, parsed equation), or the reason of case 4."""
    if len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return "has other than two operands"
    consts = [i for i, v in enumerate(node.inputs) if v.const_value is not None
              and v.is_initializer()]
    if len(consts) != 1:
        return "has no constant operand" if not consts else "has two constant operands"
    w_index = consts[0]
    x_index = 1 - w_index
    parsed = parse_equation(_equation(node), [ctx.rank(v) if i == x_index
                                              else len(v.const_value.shape)
                                              for i, v in enumerate(node.inputs)])
    if isinstance(parsed, str):
        return parsed
    if "..." in _equation(node).split("->")[0].split(",")[w_index]:
        return "has '...' in the constant operand"
    if any(len(set(t)) != len(t) for t in parsed.operands) or \
            len(set(parsed.output)) != len(parsed.output):
        return "repeats a letter within one operand (a diagonal)"
    if ctx.rank(node.inputs[x_index]) not in (None, len(parsed.operands[x_index])):
        return "rank differs from the equation"
    return x_index, w_index, parsed

