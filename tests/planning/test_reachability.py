"""One reachability check: the planner, the sensitivity allocation, the capacity report
and ``reachable_maximum`` agree on the maximum and refuse the same targets."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

import onnxprune
from onnxprune.analysis import analyze
from onnxprune.calibration.sensitivity import GroupSensitivity, Sensitivity
from onnxprune.errors import UnreachableTargetError
from onnxprune.importance import score_units
from onnxprune.planning import PlanOptions, make_plan
from onnxprune.planning.allocation import _levels, make_sensitivity_plan
from onnxprune.planning.capacity import capacity
from onnxprune.planning.planner import Searcher, reachable_maximum
from tests.builders import GraphBuilder
from tests.oracle import load


def _analysis():
    """Two convs (16 and 40 channels, the second with 3 Split parts) -> head."""
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    h = b.conv(h, 16, 40, name="c2")
    parts = b.op("Split", [h, b.ints([8, 16, 16])], n_out=3, axis=1)
    b.output(b.op("Concat", [b.conv(p, c, 4, name=f"h{i}")
                             for i, (p, c) in enumerate(zip(parts, (8, 16, 16)))], axis=1))
    return analyze(load(b.model()))


def _sensitivity(analysis) -> Sensitivity:
    groups = [GroupSensitivity(g.index, g.name, g.size, int((~g.blocked).sum()),
                               [{"removed": g.size // 2, "damage": 0.1 * (g.index + 1)}])
              for g in analysis.prunable_groups]
    return Sensitivity("m", "l1", [0.5], "kl", 8, None, groups, input_shapes=None)


@pytest.mark.parametrize("metric", ["params", "flops"])
@pytest.mark.parametrize("round_to", [1, None])
def test_every_planner_refuses_the_same_targets_with_the_same_maximum(metric, round_to):
    analysis = _analysis()
    scores = score_units(analysis)
    maximum = reachable_maximum(analysis, PlanOptions(0.5, metric, round_to=round_to), scores)
    reported = capacity(analysis, PlanOptions(0.5, round_to=round_to), scores).maximum
    assert reported[metric] == pytest.approx(maximum, abs=1e-6)  # rounded to 6 places
    above = PlanOptions(min(maximum + 0.02, 0.99), metric, round_to=round_to)
    errors = []
    for plan in (lambda o: make_plan(analysis, scores, o),
                 lambda o: make_sensitivity_plan(analysis, scores, o, _sensitivity(analysis))):
        with pytest.raises(UnreachableTargetError) as info:
            plan(above)
        errors.append(info.value)
    assert errors[0].maximum == errors[1].maximum == maximum
    assert str(errors[0]) == str(errors[1])
    below = PlanOptions(maximum - 0.02, metric, round_to=round_to)
    assert make_plan(analysis, scores, below).maximum == maximum
    assert make_sensitivity_plan(analysis, scores, below, _sensitivity(analysis)).maximum \
        == maximum


def test_the_searcher_maximum_is_every_group_at_its_largest_count():
    analysis = _analysis()
    search = Searcher(analysis, score_units(analysis), PlanOptions(0.3))
    counts = search.maximum_counts()
    assert counts == [opts.counts[-1] for opts, _ in search.groups]
    assert search.maximum() == search.achieved(counts) == search.require_reachable()


def test_thinned_allocation_levels_keep_the_largest_count():
    for n in (1, 5, 24, 25, 97, 300):
        counts = list(range(0, 2 * n, 2))
        levels = _levels(counts)
        assert levels[0] == counts[0] and levels[-1] == counts[-1]


def test_only_the_searcher_builds_the_unreachable_target_error():
    """Every structured planner goes through ``Searcher.require_reachable``."""
    package = pathlib.Path(onnxprune.__file__).parent
    callers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if re.search(r"\bunreachable_error\(", p.read_text())
                     and p.name != "alternatives.py")
    assert callers == ["planning/planner.py"]
    assert len(re.findall(r"\bunreachable_error\(",
                          (package / "planning" / "planner.py").read_text())) == 1


def test_scores_only_choose_which_units_not_how_many():
    analysis = _analysis()
    rng = np.random.default_rng(0)
    maxima = {round(reachable_maximum(analysis, PlanOptions(0.5), rng.random(analysis.num_units)),
                    9) for _ in range(3)}
    assert maxima == {round(reachable_maximum(analysis, PlanOptions(0.5)), 9)}
