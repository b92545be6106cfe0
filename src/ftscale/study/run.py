"""Run a study: plan it, record it, execute what is missing in dependency order, resume after any crash.

``run_study`` is generic over the job function (``JobContext -> metrics``). The function used by
``ftscale study run`` comes from :data:`JOB_FUNCTIONS` (or ``$FTSCALE_JOB_FN=module:function``).
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftscale.errors import UserError
from ftscale.study.executors import JobContext, JobFunction, Outcome, make_executor, set_progress_hook
from ftscale.study.plan import KINDS, StudyPlan, build_plan, job_dir_name
from ftscale.study.runner import preflight, run_job
from ftscale.study.spec import StudySpec
from ftscale.study.store import DB_NAME, Store

JOB_FN_ENV = "FTSCALE_JOB_FN"
HEARTBEAT_SECONDS = 10.0


def _runner_not_wired(ctx: JobContext) -> Mapping[str, Any]:
    raise UserError(
        "the finetuning runner is not wired yet: ftscale.study.run.JOB_FUNCTIONS['default'] is a placeholder"
    )


_runner_not_wired.not_wired = True  # type: ignore[attr-defined]

# Named job functions; the real pretrain/finetune/evaluate runner is registered as "default".
JOB_FUNCTIONS: dict[str, JobFunction] = {"default": run_job, "not_wired": _runner_not_wired}


def resolve_job_function(name: str = "default") -> JobFunction:
    """The job function to use: ``$FTSCALE_JOB_FN`` ("module:function") if set, else ``JOB_FUNCTIONS[name]``."""
    override = os.environ.get(JOB_FN_ENV)
    if override:
        module_name, _, attr = override.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UserError(
                f"${JOB_FN_ENV}={override!r}: cannot import it ({exc}); use 'module:function'"
            ) from None
    if name not in JOB_FUNCTIONS:
        raise UserError(f"unknown job function {name!r}; known: {', '.join(sorted(JOB_FUNCTIONS))}")
    fn = JOB_FUNCTIONS[name]
    if getattr(fn, "not_wired", False):
        fn(None)  # type: ignore[arg-type]  # raises its UserError before anything is written
    return fn


@dataclass
class RunSummary:
    total: int
    done: int
    failed: int
    executed: int
    failed_jobs: dict[str, str] = field(default_factory=dict)


class _Heartbeat(threading.Thread):
    """Refreshes the heartbeat of this process's running jobs (its own connection: sqlite is per thread)."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(daemon=True)
        self.db_path = db_path
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            while not self.stop_event.wait(HEARTBEAT_SECONDS):
                with conn:
                    conn.execute(
                        "UPDATE jobs SET heartbeat = ? WHERE status = 'running' AND owner_pid = ?",
                        (time.time(), os.getpid()),
                    )
        finally:
            conn.close()


def run_study(
    spec: StudySpec,
    study_dir: str | Path,
    job_fn: JobFunction,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    max_retries: int = 2,
    progress: bool = True,
    force: bool = False,
    spec_text: str | None = None,
    until: str | None = None,
) -> RunSummary:
    """Execute every job of the spec's plan that is not done yet; failed jobs are retried up to
    ``max_retries`` times in this run. Safe to call again after a crash or Ctrl-C: it resumes.

    ``until`` (a job kind) runs only the jobs of that kind and the kinds before it (tokenizer → pretrain →
    baseline → finetune), e.g. ``"pretrain"`` to build the base models and tune learning rates before the grid."""
    if max_retries < 0:
        raise UserError(f"--max-retries {max_retries}: must be >= 0")
    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    if backend not in ("local", "ray"):
        raise UserError(f"--backend {backend!r}: choose 'local' or 'ray'")
    if until is not None and until not in KINDS:
        raise UserError(f"--until {until!r}: choose one of {', '.join(KINDS)}")
    plan = build_plan(spec)
    if job_fn is run_job:
        preflight(spec)
    store = Store.prepare(study_dir, spec, spec_text=spec_text, force=force)
    try:
        store.acquire_lock()
        store.sync_plan(plan)
        store.reset_interrupted()
        store.reset_failed([job.id for job in plan.jobs])
        kinds = KINDS[: KINDS.index(until) + 1] if until is not None else KINDS  # type: ignore[arg-type]
        return _Driver(plan, store, job_fn, backend, workers, address, max_retries, progress, kinds).run()
    finally:
        store.close()


class _Driver:
    def __init__(
        self,
        plan: StudyPlan,
        store: Store,
        job_fn: JobFunction,
        backend: str,
        workers: int,
        address: str | None,
        max_retries: int,
        progress: bool,
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        self.plan = plan
        self.kinds = kinds
        self.store = store
        self.job_fn = job_fn
        self.backend = backend
        self.workers = workers
        self.address = address
        self.max_retries = max_retries
        self.show_progress = progress
        execution = plan.spec.execution
        self.threads_total = execution.threads or os.cpu_count() or 1
        self.device = execution.device
        self.attempts_this_run: dict[str, int] = {}
        self.executed = 0

    def _context(self, job_id: str, attempt: int, threads: int) -> JobContext:
        job = self.plan.by_id[job_id]
        jobs_dir = self.store.study_dir / "jobs"
        dep_dirs = {dep: jobs_dir / job_dir_name(self.plan.by_id[dep]) for dep in job.deps}
        return JobContext(
            job_id=job.id,
            kind=job.kind,
            params=job.params,
            axes=job.axes,
            study_dir=self.store.study_dir.resolve(),
            work_dir=(jobs_dir / job_dir_name(job)).resolve(),
            dep_dirs={dep: path.resolve() for dep, path in dep_dirs.items()},
            dep_results={dep: self.store.metrics_of(dep) for dep in job.deps},
            attempt=attempt,
            threads=threads,
            device=self.device,
        )

    def _block_dependents(self, failed_id: str, status: dict[str, str]) -> None:
        for job in self.plan.jobs:
            if status[job.id] == "pending" and failed_id in job.deps:
                self.store.mark_blocked(job.id, failed_id)
                status[job.id] = "failed"
                self._block_dependents(job.id, status)

    def run(self) -> RunSummary:
        executor = make_executor(
            self.backend,
            self.workers,
            self.threads_total,
            self.address,
            self.plan.jobs[0].resources if self.plan.jobs else {},
        )
        # threads per job: the local backends split cores; on Ray a job gets the CPUs it asked for
        threads = getattr(executor, "threads", None) or int(self.plan.spec.execution.cpus_per_job)
        heartbeat = _Heartbeat(self.store.study_dir / DB_NAME)
        heartbeat.start()
        view = _ProgressView(self.plan, self.show_progress)
        user_error: UserError | None = None
        try:
            with view:
                stored = self.store.statuses()
                status = {job.id: stored[job.id] for job in self.plan.jobs}
                view.start(sum(1 for s in status.values() if s == "done"))
                while True:
                    in_flight = set(executor.in_flight())
                    if user_error is None:
                        for job in self.plan.jobs:
                            if len(in_flight) >= executor.capacity:
                                break
                            if status[job.id] != "pending" or job.id in in_flight:
                                continue
                            if job.kind not in self.kinds:
                                continue
                            if not all(status[dep] == "done" for dep in job.deps):
                                continue
                            attempt = self.store.mark_running(job.id)
                            self.attempts_this_run[job.id] = self.attempts_this_run.get(job.id, 0) + 1
                            status[job.id] = "running"
                            executor.submit(
                                self.job_fn, self._context(job.id, attempt, threads), job.resources
                            )
                            in_flight.add(job.id)
                            view.job_started(job)
                    if not in_flight:
                        break
                    for job_id, outcome in executor.wait(timeout=1.0):
                        self.executed += 1
                        error = self._record(job_id, outcome, status)
                        view.job_ended(self.plan.by_id[job_id], status[job_id])
                        if error is not None and user_error is None:
                            user_error = error
        except KeyboardInterrupt:
            for job_id in executor.in_flight():
                self.store.mark_failed(job_id, "interrupted (Ctrl-C)", final=False)
            raise
        finally:
            executor.shutdown()
            heartbeat.stop_event.set()
        if user_error is not None:
            raise user_error
        stored = self.store.statuses()
        final = {job.id: stored[job.id] for job in self.plan.jobs}
        failed = {
            row["id"]: row["reason"] or ""
            for row in self.store.rows(list(final))
            if row["status"] == "failed"
        }
        return RunSummary(
            total=len(self.plan.jobs),
            done=sum(1 for s in final.values() if s == "done"),
            failed=len(failed),
            executed=self.executed,
            failed_jobs=failed,
        )

    def _record(self, job_id: str, outcome: Outcome, status: dict[str, str]) -> UserError | None:
        if outcome.ok:
            self.store.mark_done(job_id, outcome.metrics, outcome.environment)
            status[job_id] = "done"
            return None
        final = (
            outcome.user_error or outcome.final or self.attempts_this_run.get(job_id, 0) > self.max_retries
        )
        self.store.mark_failed(job_id, outcome.reason, outcome.detail or None, final=final)
        status[job_id] = "failed" if final else "pending"
        if final:
            self._block_dependents(job_id, status)
        if outcome.user_error:
            return UserError(outcome.reason)
        return None


class _ProgressView:
    """A rich progress display: the whole study (done / total, ETA) and the job(s) running now."""

    def __init__(self, plan: StudyPlan, enabled: bool) -> None:
        self.plan = plan
        self.enabled = enabled
        self.progress: Any = None
        self.running: dict[str, str] = {}

    def __enter__(self) -> _ProgressView:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.__enter__()
            self.study_task = self.progress.add_task(
                f"study {self.plan.spec.name}", total=len(self.plan.jobs)
            )
            self.job_task = self.progress.add_task("waiting", total=1.0)
            set_progress_hook(self._on_job_progress)
        return self

    def __exit__(self, *exc: object) -> None:
        set_progress_hook(None)
        if self.progress is not None:
            # the current-job line means nothing once the study stops: leave only the study's bar on screen
            self.progress.update(self.job_task, visible=False)
            self.progress.__exit__(*exc)

    def start(self, already_done: int) -> None:
        if self.progress is not None:
            self.progress.update(self.study_task, completed=already_done)

    def _describe_running(self) -> str:
        labels = list(self.running.values())
        more = f" (+{len(labels) - 2})" if len(labels) > 2 else ""
        return ("running: " + ", ".join(labels[:2]) + more) if labels else "waiting"

    def job_started(self, job: Any) -> None:
        self.running[job.id] = job.label
        if self.progress is not None:
            self.progress.update(self.job_task, description=self._describe_running(), completed=0.0)

    def job_ended(self, job: Any, status: str) -> None:
        self.running.pop(job.id, None)
        if self.progress is not None:
            if status == "done":
                self.progress.advance(self.study_task)
            self.progress.update(self.job_task, description=self._describe_running(), completed=0.0)

    def _on_job_progress(self, job_id: str, fraction: float, message: str) -> None:
        if self.progress is not None and job_id in self.running:
            text = self.running[job_id] + (f" · {message}" if message else "")
            self.progress.update(self.job_task, description=text, completed=fraction)
