"""The executor: in-process order and failures, a local 2-worker Ray equal to it, and
the missing-extra error (onnxprune.parallel.executor rules 1-5)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from onnxprune.errors import DataError, ExitCode, RuntimeMissingError
from onnxprune.parallel import InProcessExecutor, TaskFailure, open_executor


def _weighted(shared: dict, task: int) -> float:
    """A deterministic task reading the shared payload."""
    if task < 0:
        raise DataError(f"task {task} is negative")
    return float(np.dot(shared["weights"], np.arange(task, task + 3)))


def _pid(shared: None, task: int) -> int:
    return os.getpid()


SHARED = {"weights": np.array([0.5, -1.0, 2.0])}


def test_in_process_runs_in_order_with_progress():
    seen = []
    results = InProcessExecutor().map(_weighted, [3, 1, 2], shared=SHARED,
                                      progress=lambda d, t: seen.append((d, t)))
    assert results == [_weighted(SHARED, 3), _weighted(SHARED, 1), _weighted(SHARED, 2)]
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_in_process_failure_raises_or_is_kept():
    with pytest.raises(DataError, match="negative"):
        InProcessExecutor().map(_weighted, [1, -1, 2], shared=SHARED)
    results = InProcessExecutor().map(_weighted, [1, -1, 2], shared=SHARED, keep_going=True)
    assert results[0] == _weighted(SHARED, 1) and results[2] == _weighted(SHARED, 2)
    assert results[1] == TaskFailure("DataError", "task -1 is negative", int(ExitCode.DATA))


def test_default_is_in_process():
    with open_executor() as executor:
        assert executor.name == "in-process"
        assert executor.map(_pid, [0, 1]) == [os.getpid()] * 2


def test_missing_ray_is_exit_7(no_ray):
    with pytest.raises(RuntimeMissingError, match=r"onnxprune\[distributed\]") as info, \
            open_executor(workers=2):
        pass
    assert info.value.exit_code == ExitCode.RUNTIME_MISSING


def test_local_ray_equals_in_process():
    pytest.importorskip("ray", reason="the distributed extra is not installed")
    tasks = [4, 0, 7, 2, 5]
    expected = InProcessExecutor().map(_weighted, tasks, shared=SHARED)
    seen = []
    with open_executor(workers=2) as executor:
        assert executor.name == "ray" and executor.workers == 2
        results = executor.map(_weighted, tasks, shared=SHARED,
                               progress=lambda d, t: seen.append((d, t)))
        kept = executor.map(_weighted, [1, -1], shared=SHARED, keep_going=True)
        with pytest.raises(DataError, match="negative"):
            executor.map(_weighted, [-2, 1], shared=SHARED)
        pids = set(executor.map(_pid, list(range(4))))
    assert results == expected
    assert [d for d, _ in seen] == [1, 2, 3, 4, 5] and {t for _, t in seen} == {5}
    assert kept[0] == _weighted(SHARED, 1) and isinstance(kept[1], TaskFailure)
    assert kept[1].kind == "DataError"
    assert os.getpid() not in pids  # the tasks ran in Ray's worker processes
    import ray

    assert not ray.is_initialized()  # the local instance was shut down


class _RefusingRay:
    """A ``ray`` module whose ``init`` fails as an unreachable cluster does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs):
        raise self.error


@pytest.mark.parametrize("address, error, match", [
    ("ray://head:10001", ConnectionError("ray client connection timeout"),
     r"cannot join the Ray cluster at ray://head:10001: ray client connection timeout; .*"
     r"ray start --head"),
    ("10.0.0.1:6379", RuntimeError("InvalidAuthToken"), "RAY_AUTH_MODE=token"),
    (None, RuntimeError("no space left on /dev/shm"),
     "cannot start a local Ray instance: no space left.*drop --workers")],
    ids=["client_timeout", "token_auth", "local_start"])
def test_ray_that_cannot_start_or_join_is_exit_7_with_what_to_check(address, error, match):
    from onnxprune.parallel.ray_executor import RayExecutor

    with pytest.raises(RuntimeMissingError, match=match) as info:
        RayExecutor.start(_RefusingRay(error), workers=None if address else 2, address=address)
    assert info.value.exit_code == ExitCode.RUNTIME_MISSING
