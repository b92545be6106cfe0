"""Where jobs run: in-process (sequential), a local process pool, Ray tasks, or Slurm job arrays (submitit).

Every backend runs :func:`execute_job` (the job function wrapped so that its errors come back as an
:class:`Outcome`) and reports outcomes to the driver, which alone writes the store. A worker that dies mid-job
comes back as a ``crashed`` outcome, which the driver retries like a failure.

Local pool workers never outlive their driver: each asks the kernel to kill it when its parent dies (Linux), and
watches its parent besides (every platform). Each also holds a lock file ``DIR/.workers/<pid>.lock`` while it
lives, so a new driver can tell whether workers of an earlier run still hold jobs (:func:`wait_for_workers`)
before it runs any, and the pool's processes are killed when the driver stops the backend.

Slurm jobs outlive their driver: that backend (``study/slurm.py``) records and adopts them.
"""

from __future__ import annotations

import concurrent.futures as futures
import ctypes
import fcntl
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftscale.errors import UserError

BACKENDS = ("local", "ray", "slurm")  # --backend of 'study run'
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WORKERS_DIR = ".workers"  # DIR/.workers/<pid>.lock: held by each live pool worker of the study
WORKER_WAIT_SECONDS = 30.0  # how long a new driver waits for workers of a stopped run to exit
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
    cached: bool = False  # a family job whose directory is an entry of the family cache (``study.cache``)

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
    # the attempt was lost to the cluster (preempted, a node failed, the scheduler forgot it), not failed: it
    # runs again without counting against --max-retries (a driver that ignores this retries it as a crash)
    lost: bool = False


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

    def adopt(self, running: Mapping[str, int], notify: Callable[[str], None] | None = None) -> list[str]:
        """Called once before the driver resets the rows a stopped run left 'running' (``running``: job id ->
        attempt): take over those attempts that this backend still holds and return their ids; they are in
        flight from now on and :meth:`wait` reports their ends. Jobs of the local backends die with their
        driver, so there is nothing to adopt."""
        return []

    def recorded(self, job_id: str) -> None:
        """The driver has written the outcome of ``job_id`` (returned by :meth:`wait`) to the store."""


def check_backend(backend: str, address: str | None = None) -> None:
    """``--backend`` names a backend, and ``--address`` is given only with Ray."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if address and backend != "ray":
        raise UserError("--address is only used with --backend ray")


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


_worker_lock: Any = None  # this worker's lock file, held open for the life of the process


def _die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (the driver) dies: a kernel signal on Linux, and a watcher thread
    that polls the parent on every platform (and covers a parent that died before the signal was set)."""
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):  # no prctl: the watcher below still works
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="ftscale-parent-watch", daemon=True).start()


def _register_worker(study_dir: Path) -> None:
    """Hold ``DIR/.workers/<pid>.lock`` for the life of this worker (the kernel drops the lock when it dies)."""
    global _worker_lock
    folder = Path(study_dir) / WORKERS_DIR
    folder.mkdir(exist_ok=True)
    handle = open(folder / f"{os.getpid()}.lock", "w")  # noqa: SIM115 - held until the process ends
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _worker_lock = handle


def _init_pool_worker(threads: int, parent_pid: int | None = None, study_dir: Path | None = None) -> None:
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    if study_dir is not None:
        _register_worker(study_dir)
    _set_thread_count(threads)


def live_workers(study_dir: str | Path) -> list[int]:
    """Pids of pool workers (of any run of this study) that are still alive; lock files of dead ones are
    removed."""
    folder = Path(study_dir) / WORKERS_DIR
    alive = []
    for path in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        try:
            with open(path, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    alive.append(int(path.stem) if path.stem.isdigit() else -1)
                    continue
                path.unlink(missing_ok=True)  # its worker is gone
        except OSError:
            continue
    return alive


def wait_for_workers(
    study_dir: str | Path, timeout: float | None = None, notify: Callable[[str], None] | None = None
) -> None:
    """Before a run starts jobs: wait until no worker of an earlier run of this study is alive (a worker of a
    killed driver dies with it, within moments), and refuse to start if one still is after ``timeout``."""
    timeout = WORKER_WAIT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + timeout
    told = False
    while pids := live_workers(study_dir):
        if time.monotonic() >= deadline:
            listed = " ".join(str(pid) for pid in pids)
            raise UserError(
                f"{study_dir}: worker processes of an earlier run are still alive (pids {listed}) and may "
                f"still write its jobs; stop them (kill {listed}) and rerun"
            )
        if not told and notify is not None:
            notify(f"waiting up to {timeout:.0f} s for {len(pids)} worker(s) of a stopped run to exit")
            told = True
        time.sleep(0.1)


class ProcessPoolExecutor(Executor):
    """A local pool of ``workers`` processes (spawned fresh), each with cores // workers threads. The workers
    die with the driver, and :meth:`shutdown` kills any that still run a job."""

    def __init__(self, workers: int, threads: int, study_dir: Path | None = None) -> None:
        self.capacity = workers
        self.threads = threads
        self.study_dir = study_dir
        self._pool = self._new_pool()
        self._running: dict[futures.Future[Outcome], str] = {}

    def _new_pool(self) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(self.threads, os.getpid(), self.study_dir),
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
            self._stop_pool()
            self._pool = self._new_pool()
        return results

    def _stop_pool(self) -> None:
        """Cancel queued jobs and kill the pool's processes: a job still running is abandoned (its row is reset
        by the driver), never left to finish beside a later run."""
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join(timeout=10)

    def shutdown(self) -> None:
        self._stop_pool()


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
    backend: str,
    workers: int,
    threads_total: int,
    address: str | None,
    resources: Mapping[str, float],
    study_dir: Path | None = None,
    execution: Any = None,
) -> Executor:
    """The backend of ``study run``; ``execution`` (the spec's ExecutionSpec) sets a Slurm task's resources."""
    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    check_backend(backend, address)
    if backend == "local":
        if workers == 1:
            return SequentialExecutor(threads_total)
        return ProcessPoolExecutor(workers, max(1, threads_total // workers), study_dir)
    if backend == "ray":
        return RayExecutor(address, workers, resources)
    if study_dir is None or execution is None:
        raise ValueError("the slurm backend needs the study directory and the spec's execution section")
    from ftscale.study.slurm import SlurmExecutor

    return SlurmExecutor(study_dir, workers, execution)
