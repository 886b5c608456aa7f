"""Wall time of ``onnxprune sweep`` in process against a local Ray with ``--workers N``.

    python benchmarks/bench_sweep.py [--model fixtures/models/digits_cnn.ts.onnx]
        [--data fixtures/data/digits_train.npz] [--eval-data fixtures/data/digits_test.npz]
        [--targets 0.3,0.5,0.7] [--criteria l1,taylor] [--steps 1,3] [--workers 0,2]
        [--json out.json]

For every ``--steps`` value (1: one-shot; more: progressive with fine-tuning) this runs
the same sweep (``onnxprune.sweep.sweep``, 3 targets x 2 criteria by default) once per
``--workers`` value (0 = in process, the default executor; N = a local Ray with N
workers, started and shut down inside the timed region, as the CLI does) and prints the
wall time, the sum of the points' own compress times, and the machine (CPU, usable
cores, load average before and after). The results of every run are checked equal to
the in-process run (params, MACs, task metric). Numbers are in docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxprune.benchmark.bench import cpu_name  # noqa: E402
from onnxprune.sweep import sweep  # noqa: E402

SAME = ("name", "status", "params", "macs", "achieved", "task_metric")


def _machine() -> dict:
    return {"cpu": cpu_name(), "usable_cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version()}


def _one(args: argparse.Namespace, steps: int, workers: int, tmp: pathlib.Path) -> dict:
    load_before = os.getloadavg()
    started = time.perf_counter()
    document = sweep(args.model, args.targets, args.criteria, output=tmp / f"s{steps}w{workers}",
                     workers=workers or None,
                     options={"data": args.data, "eval_data": args.eval_data, "steps": steps,
                              "max_samples": args.max_samples, "bench_runs": 10})
    wall = time.perf_counter() - started
    return {"steps": steps, "workers": workers or "in-process", "wall_s": round(wall, 2),
            "points": len(document["points"]), "failed": document["failed"],
            "sum_point_s": round(sum(r["seconds"] or 0 for r in document["points"]), 2),
            "load_before": [round(v, 2) for v in load_before],
            "load_after": [round(v, 2) for v in os.getloadavg()],
            "rows": [{k: r[k] for k in SAME} for r in document["points"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "fixtures/models/digits_cnn.ts.onnx"))
    parser.add_argument("--data", default=str(ROOT / "fixtures/data/digits_train.npz"))
    parser.add_argument("--eval-data", default=str(ROOT / "fixtures/data/digits_test.npz"))
    parser.add_argument("--targets", type=lambda s: [float(v) for v in s.split(",")],
                        default=[0.3, 0.5, 0.7])
    parser.add_argument("--criteria", type=lambda s: s.split(","), default=["l1", "taylor"])
    parser.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 3])
    parser.add_argument("--workers", type=lambda s: [int(v) for v in s.split(",")],
                        default=[0, 2])
    parser.add_argument("--max-samples", type=int, default=1024)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            reference = None
            for workers in args.workers:
                run = _one(args, steps, workers, pathlib.Path(tmp))
                reference = reference or run["rows"]
                run["equal_to_first"] = run.pop("rows") == reference
                runs.append(run)
                print(f"steps {steps}, workers {run['workers']}: {run['wall_s']} s wall "
                      f"({run['points']} points, {run['sum_point_s']} s in the points; load "
                      f"{run['load_before'][0]} -> {run['load_after'][0]}; equal: "
                      f"{run['equal_to_first']})", flush=True)
    document = {"machine": _machine(), "model": args.model, "targets": args.targets,
                "criteria": args.criteria, "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))
    print(json.dumps(document["machine"]))


if __name__ == "__main__":
    main()
