"""Loading and saving: forms of weights, external data, bad files, atomic writes."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxprune import compress
from onnxprune.errors import InvalidModelError, OutputError
from onnxprune.graph import load_model, save_model
from tests.builders import GraphBuilder
from tests.conftest import MODELS


def small_cnn(opset: int = 13) -> onnx.ModelProto:
    b = GraphBuilder(opset=opset)
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    b.output(b.conv(h, 16, 4, name="c2"))
    return b.model()


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_constant_nodes_and_identity_become_initializers():
    loaded = load_model(MODELS / "constant_weights.onnx")
    ops = {n.op_type for n in loaded.model.graph}
    assert "Constant" not in ops and "Identity" not in ops
    assert loaded.notes


def test_external_data_round_trip(tmp_path):
    model = small_cnn()
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    result = compress(path, 0.3, output=tmp_path / "out.onnx")
    assert result.verification["max_rel_diff"] < 1e-4
    assert (tmp_path / "out.onnx.data").exists()
    reloaded = onnx.load(tmp_path / "out.onnx")
    onnx.checker.check_model(reloaded)


def test_missing_or_short_external_data_is_reported(tmp_path):
    model = small_cnn()
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="w.data", size_threshold=0)
    data = tmp_path / "w.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(InvalidModelError, match="too short"):
        load_model(path)
    data.unlink()
    with pytest.raises(InvalidModelError, match="missing"):
        load_model(path)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"this is not a model at all", "not a readable ONNX model|no ONNX graph"),
])
def test_bad_files_raise_invalid_model(tmp_path, content, match):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidModelError, match=match):
        load_model(path)


def test_truncated_model_is_invalid(tmp_path):
    src = (MODELS / "resnet_basic.ts.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(src[: len(src) // 3])
    with pytest.raises(InvalidModelError):
        load_model(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InvalidModelError, match="no such file"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(InvalidModelError, match="directory"):
        load_model(tmp_path)


def test_opset_below_11_is_converted(tmp_model):
    loaded = load_model(tmp_model(small_cnn(opset=9)))
    assert loaded.opset == 11
    assert loaded.notes[0].startswith("converted from opset 9 to 11")


def test_save_refuses_input_path_and_missing_folder(tmp_path, tmp_model):
    path = tmp_model(small_cnn())
    before = digest(path)
    model = load_model(path).model
    with pytest.raises(OutputError, match="equals the input"):
        save_model(model, path, source=path)
    with pytest.raises(OutputError, match="does not exist"):
        save_model(model, tmp_path / "no" / "such" / "dir.onnx")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_compress_never_touches_input_and_keeps_dynamic_batch(tmp_path, tmp_model):
    path = tmp_model(small_cnn())
    before = digest(path)
    result = compress(path, 0.4)
    assert digest(path) == before
    out = onnx.load(result.output)
    assert result.output.endswith("model.pruned.onnx")
    dim = out.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "N"


def test_ir_version_above_runtime_is_lowered_for_checks(tmp_model):
    model = small_cnn()
    model.ir_version = 12
    result = compress(tmp_model(model), 0.3)
    assert result.verification["outputs_match"]


def test_disk_full_leaves_no_partial_file(tmp_path, tmp_model, monkeypatch):
    import errno

    import onnx_ir as ir

    path = tmp_model(small_cnn())
    model = load_model(path).model

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ir, "save", full)
    with pytest.raises(OutputError, match="disk full"):
        save_model(model, tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_weights_as_graph_inputs_with_initializers_are_constants(tmp_model):
    model = small_cnn()
    for init in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(
            init.name, init.data_type, list(init.dims)))
    loaded = load_model(tmp_model(model))
    assert [v.name for v in loaded.model.graph.inputs] == ["x"]
    assert numpy_helper.to_array(model.graph.initializer[0]).shape == (16, 3, 3, 3)
    assert np.isfinite(len(loaded.model.graph.initializers))
