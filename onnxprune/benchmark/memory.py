"""Peak host memory of one model, measured in a fresh process.

Rule: a child Python process imports ONNX Runtime, notes its resident set size
(RSS), creates the session, runs the model twice and reads its peak RSS (``VmHWM``
of ``/proc/self/status``). The result is ``peak - before``: weights, the optimized
graph, ORT's arena and the largest intermediate tensors, on the host only (device
memory is not included). A fresh process is used because in the benchmarking process
freed pages are reused across models, which would make the numbers depend on the
order the models were loaded in. Where ``/proc`` is missing (macOS, Windows) the
probe reports ``None`` with the reason.

    python -m onnxprune.benchmark.memory '{"path": ..., "provider": ..., ...}'
"""

from __future__ import annotations

__all__ = ["METHOD", "peak_memory"]

import json
import logging
import os
import pathlib
import subprocess
import sys

logger = logging.getLogger(__name__)

METHOD = ("peak RSS (VmHWM) of a fresh process during session creation and two runs, "
          "minus its RSS before session creation; host memory only")


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(path: str | os.PathLike[str], provider: str, threads: int,
                shapes: dict[str, list[int]], optimization: str = "all",
                timeout_s: float = 600.0) -> dict:
    """``{"peak_mb": float | None, "method": str}`` for one model on one provider."""
    if not pathlib.Path("/proc/self/status").exists():
        return {"peak_mb": None, "method": "not measured: /proc is not available on this OS"}
    request = {"path": str(path), "provider": provider, "threads": threads, "shapes": shapes,
               "optimization": optimization}
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, "-m", "onnxprune.benchmark.memory",
                           json.dumps(request)], capture_output=True, text=True, env=env,
                          timeout=timeout_s, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        logger.warning("memory probe failed for %s: %s", path, tail)
        return {"peak_mb": None, "method": f"not measured: probe failed ({tail})"}
    return {"peak_mb": json.loads(proc.stdout)["peak_mb"], "method": METHOD}


def _child(request: dict) -> dict:
    import onnxruntime as ort

    from onnxprune.benchmark.providers import ProviderChoice, alias_of
    from onnxprune.benchmark.session import open_session
    from onnxprune.graph.runtime import dummy_inputs

    before = _status_kib("VmRSS")
    name = request["provider"]
    choice = ProviderChoice(alias_of(name), name, True)
    session = open_session(ort, request["path"], choice, request["threads"],
                           request["optimization"])
    shapes = {k: tuple(v) for k, v in request["shapes"].items()}
    feeds = dummy_inputs(session, shapes=shapes)
    for _ in range(2):
        session.run(None, feeds)
    peak = _status_kib("VmHWM")
    return {"peak_mb": round((peak - before) / 1024, 2) if peak and before else None}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
