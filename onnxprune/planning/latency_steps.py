"""Progressive ``--metric latency``: every step plans on the table measured once.

Rules:

1. ``step_table(original, specs)`` is the latency model of an already pruned step
   model, from the table measured on the ORIGINAL model; nothing is measured. Layers
   are matched by name (a layer's first output, which the rewrite keeps). A matched
   layer's grid is the original's grid points below its current widths plus the
   current widths, each at the original table's interpolated time: on the counts the
   step model can still reach, its curve is the original's.
2. The step table keeps the original's fixed part and scale (it is written with a
   ``context_fraction`` that reproduces them), so its prediction of any kept counts
   equals the original table's prediction of the same counts, and its ``whole_ms``
   is the original table's prediction of the step model. A layer of the step model
   the original table does not have stays unmodelled (listed under
   ``meta["unmatched"]``); an original layer the step model lost takes its time with it.
3. The nodes (``original.nodes``, matched by key): a node whose carrier in the step
   model (``nodes``, :func:`~onnxprune.planning.latency_nodes.node_specs` of the step's
   analysis) has ``w`` of the original's ``W`` channels takes ``ms * w / W`` at width
   ``w``, so its time stays linear in the kept fraction relative to the ORIGINAL; a node
   without a carrier now, or when ``nodes`` is not given, keeps the original entry; a
   node the step model lost takes its time with it.
4. ``step_target(original_ms, current_ms, cumulative)``: the fraction of the step
   model's predicted latency to remove so that it lands at ``1 - cumulative`` of the
   ORIGINAL predicted latency; 0 when the step model is already there.
"""

from __future__ import annotations

__all__ = ["step_table", "step_target"]

import logging

from onnxprune.errors import UsageError
from onnxprune.planning.latency_model import LatencyTable, LayerSpec
from onnxprune.planning.latency_nodes import NodeSpec, kept_fraction

logger = logging.getLogger(__name__)


def _axis(grid: list[int], width: int) -> list[int]:
    return [c for c in grid if c < width] + [width]


def _step_nodes(original: LatencyTable, nodes: dict[str, NodeSpec | None] | None
                ) -> dict[str, dict]:
    """Rule 3."""
    if nodes is None:
        return {k: dict(v) for k, v in original.nodes.items()}
    out = {}
    for name, entry in original.nodes.items():
        if name not in nodes:
            continue
        spec, width = nodes[name], entry.get("width")
        if spec is None or not width:
            out[name] = dict(entry)
            continue
        out[name] = {"ms": float(entry["ms"]) * kept_fraction(spec.width, int(width)),
                     "width": spec.width}
    return out


def step_table(original: LatencyTable, specs: list[LayerSpec],
               nodes: dict[str, NodeSpec | None] | None = None) -> LatencyTable:
    """Rules 1-3: the step model's table (``specs`` are its layers at the run's shapes,
    ``nodes`` its nodes' carriers)."""
    layers, depthwise, unmatched = {}, [], []
    for spec in specs:
        entry = original.layers.get(spec.name)
        if entry is None:
            unmatched.append(spec.name)
            continue
        if spec.name in original.depthwise:
            counts = _axis(entry["c_in"], spec.c_in)
            ms = [[original.layer_ms(spec.name, c, c) for c in counts]]
            layers[spec.name] = {"c_in": counts, "c_out": list(counts), "ms": ms}
            depthwise.append(spec.name)
            continue
        c_in, c_out = _axis(entry["c_in"], spec.c_in), _axis(entry["c_out"], spec.c_out)
        layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                             "ms": [[original.layer_ms(spec.name, a, b) for b in c_out]
                                    for a in c_in]}
    if unmatched:
        logger.warning("latency step table: %d layer(s) not in the original table: %s",
                       len(unmatched), ", ".join(unmatched[:5]))
    fixed, scale = original.fixed_ms, original.scale
    table = LatencyTable(layers, 0.0, original.provider, original.threads,
                         dict(original.input_shapes), tuple(depthwise),
                         {"step_of": original.meta.get("key", {}).get("hash"),
                          "unmatched": unmatched})
    table.nodes = _step_nodes(original, nodes)
    modelled = scale * table.modelled_ms
    table.whole_ms = fixed + modelled + table.nodes_ms
    table.context_fraction = modelled / table.whole_ms if table.whole_ms > 0 else 1.0
    return table


def step_target(original_ms: float, current_ms: float, cumulative: float) -> float:
    """Rule 3: this step's target relative to the step model's predicted latency."""
    if not 0.0 < cumulative < 1.0:
        raise UsageError(f"--target must be in (0, 1), got {cumulative}")
    if current_ms <= 0 or original_ms <= 0:
        raise UsageError("the latency table predicts 0 ms for the model; remeasure it")
    return max(0.0, 1.0 - (1.0 - cumulative) * original_ms / current_ms)
