"""Per-op rules, registered by op type (and opset range).

A rule knows three things about one op kind:

1. ``propagate``: given the channel layouts of the node's inputs, set the layouts
   of its outputs, couple initializer axes to layouts, merge layouts that must
   lose the same channels, or block channels it cannot handle (with a reason).
2. ``patch``: after the plan is fixed, update attributes and shape constants the
   slicing of initializers does not cover (``group``, split sizes, Reshape targets).
3. ``macs``: multiply-accumulates of the node given the kept channel counts.

Rules are looked up with :func:`lookup`; an op without a rule blocks every channel
layout that reaches it, with the reason "no rule for op X" (never a crash).
"""

from __future__ import annotations

__all__ = ["OpRule", "lookup", "register", "registered_ops"]

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxprune.analysis.context import AnalysisContext
    from onnxprune.planning.cost import CostContext
    from onnxprune.rewrite.context import RewriteContext


class OpRule:
    """Base rule: no output layout, no patch, no MACs. Subclasses override.

    ``data_inputs`` lists the inputs whose layouts ``propagate`` handles; a layout
    on any other input is blocked by the caller (``None``: the rule handles all).
    """

    data_inputs: tuple[int, ...] | None = (0,)

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        raise NotImplementedError

    def patch(self, node: ir.Node, ctx: RewriteContext) -> None:
        """Default: the generic initializer slicing is all this op needs."""

    def macs(self, node: ir.Node, ctx: CostContext) -> float:
        return 0.0


@dataclasses.dataclass(frozen=True)
class _Entry:
    rule: OpRule
    since: int
    until: int | None


_REGISTRY: dict[tuple[str, str], list[_Entry]] = {}
R = TypeVar("R", bound=type[OpRule])


def register(*op_types: str, domain: str = "", since: int = 1,
             until: int | None = None) -> Callable[[R], R]:
    """Class decorator: register one instance of the rule for each op type."""

    def wrap(cls: R) -> R:
        instance = cls()
        for op in op_types:
            _REGISTRY.setdefault((domain, op), []).append(_Entry(instance, since, until))
        return cls

    return wrap


def lookup(domain: str, op_type: str, opset: int) -> OpRule | None:
    domain = "" if domain == "ai.onnx" else domain
    for entry in _REGISTRY.get((domain, op_type), []):
        if entry.since <= opset and (entry.until is None or opset <= entry.until):
            return entry.rule
    return None


def registered_ops() -> list[str]:
    return sorted(op for (_, op) in _REGISTRY)
