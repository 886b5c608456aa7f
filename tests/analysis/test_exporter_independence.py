"""Exporter independence: one architecture exported two ways prunes the same.

For every architecture in the fixture manifests (`fixtures/models/manifest.json` and, when
present, `fixtures/models/thirdparty/manifest.json`) exported more than once (same
``name``: another exporter, exporter version or opset, BatchNorm kept or folded),
`analyze` must find the same prunable share of params (within 5 points) and the same
maximum reachable target, params and flops (within 0.02).
"""

from __future__ import annotations

import itertools
import json

import pytest

from onnxprune.analysis import analyze
from onnxprune.graph import input_shapes, load_model
from onnxprune.importance import score_units
from onnxprune.pipeline.run_shapes import resolve_run_shapes
from onnxprune.planning.capacity import capacity
from tests.conftest import MODELS


def _entries() -> list[tuple[str, dict]]:
    entries = []
    for folder in (MODELS, MODELS / "thirdparty"):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            entries += [(str(folder / e["file"]), e) for e in json.loads(manifest.read_text())]
    return entries


def _pairs() -> list[tuple[str, str]]:
    by_arch: dict[str, list[str]] = {}
    for path, entry in _entries():
        by_arch.setdefault(entry["name"], []).append(path)
    return [pair for paths in by_arch.values() for pair in itertools.combinations(paths, 2)]


_CACHE: dict[str, object] = {}


def _capacity(path: str):
    if path not in _CACHE:  # costs at the run-time input shapes compress would choose
        with input_shapes.using(resolve_run_shapes(path)):
            analysis = analyze(load_model(path).model)
            _CACHE[path] = capacity(analysis, scores=score_units(analysis, "l1"))
    return _CACHE[path]


PAIRS = _pairs()


def test_the_zoo_has_pairs_of_exports():
    assert len(PAIRS) >= 20


@pytest.mark.parametrize(("first", "second"), PAIRS,
                         ids=[f"{a.split('/')[-1]}~{b.split('/')[-1]}" for a, b in PAIRS])
def test_two_exports_of_one_architecture_prune_alike(first: str, second: str):
    a, b = _capacity(first), _capacity(second)
    assert abs(a.prunable_share["params"] - b.prunable_share["params"]) <= 0.05, (a, b)
    for metric in ("params", "flops"):
        assert abs(a.maximum[metric] - b.maximum[metric]) <= 0.02, (metric, a, b)
