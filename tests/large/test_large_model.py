"""A model over 2 GB with external data: load, prune, save in bounded memory.

The model is generated on the fly (benchmarks/large_model.py) in a temporary
folder; ``compress`` runs in a child process whose peak resident memory must stay
within 1.5x the model's size. The result keeps its weights in external data and
is checked by ONNX Runtime against the original's declared outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


# runs the CLI and reports its own peak resident memory (ru_maxrss, KiB on Linux)
PEAK_WRAPPER = """
import resource, sys
from onnxprune.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.slow
def test_model_over_2gb_prunes_in_bounded_memory(tmp_path):
    path = tmp_path / "big.onnx"
    # generated in a child too: this process must stay small, or forking the compress
    # child would count the generator's memory in the child's peak
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "large_model.py"), str(path),
                    "--gigabytes", "2.2"], check=True, timeout=600)
    size = path.stat().st_size + (tmp_path / "big.onnx.data").stat().st_size
    assert size > 2 * 2**30
    result = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, "compress", str(path), "-t", "0.5", "-o",
         str(tmp_path / "out.onnx"), "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    peak = int(result.stderr.rsplit("PEAK_RSS_KB ", 1)[1].split()[0]) * 1024
    report = json.loads(result.stdout)
    assert abs(report["achieved"] - 0.5) <= 0.02
    assert report["verification"]["reference"].startswith("declared outputs")
    assert any("large model" in note for note in report["notes"])
    assert (tmp_path / "out.onnx.data").stat().st_size < 0.6 * size
    header = onnx.load(tmp_path / "out.onnx", load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in header.graph.initializer)
    assert peak <= 1.5 * size, f"peak RSS {peak / 2**30:.2f} GiB for a {size / 2**30:.2f} GiB model"
