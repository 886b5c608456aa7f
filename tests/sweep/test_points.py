"""Sweep points, names, Pareto fronts and path restoring (no model run)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.errors import UsageError
from onnxprune.sweep import grid
from onnxprune.sweep.inputs import pack_inputs, restore_paths
from onnxprune.sweep.rows import mark_pareto
from tests.conftest import MODELS


def test_grid_is_criterion_major_with_names_that_tell_targets_apart():
    points = grid([0.5, 0.3, 0.5], ["l1", "fpgm"], {"metric": "flops"})
    assert [p.name for p in points] == ["t0.50-l1", "t0.30-l1", "t0.50-fpgm", "t0.30-fpgm"]
    assert points[0].options == {"target": 0.5, "criterion": "l1", "metric": "flops"}
    close = grid([0.333, 0.334], ["l1"], {})
    assert [p.name for p in close] == ["t0.333-l1", "t0.334-l1"]


@pytest.mark.parametrize("targets, criteria, match", [
    ([1.5], ["l1"], "target"), ([0.5], ["magic"], "criterion"), ([], ["l1"], "no target")],
    ids=["target_above_one", "unknown_criterion", "no_target"])
def test_grid_rejects_bad_points_before_anything_runs(targets, criteria, match):
    with pytest.raises(UsageError, match=match):
        grid(targets, criteria, {})


def _row(name, cost, metric):
    return {"name": name, "latency_ms": cost, "size_bytes": cost,
            "task_metric": None if metric is None else {"result": metric}}


def test_pareto_front_keeps_only_undominated_rows():
    rows = [_row("original", 10.0, 0.99), _row("a", 5.0, 0.98), _row("b", 6.0, 0.97),
            _row("c", 2.0, 0.90), _row("d", 5.0, 0.98), _row("e", 1.0, None)]
    fronts = mark_pareto(rows)
    assert fronts == {"latency": ["original", "a", "c", "d"], "size": ["original", "a", "c", "d"]}
    assert rows[2]["pareto"] == {"latency": False, "size": False}  # b: a is faster and better
    assert rows[5]["pareto"] == {"latency": False, "size": False}  # no task metric


def test_restore_paths_maps_temporary_prefixes_back():
    mapping = {"/tmp/x/model/m.onnx": "models/m.onnx", "/tmp/x/t-1": "out"}
    value = {"input": "/tmp/x/model/m.onnx", "out": ["/tmp/x/t-1/p.onnx", 3], "k": "other"}
    assert restore_paths(value, mapping) == {"input": "models/m.onnx",
                                             "out": ["out/p.onnx", 3], "k": "other"}


def test_inputs_are_packed_once_with_a_content_key(tmp_path):
    data = tmp_path / "shards"
    data.mkdir()
    (data / "a.npz").write_bytes(b"1")
    packed = pack_inputs(str(MODELS / "mlp.ts.onnx"), str(data), None)
    assert set(packed.blobs) == {"model", "data"} and packed.blobs["data"].is_dir
    assert packed.blobs["data"].files == {"a.npz": b"1"}
    assert pack_inputs(str(MODELS / "mlp.ts.onnx"), str(data), None).key == packed.key
    (data / "a.npz").write_bytes(b"2")
    assert pack_inputs(str(MODELS / "mlp.ts.onnx"), str(data), None).key != packed.key


def test_recipe_gives_targets_criteria_and_options_flags_override(tmp_path):
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(f"model: {MODELS / 'mlp.ts.onnx'}\ntargets: [0.3, 0.5]\n"
                      "criteria: l1\nmetric: flops\nbench: true\n")
    done = CliRunner().invoke(main, ["sweep", "--config", str(recipe), "-o",
                                     str(tmp_path / "out"), "--json"])
    assert done.exit_code == 2 and "do not take bench" in done.output  # per-point bench
    recipe.write_text(recipe.read_text().replace("bench: true\n", ""))
    done = CliRunner().invoke(main, ["sweep", "--config", str(recipe), "--metric", "params",
                                     "-o", str(tmp_path / "out"), "--json", "--no-html",
                                     "--bench-runs", "2"])
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert [r["name"] for r in document["points"]] == ["t0.30-l1", "t0.50-l1"]
    assert {r["options"]["metric"] for r in document["points"]} == {"params"}


def test_sweep_takes_every_compress_option_a_point_can_have():
    from onnxprune.cli import compress as compress_cli
    from onnxprune.cli import sweep as sweep_cli

    compress_names = {p.name for p in compress_cli.command.params}
    sweep_names = {p.name for p in sweep_cli.command.params}
    not_taken = {"target", "criterion", "html_report", "bench", "mobile", "work_dir",
                 "resume"}  # -o is the sweep's folder
    assert compress_names - sweep_names == not_taken
    assert sweep_names - compress_names == {"targets", "criteria", "force", "html_path",
                                            "no_html"}
    assert [p.name for p in sweep_cli.command.params].count("workers") == 1
    steps = next(p for p in sweep_cli.command.params if p.name == "steps")
    assert "default: 1" in steps.help  # one-shot unless --steps, unlike compress


def test_recipe_workers_dispatch_the_points_and_are_not_point_options(tmp_path, monkeypatch):
    import onnxprune.sweep

    seen = {}

    def fake_sweep(model, targets, criteria, *, options, workers, ray_address, **kwargs):
        seen.update(options=options, workers=workers, ray_address=ray_address)
        raise KeyboardInterrupt  # stop here: the CLI's arguments are what is checked

    monkeypatch.setattr(onnxprune.sweep, "sweep", fake_sweep)
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(f"model: {MODELS / 'mlp.ts.onnx'}\ntargets: [0.3]\nworkers: 3\n"
                      "ray_address: auto\nmetric: flops\n")
    CliRunner().invoke(main, ["sweep", "--config", str(recipe), "-o", str(tmp_path / "o")])
    assert seen["workers"] == 3 and seen["ray_address"] == "auto"
    assert "workers" not in seen["options"] and "ray_address" not in seen["options"]
    assert seen["options"]["metric"] == "flops"
    CliRunner().invoke(main, ["sweep", "--config", str(recipe), "--workers", "2", "-o",
                              str(tmp_path / "o")])
    assert seen["workers"] == 2  # the flag wins over the recipe
