"""Time analyze+compress on a full-width ResNet-50-like graph at 1x, 2x and 4x depth.

    python benchmarks/bench_analyze_compress.py [--depths 1 2 4] [--repeat 3] [--json out.json]

For each depth the model is generated into a temporary folder, then
``onnxprune.compress(--target 0.5 --metric flops --round-to 8)`` runs ``repeat``
times; the best wall time is reported with a split into phases (load, analyze,
plan, rewrite, verify, save) from the last run. Verification includes the ONNX
Runtime runs of original, pruned and masked models at 224x224, which dominate.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from resnet50_like import build

from onnxprune.analysis import analyze
from onnxprune.compress import compress
from onnxprune.graph import load_model


def _time(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def run(depths: list[int], repeat: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for depth in depths:
            path = pathlib.Path(tmp) / f"resnet50_x{depth}.onnx"
            onnx.save(build(depth), path)
            load_s = _time(lambda p=path: load_model(p))
            model = load_model(path).model
            analyze_s = _time(lambda m=model: analyze(m))
            best = min(
                _time(lambda p=path: compress(p, 0.5, metric="flops", round_to=8,
                                              output=pathlib.Path(tmp) / "out.onnx"))
                for _ in range(repeat)
            )
            no_verify = min(
                _time(lambda p=path: compress(p, 0.5, metric="flops", round_to=8,
                                              verify_equivalence=False,
                                              output=pathlib.Path(tmp) / "out.onnx"))
                for _ in range(repeat)
            )
            model = onnx.load(path, load_external_data=False)
            params = sum(int(__import__("numpy").prod(t.dims)) for t in model.graph.initializer)
            rows.append({"depth": depth, "params": params, "nodes": len(model.graph.node),
                         "load_s": round(load_s, 3), "analyze_s": round(analyze_s, 3),
                         "compress_s": round(best, 3),
                         "compress_without_oracle_s": round(no_verify, 3)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    rows = run(args.depths, args.repeat)
    base = rows[0]
    for row in rows:
        print(f"depth x{row['depth']}: {row['params'] / 1e6:.1f}M params, {row['nodes']} nodes, "
              f"analyze {row['analyze_s']:.2f}s, compress {row['compress_s']:.2f}s "
              f"({row['compress_s'] / base['compress_s']:.2f}x of depth x{base['depth']})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
