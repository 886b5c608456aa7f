"""An unreachable target names the options that would reach more, with their maxima."""

from __future__ import annotations

import re

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UnreachableTargetError
from onnxprune.importance import score_units
from onnxprune.planning import PlanOptions, make_plan
from onnxprune.planning.planner import reachable_maximum
from tests.analysis.test_embeddings import transformer_like
from tests.builders import GraphBuilder
from tests.oracle import load


def _error(analysis, **options) -> UnreachableTargetError:
    with pytest.raises(UnreachableTargetError) as info:
        make_plan(analysis, score_units(analysis), PlanOptions(**options))
    return info.value


def _named(message: str) -> dict[str, float]:
    return {flag: float(value)
            for flag, value in re.findall(r"with (--[a-z-]+(?: [0-9.]+)?) at most ([0-9.]+)",
                                          message)}


def test_prune_hidden_is_named_with_its_maximum():
    analysis = analyze(load(transformer_like().model()))
    error = _error(analysis, target=0.6)
    named = _named(str(error))
    assert "--prune-hidden" in named
    assert named["--prune-hidden"] == pytest.approx(
        reachable_maximum(analyze(load(transformer_like().model()), prune_hidden=True),
                          PlanOptions(0.6)), abs=1e-3)
    assert named["--prune-hidden"] > error.maximum


def conv_chain() -> GraphBuilder:
    b = GraphBuilder()
    x = b.conv(b.input([1, 3, 8, 8]), 3, 16)
    x = b.conv(b.op("Relu", [x]), 16, 16)
    b.output(b.conv(b.op("Relu", [x]), 16, 4))
    return b


@pytest.mark.parametrize(("options", "flag"), [
    (dict(min_keep=0.5), "--min-keep"), (dict(round_to=16), "--round-to")],
    ids=["min_keep", "round_to"])
def test_min_keep_and_round_to_are_named_when_they_reach_more(options, flag):
    analysis = analyze(load(conv_chain().model()))
    error = _error(analysis, target=0.9, **options)
    named = _named(str(error))
    found = next(k for k in named if k.startswith(flag))
    assert named[found] > error.maximum
    field = flag.removeprefix("--").replace("-", "_")
    value = float(found.split()[1])
    value = int(value) if field == "round_to" else value
    changed = {**options, field: value}
    assert named[found] == pytest.approx(
        reachable_maximum(analysis, PlanOptions(0.9, **changed)), abs=1e-3)
    assert f"at most {error.maximum:.3f} can be removed" in str(error)


def test_the_first_min_keep_that_reaches_the_target_is_named():
    analysis = analyze(load(conv_chain().model()))
    maxima = {m: reachable_maximum(analysis, PlanOptions(0.5, min_keep=m))
              for m in (0.5, 0.05, 0.02)}
    target = float(np.mean([maxima[0.5], maxima[0.05]]))
    error = _error(analysis, target=target, min_keep=0.5)
    assert "with --min-keep 0.05 at most" in str(error)


def test_nothing_better_keeps_the_plain_hint():
    analysis = analyze(load(conv_chain().model()))
    error = _error(analysis, target=0.99, min_keep=0.0)
    assert "with --" not in str(error) and "lower --min-keep/--round-to" in str(error)
