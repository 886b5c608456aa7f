"""Time ``onnxprune sensitivity`` three ways, interleaved, and check the damage tables agree.

    python benchmarks/bench_sensitivity.py [--models digits_lcnet,yolo_neck] [--samples 1000]
        [--repeats 2] [--workers 2] [--json out.json]

Modes, each a full :func:`onnxprune.pipeline.sensitivity.sensitivity_file` call (load, analysis,
scores, measurement; ratios 0.1,0.3,0.5,0.7, criterion l1, batch 32):

- ``full``: every configuration runs the whole masked model (the evaluation before
  suffix caching, ``suffix=False``), in process;
- ``suffix``: suffix caching (the default), in process;
- ``suffix+workers``: suffix caching with the cells on a local Ray with ``--workers``
  workers (Ray's start-up included).

Models: ``digits_lcnet`` is the real Paddle export (fixtures/models/thirdparty, 11
prunable groups) on the first ``--samples`` rows of fixtures/data/digits_train.npz;
``yolo_neck`` (fixtures/models, a torch export with 34 prunable groups, the only fixture
with 20+) on ``--samples`` seeded standard-normal 3x64x64 inputs. The machine is shared:
the modes are interleaved (their order rotates every repeat) and the load average is
printed with every run; the median of the repeats is reported, with the full/suffix
ratio of each repeat and of the CPU time of this process (ONNX Runtime's threads
included, Ray's workers not), which the load disturbs less than wall time. Every mode's damage
table must equal the ``full`` one (rtol 1e-5), or the script exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from onnxprune.pipeline.sensitivity import sensitivity_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = {
    "digits_lcnet": ROOT / "fixtures/models/thirdparty/digits_lcnet.paddle.onnx",
    "yolo_neck": ROOT / "fixtures/models/yolo_neck.ts.onnx",
}
MODES = ("full", "suffix", "suffix+workers")


def _data(name: str, samples: int, folder: pathlib.Path) -> pathlib.Path:
    path = folder / f"{name}.npz"
    if name == "digits_lcnet":
        train = np.load(ROOT / "fixtures/data/digits_train.npz")
        reps = -(-samples // len(train["labels"]))  # deterministic repetition if short
        arrays = {k: np.concatenate([train[k]] * reps)[:samples] for k in ("input", "labels")}
    else:
        rng = np.random.default_rng(0)
        arrays = {"input": rng.standard_normal((samples, 3, 64, 64)).astype(np.float32)}
    np.savez(path, **arrays)
    return path


def _run(model: pathlib.Path, data: pathlib.Path, mode: str, workers: int):
    options = {"suffix": mode != "full", "max_samples": None}
    if mode == "suffix+workers":
        options["workers"] = workers
    start, cpu = time.perf_counter(), time.process_time()
    result = sensitivity_file(model, data=str(data), **options)
    return time.perf_counter() - start, time.process_time() - cpu, result


def _table(result) -> list[tuple[int, float, str, float]]:
    return [(g.index, p["ratio"], k, v) for g in result.groups for p in g.points
            for k, v in p.items() if isinstance(v, float) and k != "ratio"]


def _equal(a, b) -> bool:
    ta, tb = _table(a), _table(b)
    return len(ta) == len(tb) and all(
        x[:3] == y[:3] and abs(x[3] - y[3]) <= 1e-5 * abs(x[3]) + 1e-9 for x, y in zip(ta, tb))


def _bench(name: str, args: argparse.Namespace, folder: pathlib.Path) -> dict:
    data = _data(name, args.samples, folder)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    reference, equal, info = None, True, {}
    for repeat in range(args.repeats):
        order = MODES[repeat % 3:] + MODES[:repeat % 3]
        for mode in order:
            elapsed, used, result = _run(MODELS[name], data, mode, args.workers)
            times[mode].append(elapsed)
            cpu[mode].append(used)
            info = {"groups": len(result.groups), "samples": result.num_samples,
                    "cells": result.evaluation["cells"]}
            load = os.getloadavg()
            print(f"{name} repeat {repeat} {mode:>15}: {elapsed:7.2f} s  (cpu of this "
                  f"process {used:6.2f} s)  chunks "
                  f"{result.evaluation['chunks']}  load {load[0]:.2f} {load[1]:.2f}",
                  flush=True)
            if mode == "full" and reference is None:
                reference = result
            elif reference is not None:
                equal = equal and _equal(reference, result)
    medians = {m: statistics.median(t) for m, t in times.items()}
    paired = [f / s for f, s in zip(times["full"], times["suffix"])]
    return {"model": name, **info, "times_s": times, "cpu_s": cpu, "median_s": medians,
            "paired_suffix_speedups": paired,
            "cpu_suffix_speedup": statistics.median(cpu["full"]) / statistics.median(
                cpu["suffix"]),
            "suffix_speedup": medians["full"] / medians["suffix"],
            "workers_speedup": medians["full"] / medians["suffix+workers"],
            "tables_equal": equal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine(),
               "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_bench(name, args, pathlib.Path(tmp)) for name in args.models.split(",")]
    machine["load_after"] = os.getloadavg()
    for row in rows:
        med = row["median_s"]
        print(f"{row['model']}: {row['groups']} groups, {row['samples']} samples, "
              f"{row['cells']} cells; median full {med['full']:.1f} s, suffix "
              f"{med['suffix']:.1f} s (x{row['suffix_speedup']:.2f}), suffix + "
              f"{args.workers} workers {med['suffix+workers']:.1f} s "
              f"(x{row['workers_speedup']:.2f}); per repeat full/suffix "
              f"{', '.join(f'{x:.2f}' for x in row['paired_suffix_speedups'])}; cpu "
              f"full/suffix x{row['cpu_suffix_speedup']:.2f}; tables equal: "
              f"{row['tables_equal']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    sys.exit(0 if all(r["tables_equal"] for r in rows) else 1)


if __name__ == "__main__":
    main()
