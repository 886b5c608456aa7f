"""The whole model's profile, node by node: the latency table's node part.

Rules:

1. The whole model is profiled as a copy whose nodes are named ``onnxprune_n<index>``
   (``named_model``); a HardSwish, which ONNX Runtime runs as an inlined HardSigmoid and
   Mul with names of its own, is written as those two nodes, named
   ``onnxprune_n<index>_hardsigmoid`` and ``_mul``.
2. A profiled kernel that is not a modelled op (Conv/Gemm/MatMul and their fused
   forms) belongs to the original node whose index its name contains, or, for a node
   the NCHWc layout pass rewrote (``<output>_nchwc``), to the producer of that output;
   kernels of nodes ONNX Runtime created (layout reorders, other inlined functions)
   belong to none and stay in the fixed part.
3. ``node_fractions``: a node's share is the median over runs of its kernels' time over
   the run's time (0 in a run without it). ``node_entries``: a node's ``ms`` in the
   table is its share times the whole latency (shares summing past ``1 -
   context_fraction``, what the layers leave, are scaled down to it), with its
   carrier's ``width`` (:func:`~onnxprune.planning.latency_nodes.node_specs`;
   ``None``: fixed time).
"""

from __future__ import annotations

__all__ = ["named_model", "node_entries", "node_fractions"]

import json
import pathlib
import re

import numpy as np
import onnx

_NODE_NAME = "onnxprune_n"
_NODE_RE = re.compile(_NODE_NAME + r"(\d+)(?!\d)")


def _expanded(node: onnx.NodeProto, name: str) -> list[onnx.NodeProto]:
    """Rule 1: a HardSwish as the HardSigmoid and Mul ONNX Runtime runs it as, named
    ``<name>_hardsigmoid`` and ``<name>_mul``; any other node as it is, named ``name``."""
    if node.op_type != "HardSwish" or node.domain not in ("", "ai.onnx"):
        node.name = name
        return [node]
    gate = node.output[0] + "__onnxprune_hardsigmoid"
    return [onnx.helper.make_node("HardSigmoid", [node.input[0]], [gate],
                                  name=name + "_hardsigmoid", alpha=1.0 / 6.0, beta=0.5),
            onnx.helper.make_node("Mul", [node.input[0], gate], [node.output[0]],
                                  name=name + "_mul")]


def named_model(model: onnx.ModelProto) -> tuple[bytes, list[str]]:
    """Rule 1: the model with its nodes named by index (serialized), each index's key."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    keys, nodes = [], []
    for i, node in enumerate(copy.graph.node):
        keys.append(node.output[0] if node.output else "")
        nodes.extend(_expanded(node, f"{_NODE_NAME}{i}"))
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy.SerializeToString(), keys


def _node_key(name: str, keys: list[str], outputs: set[str]) -> str | None:
    match = _NODE_RE.search(name)
    if match and int(match.group(1)) < len(keys):
        return keys[int(match.group(1))] or None
    if name.endswith("_nchwc") and name[:-len("_nchwc")] in outputs:
        return name[:-len("_nchwc")]
    return None


def node_fractions(profile: str, keys: list[str], modelled: set[str] | frozenset[str]
                   ) -> dict[str, float]:
    """Rules 2-3: median over runs of each node's kernels' share of the run (kernels of
    ``modelled`` ops left out); ``keys[i]`` is the key of the node ``onnxprune_n<i>``."""
    events = json.loads(pathlib.Path(profile).read_text())
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events
            if e.get("cat") == "Session" and e.get("name") == "model_run" and "dur" in e]
    outputs = {k for k in keys if k}
    kernels = []
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or "dur" not in e:
            continue
        if (e.get("args") or {}).get("op_name") in modelled:
            continue
        key = _node_key(name[:-len("_kernel_time")], keys, outputs)
        if key is not None:
            kernels.append((e["ts"], float(e["dur"]), key))
    shares: dict[str, list[float]] = {}
    for start, end in runs:
        if end <= start:
            continue
        per_run: dict[str, float] = {}
        for ts, dur, key in kernels:
            if start <= ts <= end:
                per_run[key] = per_run.get(key, 0.0) + dur / (end - start)
        for key in set(per_run) | set(shares):
            shares.setdefault(key, []).append(per_run.get(key, 0.0))
    count = sum(1 for start, end in runs if end > start)
    return {k: float(np.median(v + [0.0] * (count - len(v)))) for k, v in shares.items()}


def node_entries(shares: dict[str, float], widths: dict, context: float | None,
           whole_ms: float) -> dict[str, dict]:
    """Rule 3: the nodes' entries; shares beyond ``1 - context`` are scaled down."""
    shares = {k: v for k, v in shares.items() if k in widths and v > 0}
    if context is None or not shares:
        return {}
    total, room = sum(shares.values()), max(0.0, 1.0 - context)
    factor = room / total if total > room else 1.0
    return {k: {"ms": round(v * factor * whole_ms, 6), "width": widths[k]}
            for k, v in sorted(shares.items())}
