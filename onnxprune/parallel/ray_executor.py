"""The Ray backend of :mod:`onnxprune.parallel.executor` (rules 1-5 there).

A local instance (``workers=N``) is started with ``N`` CPUs, no dashboard and worker
output kept out of the terminal, and shut down by :meth:`RayExecutor.close`; a cluster
joined by ``address`` is left running (only this driver disconnects). Each task is one
``ray.remote`` call of ``fn`` with the object-store reference of ``shared``; results are
collected with ``ray.wait`` so progress is reported as tasks finish. A cluster that
cannot be joined (not running, unreachable, token authentication, no ``ray[client]``
for a ``ray://`` address) or a local instance that cannot start is exit 7 with what to
check.
"""

from __future__ import annotations

__all__ = ["RayExecutor"]

import logging
from collections.abc import Callable, Sequence
from typing import Any

from onnxprune.errors import RuntimeMissingError, UsageError
from onnxprune.parallel.executor import Progress, TaskFailure

logger = logging.getLogger(__name__)


def _call(fn: Callable[[Any, Any], Any], shared: Any, task: Any) -> Any:
    """Run one task on a worker (Ray resolves ``shared`` from the object store)."""
    return fn(shared, task)


class RayExecutor:
    """Tasks as Ray remote calls (see module docstring)."""

    name = "ray"

    def __init__(self, ray: Any, workers: int, owns_cluster: bool) -> None:
        self._ray = ray
        self.workers = workers
        self._owns = owns_cluster
        self._remote = ray.remote(num_cpus=1)(_call)

    @classmethod
    def start(cls, ray: Any, *, workers: int | None, address: str | None) -> RayExecutor:
        """Start a local instance (``workers``) or join ``address`` (rule 1)."""
        if ray.is_initialized():
            raise UsageError("Ray is already initialised in this process: pass neither "
                             "--workers nor --ray-address, or run onnxprune on its own")
        settings = {"include_dashboard": False, "log_to_driver": False,
                    "logging_level": logging.WARNING, "configure_logging": False}
        if address:
            logger.info("joining the Ray cluster at %s", address)
            _init(ray, address, address=address, settings=settings)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            return cls(ray, workers or cpus, owns_cluster=False)
        logger.info("starting a local Ray instance with %d workers", workers)
        _init(ray, None, num_cpus=workers, settings=settings)
        return cls(ray, int(workers), owns_cluster=True)

    def close(self) -> None:
        """Shut down a local instance; disconnect from a joined cluster."""
        if self._ray.is_initialized():
            self._ray.shutdown()

    def map(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], *,
            shared: Any = None, progress: Progress | None = None,
            keep_going: bool = False) -> list[Any]:
        ray = self._ray
        shared_ref = ray.put(shared)  # rule 2: once, not once per task
        refs = [self._remote.remote(fn, shared_ref, task) for task in tasks]
        slot = {ref.hex(): i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        failed: dict[int, BaseException] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                index = slot[ref.hex()]
                try:
                    results[index] = ray.get(ref)
                except Exception as exc:
                    failed[index] = _original(ray, exc)
                    results[index] = TaskFailure.of(failed[index])
                    logger.warning("task %d of %d failed: %s", index + 1, len(refs),
                                   failed[index])
                if progress is not None:
                    progress(len(refs) - len(pending), len(refs))
            if failed and not keep_going:
                for ref in pending:
                    ray.cancel(ref)
                raise failed[min(failed)]
        return results


def _init(ray: Any, joining: str | None, *, settings: dict[str, Any], **kwargs: Any) -> None:
    """``ray.init``; a cluster that cannot be joined or a local instance that cannot
    start is a :class:`RuntimeMissingError` (exit 7) saying what to check."""
    try:
        ray.init(**kwargs, **settings)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        if ray.is_initialized():
            ray.shutdown()
        if joining:
            hint = ("is it running (`ray start --head` on the head node) and reachable from "
                    "here? A ray://host:PORT address needs the Ray client port (10001 by "
                    "default) and ray[client] (part of onnxprune[distributed]); a cluster "
                    "with token authentication needs RAY_AUTH_MODE=token and its token "
                    "here; or drop --ray-address to run in process")
            raise RuntimeMissingError(f"cannot join the Ray cluster at {joining}: {exc}; "
                                      f"{hint}") from exc
        raise RuntimeMissingError(f"cannot start a local Ray instance: {exc}; drop --workers "
                                  "to run in process") from exc


def _original(ray: Any, exc: BaseException) -> BaseException:
    """The task's own exception inside Ray's wrapper (rule 3)."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return cause
    return exc
