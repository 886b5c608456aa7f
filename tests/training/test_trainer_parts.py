"""The fine-tuning job split by concern: settings (learning rate), setup, loop, trainer.

Unit tests of the pieces that need no ONNX Runtime training; the whole job runs in
``test_finetune.py``."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from onnxprune.errors import UsageError
from onnxprune.training import loop, settings, setup, trainer
from onnxprune.training.batches import Batch


def test_trainer_keeps_the_names_its_callers_import():
    assert trainer.Job is settings.Job and trainer.Settings is settings.Settings
    assert trainer.lr_at is settings.lr_at
    assert (trainer.MAX_RETRIES, trainer.MIN_TRAINABLE) == (setup.MAX_RETRIES,
                                                           setup.MIN_TRAINABLE)
    for name in trainer.__all__:
        assert hasattr(trainer, name)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_learning_rate_warms_up_then_follows_the_schedule(schedule):
    s = settings.Settings(lr=0.1, warmup=0.2, lr_schedule=schedule)
    rates = [settings.lr_at(step, 10, s) for step in range(10)]
    assert rates[:2] == pytest.approx([0.05, 0.1])  # linear warm-up over 2 of 10 steps
    after = rates[2:]
    if schedule == "constant":
        assert after == pytest.approx([0.1] * 8)
    else:
        assert after[0] == pytest.approx(0.1) and all(np.diff(after) < 0)
    if schedule == "cosine":
        assert after[4] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("lr", 0.0, "learning rate"), ("optimizer", "adam", "unknown optimizer"),
    ("lr_schedule", "step", "unknown lr schedule"), ("bn", "yes", "unknown bn mode"),
    ("temperature", 0.0, "temperature")])
def test_settings_name_the_bad_value(field, value, message):
    with pytest.raises(UsageError, match=message):
        settings.Settings(**{field: value}).validate()


def test_masks_are_multiplied_into_the_parameters():
    parameter = types.SimpleNamespace(data=np.array([1.0, 2.0, 3.0], np.float32))
    state = types.SimpleNamespace(parameters={"w": parameter})
    loop.apply_masks(state, {"w": np.array([1.0, 0.0, 1.0], np.float32)})
    assert parameter.data.tolist() == [1.0, 0.0, 3.0] and parameter.data.dtype == np.float32


class _Teacher:
    """Doubles its input; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, feeds):
        self.calls += 1
        return {"y": feeds["x"] * 2}


def _batch(positions: list[int]) -> Batch:
    x = np.array(positions, np.float32)[:, None]
    return Batch(positions=np.array(positions), feeds={"x": x}, labels=None)


@pytest.mark.parametrize(("limit", "calls"), [(1 << 20, 2), (1, 3)],
                         ids=["cached", "over_the_limit"])
def test_teacher_outputs_are_computed_once_per_sample_when_they_fit(limit, calls):
    teacher = _Teacher()
    cache = loop.TeacherCache(teacher, samples=4, limit=limit)
    first, second = cache(_batch([0, 1])), cache(_batch([2, 3]))
    again = cache(_batch([3, 0]))
    assert first["y"].ravel().tolist() == [0.0, 2.0] and second["y"].ravel().tolist() == [4.0, 6.0]
    assert again["y"].ravel().tolist() == [6.0, 0.0]
    assert teacher.calls == calls


def test_no_teacher_gives_no_outputs():
    assert loop.TeacherCache(None, samples=4)(_batch([0])) == {}
