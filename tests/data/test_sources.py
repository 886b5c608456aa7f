"""Data input: .npz/.npy files and folders, images, synthetic inputs, streaming, errors."""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from onnxprune.data import DataSource, ImageOptions, open_data, synthetic_source
from onnxprune.data.readers import ZipMemberReader
from onnxprune.errors import DataError
from onnxprune.graph.io import model_from_proto
from tests.builders import GraphBuilder


def conv_model(batch="N", channels=3, size=8, dtype=TensorProto.FLOAT):
    b = GraphBuilder()
    x = b.input([batch, channels, size, size], name="input", dtype=dtype)
    y = b.op("GlobalAveragePool", [b.op("Relu", [b.conv(x, channels, 4)])])
    b.output(y)
    return model_from_proto(b.model())


def two_input_model():
    b = GraphBuilder()
    x = b.input(["N", 4], name="x")
    t = b.input(["N", 3], name="ids", dtype=TensorProto.INT64)
    table = b.weight(10, 4)
    emb = b.op("ReduceSum", [b.op("Gather", [table, t]), b.ints([1])], keepdims=0)
    b.output(b.op("Add", [x, emb]))
    return model_from_proto(b.model())


@pytest.fixture
def model():
    return conv_model()


def samples(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_npz_batches_cover_every_sample_in_order(tmp_path, model):
    x, labels = samples(10), np.arange(10)
    np.savez(tmp_path / "d.npz", input=x, labels=labels)
    data = open_data(tmp_path / "d.npz", model)
    assert data.num_samples == 10 and data.has_labels
    batches = list(data.labeled_batches(4))
    assert [len(f["input"]) for _, f in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([f["input"] for _, f in batches]), x)
    np.testing.assert_array_equal(np.concatenate([lab for lab, _ in batches]), labels)
    np.testing.assert_array_equal(data.labels, labels)


def test_compressed_npz_is_streamed_without_loading_whole_arrays(tmp_path, model):
    x = samples(50)
    np.savez_compressed(tmp_path / "d.npz", input=x)
    reader = ZipMemberReader(tmp_path / "d.npz", "input.npy")
    np.testing.assert_array_equal(reader.read(10, 20), x[10:20])
    np.testing.assert_array_equal(reader.read(30, 31), x[30:31])   # forward skip
    np.testing.assert_array_equal(reader.read(2, 5), x[2:5])       # reopen for earlier rows
    assert reader._whole is None


def test_float64_data_is_cast_to_the_model_dtype(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=samples(3).astype(np.float64))
    feeds = next(open_data(tmp_path / "d.npz", model).batches(8))
    assert feeds["input"].dtype == np.float32


def test_folder_of_npz_shards_is_read_shard_by_shard(tmp_path, model):
    for k in range(3):
        np.savez(tmp_path / f"part{k}.npz", input=samples(5, seed=k), labels=np.full(5, k))
    data = open_data(tmp_path, model)
    assert data.num_samples == 15 and len(data.parts) == 3
    batches = list(data.batches(6))
    assert [len(b["input"]) for b in batches] == [6, 6, 3]
    np.testing.assert_array_equal(batches[0]["input"][5], samples(5, seed=1)[0])
    np.testing.assert_array_equal(data.labels, np.repeat([0, 1, 2], 5))


def test_npy_file_is_memory_mapped(tmp_path, model):
    np.save(tmp_path / "x.npy", samples(7))
    data = open_data(tmp_path / "x.npy", model)
    assert isinstance(data.parts[0].readers["input"].array, np.memmap)
    assert sum(len(b["input"]) for b in data.batches(3)) == 7


def test_npy_shards_are_paired_by_input_name(tmp_path):
    model = two_input_model()
    rng = np.random.default_rng(0)
    for k in range(2):
        np.save(tmp_path / f"x-{k}.npy", rng.standard_normal((4, 4)).astype(np.float32))
        np.save(tmp_path / f"ids-{k}.npy", rng.integers(0, 10, (4, 3)))
        np.save(tmp_path / f"labels-{k}.npy", np.arange(4))
    data = open_data(tmp_path, model)
    assert data.num_samples == 8 and data.has_labels
    assert set(next(data.batches(8))) == {"x", "ids"}


def test_take_and_split_are_disjoint_and_seeded(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=samples(20), labels=np.arange(20))
    data = open_data(tmp_path / "d.npz", model)
    train, val = data.split(0.25, seed=3)
    assert (train.num_samples, val.num_samples) == (15, 5)
    assert not set(train.labels) & set(val.labels)
    assert set(train.labels) | set(val.labels) == set(range(20))
    np.testing.assert_array_equal(data.split(0.25, seed=3)[1].labels, val.labels)
    assert list(data.take(4).labels) == [0, 1, 2, 3]
    assert data.take(4, seed=1).num_samples == 4


def test_static_batch_dimension_fixes_the_batch_size(tmp_path):
    model = conv_model(batch=4)
    np.savez(tmp_path / "d.npz", input=samples(10))
    sizes = [len(b["input"]) for b in open_data(tmp_path / "d.npz", model).batches(32)]
    assert sizes == [4, 4]


def write_images(folder: pathlib.Path, classes=("cat", "dog"), per_class=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{k}.png")


def test_image_folder_with_preprocessing_and_class_labels(tmp_path, model):
    write_images(tmp_path)
    options = ImageOptions(None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "nchw", "bgr")
    data = open_data(tmp_path, model, options)
    assert data.num_samples == 6
    np.testing.assert_array_equal(data.labels, [0, 0, 0, 1, 1, 1])
    batch = next(data.batches(6))["input"]
    assert batch.shape == (6, 3, 8, 8) and batch.dtype == np.float32
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "cat" / "0.png").convert("RGB")
                       .resize((8, 8), Image.BILINEAR), dtype=np.float32) / 255.0
    expected = ((first[:, :, ::-1] - 0.5) / 0.25).transpose(2, 0, 1)
    np.testing.assert_allclose(batch[0], expected, rtol=1e-6)


def test_image_folder_nhwc_and_explicit_size(tmp_path):
    b = GraphBuilder()
    x = b.input(["N", "H", "W", 3], name="input")
    b.output(b.op("Transpose", [x], perm=[0, 3, 1, 2]))
    model = model_from_proto(b.model())
    write_images(tmp_path)
    with pytest.raises(DataError, match="--image-size"):
        open_data(tmp_path, model, ImageOptions(layout="nhwc"))
    data = open_data(tmp_path, model, ImageOptions(size=(5, 7), layout="nhwc"))
    assert next(data.batches(2))["input"].shape == (2, 5, 7, 3)


def test_synthetic_token_ids_stay_inside_the_embedding_table():
    model = two_input_model()
    data = synthetic_source(model, num_samples=200, seed=0)
    feeds = next(data.batches(200))
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].max() == 9 and feeds["ids"].min() == 0
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (200, 4)


def test_synthetic_inputs_fill_symbolic_dims():
    data = synthetic_source(conv_model(), num_samples=5)
    assert next(data.batches(5))["input"].shape == (5, 3, 8, 8)


def test_from_arrays_validates_like_files():
    model = conv_model()
    with pytest.raises(DataError, match="input 'input' expects"):
        DataSource.from_arrays({"input": np.zeros((2, 3, 9, 8), np.float32)},
                               __import__("onnxprune.data").data.model_input_specs(model))


# -- errors -------------------------------------------------------------------------------
def test_wrong_input_name_is_named(tmp_path, model):
    np.savez(tmp_path / "d.npz", x=samples(2))
    with pytest.raises(DataError, match=r"no array for model input 'input' \(found: x\)"):
        open_data(tmp_path / "d.npz", model)


def test_wrong_rank_names_expected_and_received(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=np.zeros((2, 3, 8), np.float32))
    with pytest.raises(DataError) as info:
        open_data(tmp_path / "d.npz", model)
    message = str(info.value)
    assert "input 'input' expects rank 4" in message
    assert "float32[?, 3, 8, 8]" in message and "float32[2, 3, 8]" in message


def test_wrong_static_dim_names_the_axis(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="axis 1 is 1, must be 3"):
        open_data(tmp_path / "d.npz", model)


def test_wrong_dtype_names_expected_and_received(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"expects dtype float32 .* received uint8"):
        open_data(tmp_path / "d.npz", model)


def test_float_data_for_integer_input_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4), np.float32), ids=np.zeros((2, 3)))
    with pytest.raises(DataError, match="input 'ids' expects dtype int64"):
        open_data(tmp_path / "d.npz", two_input_model())


def test_empty_file(tmp_path, model):
    (tmp_path / "d.npz").write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        open_data(tmp_path / "d.npz", model)


def test_npz_without_samples(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=np.zeros((0, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match="holds no samples"):
        open_data(tmp_path / "d.npz", model)


def test_corrupted_npz(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=samples(4))
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    raw[len(raw) // 3: len(raw) // 3 + 64] = b"\x00" * 64
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        open_data(tmp_path / "bad.npz", model)
    (tmp_path / "text.npz").write_text("not a zip at all")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        open_data(tmp_path / "text.npz", model)


def test_truncated_npz(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=samples(4))
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        open_data(tmp_path / "cut.npz", model)


def test_pickled_arrays_are_refused(tmp_path, model):
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive, \
            archive.open("input.npy", "w") as handle:
        np.lib.format.write_array(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        open_data(tmp_path / "d.npz", model)


def test_arrays_with_different_sample_counts(tmp_path, model):
    np.savez(tmp_path / "d.npz", input=samples(4), labels=np.arange(3))
    with pytest.raises(DataError, match="different numbers of samples"):
        open_data(tmp_path / "d.npz", model)


def test_missing_path_and_unsupported_file(tmp_path, model):
    with pytest.raises(DataError, match="no such file"):
        open_data(tmp_path / "nope.npz", model)
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported data file"):
        open_data(tmp_path / "d.csv", model)


def test_unreadable_image(tmp_path, model):
    write_images(tmp_path, classes=("a",), per_class=1)
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    data = open_data(tmp_path, model)
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        list(data.batches(4))


def test_onnx_model_is_not_modified_by_reading(tmp_path, model):
    before = onnx.printer.to_text(__import__("onnx_ir").serde.serialize_model(model))
    np.savez(tmp_path / "d.npz", input=samples(2))
    list(open_data(tmp_path / "d.npz", model).batches(1))
    after = onnx.printer.to_text(__import__("onnx_ir").serde.serialize_model(model))
    assert before == after
