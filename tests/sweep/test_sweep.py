"""``onnxprune sweep``: every point written and equal to its own compress run, in process
and on a local 2-worker Ray; failures kept per point; the folder never overwritten."""

from __future__ import annotations

import json
import tempfile

import onnx
import pytest
from click.testing import CliRunner

from onnxprune import compress
from onnxprune.cli import main
from onnxprune.errors import ExitCode
from onnxprune.sweep import sweep
from tests.chromium import needs_chromium, render_in_chromium
from tests.conftest import MODELS, ROOT

MODEL = MODELS / "digits_cnn.ts.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"
DATA_ARGS = ["--data", str(TRAIN), "--eval-data", str(TEST), "--max-samples", "128",
             "--bench-runs", "3"]
OPTIONS = {"data": str(TRAIN), "eval_data": str(TEST), "max_samples": 128, "bench_runs": 3}
NAMES = ["t0.30-l1", "t0.50-l1", "t0.70-l1", "t0.30-taylor", "t0.50-taylor", "t0.70-taylor"]
# what a point's row says about its pruned model (not its timing or where it lies)
SAME = ("name", "target", "criterion", "status", "achieved", "params", "macs", "size_bytes",
        "task_metric", "steps", "exit_code")


def run(*args: str):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "digits.sweep"
    done = run(MODEL, "--targets", "0.3,0.5,0.7", "--criteria", "l1,taylor", *DATA_ARGS,
               "-o", folder, "--json")
    assert done.exit_code == 0, done.output
    return folder, json.loads(done.stdout)


def test_sweep_writes_every_point_the_json_and_the_page(swept):
    folder, document = swept
    assert [row["name"] for row in document["points"]] == NAMES
    assert json.loads((folder / "sweep.json").read_text())["points"] == document["points"]
    assert document["passed"] == 6 and document["failed"] == 0 and document["exit_code"] == 0
    original = document["original"]
    assert original["name"] == "original" and original["path"] == str(MODEL)
    assert original["task_metric"]["metric"] == "accuracy"  # labels in --eval-data
    latency = document["latency"]
    assert latency["interleaved"] and latency["provider"] == "cpu" and latency["runs"] == 3
    for row in [original, *document["points"]]:
        assert row["latency_ms"] > 0 and row["latency"]["runs"] == 3
    for row in document["points"]:
        assert row["status"] == "ok" and row["steps"] == 1  # one-shot by default
        assert row["params"] < original["params"] and row["size_bytes"] < original["size_bytes"]
        assert abs(row["achieved"] - row["target"]) < 0.05
        assert row["task_metric"]["original"] == original["task_metric"]["result"]
        assert (folder / f"{row['name']}.onnx").stat().st_size == row["size_bytes"]
        report = json.loads((folder / f"{row['name']}.onnx.report.json").read_text())
        assert report["input"] == str(MODEL)  # paths restored to the user's files
        assert report["options"]["eval_data"] == str(TEST) == row["options"]["eval_data"]
    for axis, key in (("latency", "latency_ms"), ("size", "size_bytes")):
        front = [r for r in [original, *document["points"]] if r["pareto"][axis]]
        assert [r["name"] for r in front] == document["pareto"][axis] and front
        for row in front:  # nothing dominates a front row
            assert not any(o[key] <= row[key] and o["task_metric"]["result"] >=
                           row["task_metric"]["result"] and o is not row and
                           (o[key], o["task_metric"]["result"]) !=
                           (row[key], row["task_metric"]["result"])
                           for o in [original, *document["points"]])
    page = (folder / "sweep.html").read_text()
    assert document["html"] == str(folder / "sweep.html")
    assert page.count('<img alt="task metric vs') == 2 and "http" not in page
    assert all(name in page for name in NAMES)


def test_points_equal_separate_compress_runs(swept, tmp_path):
    folder, document = swept
    for row in document["points"]:
        output = tmp_path / f"{row['name']}.onnx"
        alone = compress(MODEL, row["target"], criterion=row["criterion"], steps=1,
                         output=output, **OPTIONS)
        assert (row["params"], row["macs"], row["achieved"]) == (
            alone.params_after, alone.macs_after, alone.achieved)
        assert row["task_metric"]["result"] == alone.accuracy["result"]
        assert output.read_bytes() == (folder / f"{row['name']}.onnx").read_bytes()


@needs_chromium
def test_sweep_page_renders_in_headless_chromium(swept, tmp_path):
    page = (swept[0] / "sweep.html").read_text()
    proc, console = render_in_chromium(page, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console == []
    assert "<title>images:2:broken:0</title>" in proc.stdout


def test_local_ray_sweep_equals_in_process(swept, tmp_path):
    pytest.importorskip("ray", reason="the distributed extra is not installed")
    folder, document = swept
    on_ray = sweep(MODEL, [0.3, 0.5, 0.7], ["l1", "taylor"], options=OPTIONS,
                   output=tmp_path / "ray", workers=2)
    assert on_ray["executor"] == {"name": "ray", "workers": 2}
    assert [{k: r[k] for k in SAME} for r in on_ray["points"]] == [
        {k: r[k] for k in SAME} for r in document["points"]]
    for name in NAMES:
        assert ((tmp_path / "ray" / f"{name}.onnx").read_bytes()
                == (folder / f"{name}.onnx").read_bytes())
    import ray

    assert not ray.is_initialized()


def test_failed_point_is_a_row_and_the_others_are_written(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the points write inputs
    folder = tmp_path / "out"
    done = run(MODEL, "--targets", "0.5,0.99", "--criteria", "l1", *DATA_ARGS, "-o", folder,
               "--json")
    assert done.exit_code == ExitCode.SWEEP_POINTS == 12, done.output
    document = json.loads(done.stdout)
    good, bad = document["points"]
    assert good["status"] == "ok" and (folder / "t0.50-l1.onnx").is_file()
    assert bad["status"] == "failed" and bad["exit_code"] == ExitCode.UNREACHABLE_TARGET
    assert bad["error_kind"] == "UnreachableTargetError" and "reachable" in bad["error"]
    assert not (folder / "t0.99-l1.onnx").exists()
    assert document["failed"] == 1 and document["exit_code"] == 12
    assert "1 of 2 sweep point(s) failed" in done.stderr
    assert "exit 5" in (folder / "sweep.html").read_text()
    assert list(scratch.iterdir()) == []  # every point removed its inputs, failed or not


def test_missing_ray_is_exit_7_with_the_install_line(tmp_path, no_ray):
    done = run(MODEL, "--targets", "0.5", "--criteria", "l1", "--workers", "2",
               "-o", tmp_path / "out")
    assert done.exit_code == ExitCode.RUNTIME_MISSING == 7, done.output
    assert "pip install 'onnxprune[distributed]'" in done.output
    assert not (tmp_path / "out").exists()


def test_existing_folder_is_not_overwritten_without_force(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "t0.50-l1.onnx").write_bytes(b"mine")
    done = run(MODEL, "--targets", "0.5", "--criteria", "l1", "-o", folder, "--no-html")
    assert done.exit_code == ExitCode.OUTPUT == 9, done.output
    assert "--force" in done.output
    assert [p.name for p in folder.iterdir()] == ["t0.50-l1.onnx"]
    assert (folder / "t0.50-l1.onnx").read_bytes() == b"mine"
    forced = run(MODEL, "--targets", "0.5", "--criteria", "l1", "-o", folder, "--no-html",
                 "--force", "--bench-runs", "2")
    assert forced.exit_code == 0, forced.output
    onnx.checker.check_model(str(folder / "t0.50-l1.onnx"))
    assert (folder / "sweep.json").is_file() and not (folder / "sweep.html").exists()
