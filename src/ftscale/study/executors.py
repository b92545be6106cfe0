"""Where jobs run: in-process (sequential), a local process pool, or Ray tasks on a cluster.

Every backend runs :func:`execute_job` (the job function wrapped so that its errors come back as an
:class:`Outcome`) and reports outcomes to the driver, which alone writes the store. A worker that dies mid-job
comes back as a ``crashed`` outcome, which the driver retries like a failure.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftscale.errors import UserError

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class JobContext:
    """What a job function receives: the job, where to write, what it builds on, and its resources."""

    job_id: str
    kind: str
    params: dict[str, Any]
    axes: dict[str, Any]
    study_dir: Path
    work_dir: Path
    dep_dirs: dict[str, Path] = field(default_factory=dict)
    dep_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempt: int = 1
    threads: int = 1
    device: str = "auto"

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Best-effort progress of the current job (shown when the job runs in the driver's process)."""
        if _progress_hook is not None:
            _progress_hook(self.job_id, max(0.0, min(1.0, fraction)), message)


JobFunction = Callable[[JobContext], Mapping[str, Any]]
_progress_hook: Callable[[str, float, str], None] | None = None


def set_progress_hook(hook: Callable[[str, float, str], None] | None) -> None:
    global _progress_hook
    _progress_hook = hook


class FinalFailure(Exception):
    """A job failure that another attempt would only repeat (a finetuning run that diverged: its data, seed and
    learning rate are fixed). The job is marked failed at once instead of being retried."""


@dataclass
class Outcome:
    """How one attempt ended. ``crashed``: the worker died; ``user_error``: a problem with the input, which stops
    the study; ``final``: the job failed for good (no retry) but the study goes on."""

    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    detail: str = ""
    user_error: bool = False
    crashed: bool = False
    final: bool = False


def execute_job(job_fn: JobFunction, ctx: JobContext) -> Outcome:
    """Run one job attempt in the current process, turning exceptions into an :class:`Outcome`."""
    from ftscale.study.store import environment

    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = job_fn(ctx)
        if not isinstance(result, Mapping):
            raise TypeError(f"job function returned {type(result).__name__}, expected a mapping of metrics")
        env = environment()
        env.update({"threads": ctx.threads, "device": ctx.device})
        return Outcome(ok=True, metrics=dict(result), environment=env)
    except UserError as exc:
        return Outcome(ok=False, reason=str(exc), detail=traceback.format_exc(), user_error=True)
    except FinalFailure as exc:
        return Outcome(ok=False, reason=str(exc)[:500], detail=traceback.format_exc(), final=True)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return Outcome(ok=False, reason=reason, detail=traceback.format_exc())


class Executor:
    """Backend interface: ``submit`` up to ``capacity`` jobs, ``wait`` for some to end."""

    capacity: int = 1

    def submit(self, job_fn: JobFunction, ctx: JobContext, resources: Mapping[str, float]) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        raise NotImplementedError

    def in_flight(self) -> list[str]:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop the backend; jobs still running are abandoned (the driver resets them)."""


class SequentialExecutor(Executor):
    """Runs each job in the driver's own process (so the current job's progress bar is live)."""

    def __init__(self, threads: int) -> None:
        self.capacity = 1
        self.threads = threads
        self._queue: list[tuple[JobFunction, JobContext]] = []

    def submit(self, job_fn: JobFunction, ctx: JobContext, resources: Mapping[str, float]) -> None:
        self._queue.append((job_fn, ctx))

    def in_flight(self) -> list[str]:
        return [ctx.job_id for _, ctx in self._queue]

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        if not self._queue:
            return []
        job_fn, ctx = self._queue[0]
        _set_thread_count(self.threads)
        outcome = execute_job(job_fn, ctx)
        self._queue.pop(0)
        return [(ctx.job_id, outcome)]


def _set_thread_count(threads: int) -> None:
    """Split cores between workers: env vars for libraries not yet loaded, torch directly if it is."""
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _init_pool_worker(threads: int) -> None:
    _set_thread_count(threads)


class ProcessPoolExecutor(Executor):
    """A local pool of ``workers`` processes (spawned fresh), each with cores // workers threads."""

    def __init__(self, workers: int, threads: int) -> None:
        self.capacity = workers
        self.threads = threads
        self._pool = self._new_pool()
        self._running: dict[futures.Future[Outcome], str] = {}

    def _new_pool(self) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(self.threads,),
        )

    def submit(self, job_fn: JobFunction, ctx: JobContext, resources: Mapping[str, float]) -> None:
        self._running[self._pool.submit(execute_job, job_fn, ctx)] = ctx.job_id

    def in_flight(self) -> list[str]:
        return list(self._running.values())

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        if not self._running:
            return []
        done, _ = futures.wait(list(self._running), timeout=timeout, return_when=futures.FIRST_COMPLETED)
        results = []
        broken = False
        for future in done:
            job_id = self._running.pop(future)
            try:
                results.append((job_id, future.result()))
            except futures.process.BrokenProcessPool:
                broken = True
                results.append((job_id, Outcome(ok=False, reason="worker process died", crashed=True)))
            except Exception as exc:  # e.g. an unpicklable result
                results.append((job_id, Outcome(ok=False, reason=f"{type(exc).__name__}: {exc}"[:500])))
        if broken:
            # every job of a broken pool is lost with it: report them and start a fresh pool
            for future, job_id in list(self._running.items()):
                results.append(
                    (job_id, Outcome(ok=False, reason="worker pool broke (a worker died)", crashed=True))
                )
                del self._running[future]
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return results

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor(Executor):
    """Each job is a Ray task with the job's ``num_cpus`` / ``num_gpus``; Ray's own retries are off so that
    the driver (and its store) decides and counts every retry."""

    def __init__(self, address: str | None, workers: int, resources: Mapping[str, float]) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--backend ray needs the 'ray' package: pip install 'ftscale[ray]'") from None
        self._ray = ray
        try:
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(
                    num_cpus=workers if workers > 1 else None,
                    include_dashboard=False,
                    logging_level="WARNING",
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
        cpus_per_job = max(float(resources.get("num_cpus", 1.0)), 1e-3)
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.capacity = workers if workers > 1 else max(1, int(cluster_cpus // cpus_per_job))
        self._remote = ray.remote(execute_job)
        self._running: dict[Any, str] = {}

    def submit(self, job_fn: JobFunction, ctx: JobContext, resources: Mapping[str, float]) -> None:
        ref = self._remote.options(
            num_cpus=resources.get("num_cpus", 1.0),
            num_gpus=resources.get("num_gpus", 0.0),
            max_retries=0,
            retry_exceptions=False,
            name=f"ftscale-{ctx.kind}-{ctx.job_id[:12]}",
        ).remote(job_fn, ctx)
        self._running[ref] = ctx.job_id

    def in_flight(self) -> list[str]:
        return list(self._running.values())

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        if not self._running:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        results = []
        for ref in ready:
            job_id = self._running.pop(ref)
            try:
                results.append((job_id, ray.get(ref)))
            except (
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError,
                ray.exceptions.OwnerDiedError,
                ray.exceptions.LocalRayletDiedError,
            ) as exc:
                reason = f"ray worker died: {type(exc).__name__}"
                results.append((job_id, Outcome(ok=False, reason=reason, detail=str(exc), crashed=True)))
            except ray.exceptions.RayError as exc:
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
                results.append((job_id, Outcome(ok=False, reason=reason, detail=str(exc))))
        return results

    def shutdown(self) -> None:
        for ref in list(self._running):
            self._ray.cancel(ref, force=True)
        self._running.clear()
        self._ray.shutdown()


def make_executor(
    backend: str, workers: int, threads_total: int, address: str | None, resources: Mapping[str, float]
) -> Executor:
    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    if backend == "local":
        if workers == 1:
            return SequentialExecutor(threads_total)
        return ProcessPoolExecutor(workers, max(1, threads_total // workers))
    if backend == "ray":
        return RayExecutor(address, workers, resources)
    raise UserError(f"--backend {backend!r}: choose 'local' or 'ray'")
