"""One cubic schedule for every progressive flow (``onnxprune.planning.schedule``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from onnxprune.planning.schedule import cubic_schedule, step_target


@pytest.mark.parametrize("final", [0.1, 0.3, 0.7, 0.9, 1.0, 1 / 3])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 10])
def test_the_last_step_is_the_final_fraction_exactly(final, steps):
    levels = cubic_schedule(final, steps)
    assert len(levels) == steps and levels[-1] == final


def test_steps_grow_and_front_load():
    levels = np.array(cubic_schedule(0.8, 5))
    increments = np.diff(np.concatenate([[0.0], levels]))
    assert (increments > 0).all() and (np.diff(increments) < 0).all()
    assert levels[0] == pytest.approx(0.8 * (1 - 0.8 ** 3))


def test_a_schedule_needs_a_step():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        cubic_schedule(0.5, 0)


def test_step_target_removes_the_rest_of_the_goal_from_the_current_model():
    current = 600.0
    relative = step_target(0.61, 1000.0, current)
    assert current * (1 - relative) == pytest.approx(1000.0 * (1 - 0.61))
    assert step_target(0.5, 1000.0, 0.0) == 0.0


def test_every_progressive_flow_uses_this_schedule():
    from onnxprune import sparsity, training
    from onnxprune.pipeline import steps as structured_progressive
    from onnxprune.sparsity import progressive as sparse_progressive

    assert sparse_progressive.cubic_schedule is cubic_schedule
    assert structured_progressive.cubic_schedule is cubic_schedule
    assert structured_progressive.step_target is step_target
    assert sparsity.cubic_schedule is training.cubic_schedule is cubic_schedule
    for gone in ("onnxprune.sparsity.schedule", "onnxprune.training.schedule"):
        assert importlib.util.find_spec(gone) is None
