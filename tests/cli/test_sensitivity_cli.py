"""CLI: sensitivity --samples, --workers/--ray-address (local 2-worker Ray, missing extra:
exit 7), the task progress bar, and the executor flags of compress."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from rich.console import Console

from onnxprune.cli import main
from onnxprune.cli import task_progress as task_progress_module
from onnxprune.cli.task_progress import task_progress
from onnxprune.errors import ExitCode
from onnxprune.options import CompressOptions
from tests.calibration.models import DIGITS, DIGITS_TRAIN


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


SENSITIVITY = ("sensitivity", DIGITS, "--data", DIGITS_TRAIN, "--max-samples", "64",
               "--batch-size", "16", "--ratios", "0.3,0.7", "--json")


def test_workers_without_ray_is_exit_7_with_the_install_line(no_ray):
    for flags in (("--workers", "2"), ("--ray-address", "auto")):
        result = run(*SENSITIVITY, *flags)
        assert result.exit_code == ExitCode.RUNTIME_MISSING, result.output
        assert "pip install 'onnxprune[distributed]'" in result.output


def test_compress_sensitivity_allocation_passes_workers_to_the_executor(no_ray, tmp_path):
    result = run("compress", DIGITS, "--target", "0.3", "--data", DIGITS_TRAIN,
                 "--max-samples", "32", "--steps", "1", "--allocation", "sensitivity",
                 "--workers", "2", "-o", tmp_path / "out.onnx")
    assert result.exit_code == ExitCode.RUNTIME_MISSING, result.output
    assert "onnxprune[distributed]" in result.output
    options = CompressOptions(target=0.3, workers=2)
    assert (options.workers, options.ray_address) == (2, None)


def test_samples_flag_records_the_first_pass_and_the_remeasured_groups():
    result = run(*SENSITIVITY, "--samples", "32", "--seed", "3")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    info = document["subsample"]
    assert (info["samples"], info["seed"], info["remeasured_samples"]) == (32, 3, 64)
    for group in document["groups"]:
        assert group["samples"] == (64 if group["index"] in info["remeasured"] else 32)
    assert document["num_samples"] == 64


def test_local_two_worker_ray_equals_the_in_process_run():
    pytest.importorskip("ray", reason="the distributed extra is not installed")
    local = run(*SENSITIVITY)
    assert local.exit_code == 0, local.output
    spread = run(*SENSITIVITY, "--workers", "2")
    assert spread.exit_code == 0, spread.output
    a, b = json.loads(local.stdout), json.loads(spread.stdout)  # Ray may log to stderr
    assert a["evaluation"]["executor"] == "in-process"
    assert b["evaluation"] == {**a["evaluation"], "executor": "ray", "workers": 2}
    assert a["groups"] == b["groups"] and a["baseline_accuracy"] == b["baseline_accuracy"]
    import ray

    assert not ray.is_initialized()


def test_task_bar_shows_done_over_total_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(task_progress_module, "stderr", Console(file=io.StringIO()))
    with task_progress("cells", True) as callback:
        assert callback is None  # not a terminal
    with task_progress("cells", False) as callback:
        assert callback is None  # --json
    shown = io.StringIO()
    monkeypatch.setattr(task_progress_module, "stderr",
                        Console(file=shown, force_terminal=True, width=100))
    with task_progress("cells", True) as callback:
        callback(3, 8)
        callback(8, 8)
    text = shown.getvalue()
    assert "cells" in text and "8/8" in text and "ETA" in text
