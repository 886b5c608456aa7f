"""The command line: JSON on stdout, one-line errors, documented exit codes, recipes."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.errors import ExitCode
from tests.builders import GraphBuilder
from tests.conftest import MODELS

MLP = MODELS / "mlp.ts.onnx"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "mlp.onnx"
    shutil.copy(MLP, path)
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_analyze_json_lists_groups(runner, model):
    result = runner.invoke(main, ["analyze", str(model), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["params"] > 0 and report["groups"]
    assert any(g["prunable"] for g in report["groups"])
    assert all("reasons" in g for g in report["groups"])


def test_analyze_states_the_reachable_maximum(runner, model):
    """The printed maximum is the one compress enforces: just below it works, above fails."""
    report = json.loads(runner.invoke(main, ["analyze", str(model), "--json"]).stdout)
    limit = report["capacity"]["maximum"]["params"]
    assert 0 < limit <= report["capacity"]["prunable_share"]["params"] <= 1
    text = runner.invoke(main, ["analyze", str(model)]).stdout
    assert f"at most {limit:.3f} of params" in text
    below = runner.invoke(main, ["compress", str(model), "-t", f"{limit - 0.02:.3f}", "-o",
                                 str(model.parent / "below.onnx")])
    assert below.exit_code == 0, below.output
    above = runner.invoke(main, ["compress", str(model), "-t", f"{min(limit + 0.02, 0.99):.3f}",
                                 "-o", str(model.parent / "above.onnx")])
    assert above.exit_code == 5 and f"{limit:.3f}" in above.stderr


def test_analyze_table_names_reasons(runner, model):
    result = runner.invoke(main, ["analyze", str(model)])
    assert result.exit_code == 0
    assert "reaches graph" in result.stdout and "groups prunable" in result.stdout


def test_compress_json_writes_default_output_and_keeps_input(runner, model):
    before = digest(model)
    result = runner.invoke(main, ["compress", str(model), "--target", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output"].endswith("mlp.pruned.onnx")
    assert (model.parent / "mlp.pruned.onnx").exists()
    assert abs(report["achieved"] - 0.5) <= 0.02
    assert report["params_after"] < report["params_before"]
    assert report["verification"]["max_rel_diff"] < 1e-4
    assert digest(model) == before


def test_compress_table_summary(runner, model, tmp_path):
    result = runner.invoke(main, ["compress", str(model), "-t", "0.3", "-o",
                                  str(tmp_path / "o.onnx")])
    assert result.exit_code == 0
    assert "params" in result.stdout and "channels per layer" in result.stdout


def no_prunable_model(tmp_path):
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    b.output(b.conv(x, 3, 4, name="only"))
    path = tmp_path / "single.onnx"
    import onnx
    onnx.save(b.model(), path)
    return path


@pytest.mark.parametrize("case,code,message", [
    ("missing", ExitCode.INVALID_MODEL, "no such file"),
    ("garbage", ExitCode.INVALID_MODEL, "not a readable ONNX model"),
    ("bad_target", ExitCode.USAGE, "target"),
    ("unreachable", ExitCode.UNREACHABLE_TARGET, "unreachable: at most"),
    ("no_groups", ExitCode.UNSUPPORTED_MODEL, "no prunable channel group"),
    ("same_output", ExitCode.OUTPUT, "equals the input"),
    ("missing_folder", ExitCode.OUTPUT, "does not exist"),
])
def test_errors_have_exit_codes_and_one_line(runner, model, tmp_path, case, code, message):
    args = {
        "missing": [str(tmp_path / "nope.onnx"), "-t", "0.5"],
        "garbage": [str(tmp_path / "garbage.onnx"), "-t", "0.5"],
        "bad_target": [str(model), "-t", "1.5"],
        "unreachable": [str(model), "-t", "0.99"],
        "no_groups": [str(no_prunable_model(tmp_path)), "-t", "0.5"],
        "same_output": [str(model), "-t", "0.5", "-o", str(model)],
        "missing_folder": [str(model), "-t", "0.5", "-o", str(tmp_path / "x" / "y.onnx")],
    }[case]
    (tmp_path / "garbage.onnx").write_bytes(b"\x00garbage")
    before = digest(model)
    files_before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(main, ["compress", *args])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert digest(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before


def test_recipe_file_and_cli_override(runner, model, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {model}\ntarget: 0.4\nmetric: flops\nround_to: 4\n"
                      f"output: {tmp_path / 'r.onnx'}\n")
    result = runner.invoke(main, ["compress", "--config", str(recipe), "--target", "0.3",
                                  "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["options"]["target"] == 0.3 and report["options"]["metric"] == "flops"
    assert report["options"]["round_to"] == 4
    assert report["output"] == str(tmp_path / "r.onnx")


def test_json_recipe_with_unknown_key_names_it(runner, model, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"target": 0.4, "metrik": "flops"}))
    result = runner.invoke(main, ["compress", str(model), "--config", str(recipe)])
    assert result.exit_code == ExitCode.USAGE
    assert "unknown option 'metrik'" in result.stderr and "allowed:" in result.stderr


def test_recipe_bad_value_names_key_and_values(runner, model, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("target: 0.4\nscope: layerwise\n")
    result = runner.invoke(main, ["compress", str(model), "--config", str(recipe)])
    assert result.exit_code == ExitCode.USAGE
    assert "'scope'" in result.stderr and "global" in result.stderr


def test_seed_makes_random_criterion_deterministic(runner, model, tmp_path):
    outs = []
    for name in ("a.onnx", "b.onnx"):
        out = tmp_path / name
        result = runner.invoke(main, ["compress", str(model), "-t", "0.5", "--criterion",
                                      "random", "--seed", "7", "-o", str(out)])
        assert result.exit_code == 0
        outs.append(digest(out))
    assert outs[0] == outs[1]


def test_compress_writes_versioned_report_and_optional_extras(runner, model, tmp_path):
    from onnxprune.reporting.schema import REPORT_SCHEMA_VERSION, validate_report

    out = tmp_path / "small.onnx"
    html = tmp_path / "report.html"
    result = runner.invoke(main, ["compress", str(model), "-t", "0.5", "-o", str(out),
                                  "--bench", "--bench-runs", "3", "--report", str(html),
                                  "--mobile"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "small.onnx.report.json").read_text())
    validate_report(report)
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert set(report["versions"]) == {"onnx", "onnxruntime", "onnxprune"}
    assert report["options"]["bench"] is True
    cpu = report["benchmark"]["providers"]["cpu"][0]
    assert cpu["speedup"] > 0 and cpu["ideal_speedup"] > 1
    assert (tmp_path / "small.ort").exists() and report["mobile"]
    assert sum(row["before"] for row in report["layer_macs"]) == report["macs_before"]
    page = html.read_text()
    assert "<html" in page.lower() and "http://" not in page and "https://" not in page
