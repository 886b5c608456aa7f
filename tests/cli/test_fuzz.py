"""Fuzzing the command line: corrupted files and generated graphs never crash it.

Whatever the input, ``compress`` either writes a model it verified (exit 0: checker,
ONNX Runtime, masked equivalence all passed inside compress) or exits with one of
the documented error codes; exit 1 (an uncaught exception) is a bug.
"""

from __future__ import annotations

import tempfile

import onnx
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.cli import main
from onnxprune.errors import ExitCode
from tests.conftest import MODELS
from tests.property.graphs import conv_graphs

SOURCE = (MODELS / "constant_weights.onnx").read_bytes()
DOCUMENTED = {ExitCode.OK, ExitCode.USAGE, ExitCode.INVALID_MODEL, ExitCode.UNSUPPORTED_MODEL,
              ExitCode.UNREACHABLE_TARGET, ExitCode.VERIFICATION}


@st.composite
def corrupted(draw) -> bytes:
    data = bytearray(SOURCE)
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "zero_run"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "insert":
        i = draw(st.integers(0, len(data)))
        return bytes(data[:i]) + draw(st.binary(min_size=1, max_size=16)) + bytes(data[i:])
    start = draw(st.integers(0, len(data) - 1))
    length = draw(st.integers(1, 64))
    data[start:start + length] = bytes(len(data[start:start + length]))
    return bytes(data)


def run(data: bytes, target: float) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/m.onnx"
        with open(path, "wb") as handle:
            handle.write(data)
        result = CliRunner().invoke(main, ["compress", path, "-t", str(target), "--json"])
        assert result.exit_code in DOCUMENTED, result.output
        if result.exit_code == ExitCode.OK:
            onnx.checker.check_model(f"{folder}/m.pruned.onnx")
        else:
            assert result.stderr.startswith("error: ")
        return result.exit_code


@settings(max_examples=60)
@given(data=corrupted(), target=st.sampled_from([0.2, 0.5]))
def test_corrupted_files_exit_with_documented_codes(data, target):
    run(data, target)


@settings(max_examples=25)
@given(model=conv_graphs(), target=st.sampled_from([0.3, 0.6]))
def test_generated_graphs_compress_or_fail_cleanly(model, target):
    run(model.SerializeToString(), target)
