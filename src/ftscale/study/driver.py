"""Run a study: plan it, record it, execute what is missing in dependency order, resume after any crash.

``run_study`` is generic over the job function (``JobContext -> metrics``). The function used by
``ftscale study run`` comes from :data:`JOB_FUNCTIONS` (or ``$FTSCALE_JOB_FN=module:function``).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftscale.errors import UserError
from ftscale.study.cache import CACHE_ENV, FAMILY_KINDS, cache_root, link_job_dir, read_entry
from ftscale.study.executors import (
    Executor,
    JobContext,
    JobFunction,
    Outcome,
    check_backend,
    make_executor,
    set_progress_hook,
    wait_for_workers,
)
from ftscale.study.jobs import preflight, run_job
from ftscale.study.plan import KINDS, StudyPlan, build_plan, job_dir_for, job_dir_name
from ftscale.study.slurm import check_no_slurm_jobs
from ftscale.study.spec import StudySpec
from ftscale.study.store import DB_NAME, Store

JOB_FN_ENV = "FTSCALE_JOB_FN"
HEARTBEAT_SECONDS = 10.0
# A job whose attempts are lost to the cluster (preempted, a node failed) runs again without counting a failure,
# up to this many times in one run; after that a lost attempt counts like a crash.
MAX_LOST_ATTEMPTS = 10


# Named job functions; the real pretrain/finetune/evaluate runner is registered as "default".
JOB_FUNCTIONS: dict[str, JobFunction] = {"default": run_job}


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
    return JOB_FUNCTIONS[name]


@dataclass
class RunSummary:
    """How a run ended. ``failed_jobs``: id -> reason of every job failed now; ``labels``: their labels;
    ``final``: the ids among them that failed for good (rerun only with ``--retry-failed``)."""

    total: int
    done: int
    failed: int
    executed: int
    # family jobs found finished in the family cache (built by another study or an earlier run), and the cache
    reused: int = 0
    cache: Path | None = None
    failed_jobs: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    final: set[str] = field(default_factory=set)


def _notify(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def outputs_manifest(work_dir: Path) -> dict[str, int]:
    """The files a finished job left in its directory: relative path -> size in bytes."""
    if not work_dir.is_dir():
        return {}
    return {
        path.relative_to(work_dir).as_posix(): path.stat().st_size
        for path in sorted(work_dir.rglob("*"))
        if path.is_file()
    }


def missing_outputs(work_dir: Path, manifest: Mapping[str, int] | None) -> str | None:
    """What is missing of a done job's outputs (None: all there). Without a manifest (a store of an older
    version), the directory must exist and hold something."""
    if manifest is None:
        return None if work_dir.is_dir() and any(work_dir.iterdir()) else "its directory is gone or empty"
    for name, size in manifest.items():
        path = work_dir / name
        if not path.is_file():
            return f"{name} is gone" if work_dir.is_dir() else "its directory is gone"
        if path.stat().st_size != size:
            return f"{name} changed size ({path.stat().st_size} bytes, {size} when the job finished)"
    return None


class _Heartbeat(threading.Thread):
    """Refreshes the heartbeat of this process's running jobs (its own connection: sqlite is per thread)."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(daemon=True)
        self.db_path = db_path
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.db_path, timeout=30)
        except sqlite3.Error:
            return  # the driver reports store problems itself; the heartbeat is informative only
        try:
            while not self.stop_event.wait(HEARTBEAT_SECONDS):
                try:
                    with conn:
                        conn.execute(
                            "UPDATE jobs SET heartbeat = ? WHERE status = 'running' AND owner_pid = ?",
                            (time.time(), os.getpid()),
                        )
                except sqlite3.Error:
                    continue
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
    retry_failed: bool = False,
    notify: Callable[[str], None] = _notify,
) -> RunSummary:
    """Execute every job of the spec's plan that is not done yet; failed jobs are retried up to
    ``max_retries`` times in this run. Safe to call again after a crash or Ctrl-C: it resumes.

    A rerun retries jobs that failed with an error (and what they blocked); jobs that failed for good (a
    diverged finetuning run: the same inputs diverge again) run again only with ``retry_failed``. A done job
    whose outputs were deleted, while a job that needs them is not done, is run again.

    ``until`` (a job kind) runs only the jobs of that kind and the kinds before it (tokenizer → pretrain →
    baseline → finetune), e.g. ``"pretrain"`` to build the base models and tune learning rates before the grid."""
    if max_retries < 0:
        raise UserError(f"--max-retries {max_retries}: must be >= 0")
    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    check_backend(backend, address)
    if until is not None and until not in KINDS:
        raise UserError(f"--until {until!r}: choose one of {', '.join(KINDS)}")
    plan = build_plan(spec)
    if job_fn is run_job:
        preflight(spec)
    store = Store.prepare(study_dir, spec, spec_text=spec_text, force=force)  # holds the run lock
    executor: Executor | None = None
    try:
        # workers of a killed driver die with it; make sure none still holds a job before any is reset
        wait_for_workers(store.study_dir, notify=notify)
        if backend != "slurm":  # Slurm jobs outlive their driver: only that backend can adopt them
            check_no_slurm_jobs(store.study_dir)
        store.sync_plan(plan)
        executor = make_executor(
            backend,
            workers,
            spec.execution.threads or os.cpu_count() or 1,
            address,
            plan.jobs[0].resources if plan.jobs else {},
            study_dir=store.study_dir,
            execution=spec.execution,
        )
        # attempts of the stopped run that the backend still runs (Slurm) stay running; the rest are reset
        rows = store.rows([job.id for job in plan.jobs])
        running = {row["id"]: row["attempts"] for row in rows if row["status"] == "running"}
        adopted = executor.adopt(running, notify)
        store.reset_interrupted(keep=adopted)
        store.reset_failed([job.id for job in plan.jobs], include_final=retry_failed)
        _rerun_jobs_with_missing_outputs(plan, store, notify)
        kinds = KINDS[: KINDS.index(until) + 1] if until is not None else KINDS  # type: ignore[arg-type]
        # Only the library's own jobs go to the family cache: a stand-in job function (tests) must never leave
        # entries that a real study would take for trained models.
        cache = cache_root(spec.execution.family_cache) if job_fn is run_job else None
        return _Driver(
            plan, store, job_fn, executor, max_retries, progress, kinds, cache=cache, adopted=adopted
        ).run()
    finally:
        if executor is not None:
            executor.shutdown()
        store.close()


def _rerun_jobs_with_missing_outputs(plan: StudyPlan, store: Store, notify: Callable[[str], None]) -> None:
    """A done job whose files were deleted (or changed) by hand while a job that needs them is not done yet is
    made pending, so it runs again before that job; its done dependants keep their results."""
    rows = {row["id"]: row for row in store.rows([job.id for job in plan.jobs])}
    needed = {dep for job in plan.jobs if rows[job.id]["status"] != "done" for dep in job.deps}
    jobs_dir = store.study_dir / "jobs"
    stale = []
    for job_id in sorted(needed, key=lambda i: rows[i]["plan_order"]):
        row = rows[job_id]
        if row["status"] != "done":
            continue
        work_dir = jobs_dir / job_dir_name(plan.by_id[job_id])
        problem = missing_outputs(work_dir, row["outputs"])
        if problem is not None:
            notify(f"{row['label']} ({job_id[:12]}) is done but {problem} in {work_dir}; it runs again")
            stale.append(job_id)
    store.invalidate(stale, reason="outputs missing; run again")


def reset_jobs(study_dir: str | Path, selectors: list[str]) -> list[dict[str, Any]]:
    """``ftscale study reset``: make the selected jobs and every job that depends on them pending, forget their
    results and delete their directories, so the next run recomputes them. A selector is a job id (or a prefix
    of at least 6 characters) or a job label as ``study status`` prints it. Refused while a run is active."""
    if not selectors:
        raise UserError("name at least one job: an id (prefix) or a label such as 'pretrain s'")
    with Store.open(study_dir) as store:
        store.acquire_lock()
        rows = store.rows()
        chosen: list[str] = []
        for selector in selectors:
            text = selector.strip()
            hits = [r["id"] for r in rows if r["label"] == text]
            if not hits and len(text) >= 6:
                hits = [r["id"] for r in rows if r["id"].startswith(text.lower())]
            if not hits:
                raise UserError(
                    f"{study_dir}: no job matches {selector!r}; give an id (at least 6 characters) or a label "
                    "as 'ftscale study status' lists them"
                )
            if len(hits) > 1 and not any(r["label"] == text for r in rows):
                raise UserError(f"{study_dir}: {selector!r} matches {len(hits)} jobs; give more of the id")
            chosen += hits
        dependants: dict[str, list[str]] = {}
        for row in rows:
            for dep in row["deps"] or []:
                dependants.setdefault(dep, []).append(row["id"])
        reset: dict[str, None] = {}
        stack = list(chosen)
        while stack:
            job_id = stack.pop()
            if job_id not in reset:
                reset[job_id] = None
                stack += dependants.get(job_id, [])
        by_id = {row["id"]: row for row in rows}
        targets = [by_id[job_id] for job_id in reset]
        for row in targets:
            job_dir = store.study_dir / "jobs" / job_dir_for(row["kind"], row["id"])
            if job_dir.is_symlink():
                # a family job kept in the family cache: only this study's link goes; the next run relinks
                # the finished entry (the same inputs give the same model) or resumes a partial one
                job_dir.unlink()
            else:
                shutil.rmtree(job_dir, ignore_errors=True)
        store.invalidate(list(reset), reason="reset by 'ftscale study reset'")
        return sorted(targets, key=lambda r: r["plan_order"])


class _Driver:
    def __init__(
        self,
        plan: StudyPlan,
        store: Store,
        job_fn: JobFunction,
        executor: Executor,
        max_retries: int,
        progress: bool,
        kinds: tuple[str, ...] = KINDS,
        cache: Path | None = None,
        adopted: list[str] | None = None,
    ) -> None:
        self.plan = plan
        self.kinds = kinds
        self.store = store
        self.job_fn = job_fn
        self.executor = executor
        self.max_retries = max_retries
        self.show_progress = progress
        self.device = plan.spec.execution.device
        # jobs of a stopped run that the backend still runs: in flight from the start, on their first attempt here
        self.adopted = list(adopted or [])
        self.attempts_this_run: dict[str, int] = dict.fromkeys(self.adopted, 1)
        self.lost_attempts: dict[str, int] = {}
        self.executed = 0
        self.reused: list[str] = []  # family jobs found finished in the family cache
        self.cache = cache

    def _use_cache(self, job: Any) -> bool:
        """Link a family job's directory to its cache entry (when the cache is on); True when the job then runs
        in the cache."""
        if self.cache is None or job.kind not in FAMILY_KINDS:
            return False
        link = self.store.study_dir / "jobs" / job_dir_name(job)
        entry = self.cache / job_dir_name(job)
        try:
            return link_job_dir(link, entry) == entry
        except OSError as exc:
            raise UserError(
                f"{entry}: cannot use the family cache ({exc.strerror or exc}); set execution.family_cache or "
                f"${CACHE_ENV} to a writable directory, or to 'off'"
            ) from None

    def _reuse(self, job: Any, status: dict[str, str], view: Any) -> bool:
        """Record a family job whose cache entry another study (or an earlier run) finished, without running it."""
        if not self._use_cache(job):
            return False
        record = read_entry(self.cache / job_dir_name(job))  # type: ignore[operator]
        if record is None:
            return False
        self.store.mark_running(job.id)
        entry = {"family_cache": str(self.cache / job_dir_name(job))}  # type: ignore[operator]
        self._record(job.id, Outcome(ok=True, metrics=record["metrics"], environment=entry), status)
        self.reused.append(job.id)
        view.job_started(job)
        view.job_ended(job, status[job.id], reused=True)
        return True

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
            cached=(jobs_dir / job_dir_name(job)).is_symlink(),
        )

    def _block_dependents(self, failed_id: str, status: dict[str, str]) -> None:
        for job in self.plan.jobs:
            if status[job.id] == "pending" and failed_id in job.deps:
                self.store.mark_blocked(job.id, failed_id, self.plan.by_id[failed_id].label)
                status[job.id] = "failed"
                self._block_dependents(job.id, status)

    def run(self) -> RunSummary:
        """Run the jobs; the caller stops the executor afterwards."""
        executor = self.executor
        # threads per job: the local backends split cores; on Ray a job gets the CPUs it asked for, on Slurm its
        # task's CPUs
        threads = getattr(executor, "threads", None) or int(self.plan.spec.execution.cpus_per_job)
        heartbeat = _Heartbeat(self.store.study_dir / DB_NAME)
        heartbeat.start()
        view = _ProgressView(self.plan, self.show_progress)
        user_error: UserError | None = None
        try:
            with view:
                stored = self.store.statuses()
                status = {job.id: stored[job.id] for job in self.plan.jobs}
                for job_id in [job_id for job_id, state in status.items() if state == "failed"]:
                    self._block_dependents(job_id, status)  # e.g. a diverged job kept failed
                view.start(sum(1 for s in status.values() if s == "done"))
                for job_id in self.adopted:
                    view.job_started(self.plan.by_id[job_id])
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
                            if self._reuse(job, status, view):
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
                        executor.recorded(job_id)
                        view.job_ended(self.plan.by_id[job_id], status[job_id])
                        if error is not None and user_error is None:
                            user_error = error
        except KeyboardInterrupt:
            for job_id in executor.in_flight():
                self.store.mark_interrupted(job_id)  # not a failure: a rerun resumes it
            raise
        finally:
            heartbeat.stop_event.set()
        if user_error is not None:
            raise user_error
        stored = self.store.statuses()
        final = {job.id: stored[job.id] for job in self.plan.jobs}
        failed_rows = [row for row in self.store.rows(list(final)) if row["status"] == "failed"]
        return RunSummary(
            total=len(self.plan.jobs),
            done=sum(1 for s in final.values() if s == "done"),
            failed=len(failed_rows),
            executed=self.executed,
            reused=len(self.reused),
            cache=self.cache,
            failed_jobs={row["id"]: row["reason"] or "" for row in failed_rows},
            labels={row["id"]: row["label"] for row in failed_rows},
            final={row["id"] for row in failed_rows if row["failure_kind"] == "final"},
        )

    def _record(self, job_id: str, outcome: Outcome, status: dict[str, str]) -> UserError | None:
        if outcome.ok:
            work_dir = self.store.study_dir / "jobs" / job_dir_name(self.plan.by_id[job_id])
            self.store.mark_done(job_id, outcome.metrics, outcome.environment, outputs_manifest(work_dir))
            status[job_id] = "done"
            return None
        if outcome.lost and self.lost_attempts.get(job_id, 0) < MAX_LOST_ATTEMPTS:
            # preempted or its node failed: not the job's failure, so it runs again without counting one
            self.lost_attempts[job_id] = self.lost_attempts.get(job_id, 0) + 1
            self.attempts_this_run[job_id] -= 1
            self.store.mark_interrupted(job_id, reason=outcome.reason)
            status[job_id] = "pending"
            return None
        final = (
            outcome.user_error or outcome.final or self.attempts_this_run.get(job_id, 0) > self.max_retries
        )
        kind = "final" if outcome.final else "error"
        self.store.mark_failed(job_id, outcome.reason, outcome.detail or None, final=final, kind=kind)
        status[job_id] = "failed" if final else "pending"
        if final:
            self._block_dependents(job_id, status)
        if outcome.user_error:
            return UserError(outcome.reason)
        return None


#: Seconds between "still running" lines of the plain progress log (non-terminal output).
PLAIN_PROGRESS_INTERVAL = 30.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _ProgressView:
    """Progress of a study: on a terminal a rich display (the whole study, done / total, ETA, and the job(s)
    running now); otherwise (a log file, CI, ``nohup``, a Slurm log) plain lines, one per finished job and one per
    ``interval`` seconds while jobs run, each with done / total, failures, elapsed time and an ETA."""

    def __init__(self, plan: StudyPlan, enabled: bool) -> None:
        self.plan = plan
        self.enabled = enabled
        self.stream = sys.stdout
        self.plain = not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.interval = PLAIN_PROGRESS_INTERVAL
        self.progress: Any = None
        self.running: dict[str, str] = {}
        self.fractions: dict[str, float] = {}
        self.done = self.failed = self.ended_this_run = 0
        self.t0 = self.last_line = time.monotonic()
        # plain mode: a daemon thread prints the "still running" lines, since a job may run inside the driver's
        # own process (the sequential executor) and block the loop for its whole length
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> _ProgressView:
        if self.enabled and self.plain:
            set_progress_hook(self._on_job_progress)
            self._ticker = threading.Thread(target=self._tick_loop, name="ftscale-progress", daemon=True)
            self._ticker.start()
        elif self.enabled:
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
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.progress is not None:
            # the current-job line means nothing once the study stops: leave only the study's bar on screen
            self.progress.update(self.job_task, visible=False)
            self.progress.__exit__(*exc)
        elif self.enabled and self.plain and exc[0] is None:
            total = len(self.plan.jobs)
            self._line(
                "finished: every job done" if self.done == total else "stopped: the rest waits for a rerun"
            )

    def _line(self, text: str) -> None:
        """One plain progress line: counts, failures, elapsed time, ETA from this run's pace, then ``text``."""
        with self._lock:
            self._write_line(text)

    def _write_line(self, text: str) -> None:
        now = time.monotonic()
        self.last_line = now
        total = len(self.plan.jobs)
        elapsed = now - self.t0
        eta = ""
        if self.ended_this_run and self.done < total:
            remaining = total - self.done
            eta = f" · ETA {_duration(elapsed / self.ended_this_run * remaining)}"
        failed = f" · {self.failed} failed" if self.failed else ""
        width = len(str(total))
        self.stream.write(
            f"[{self.done:>{width}}/{total}] {text}{failed} · elapsed {_duration(elapsed)}{eta}\n"
        )
        self.stream.flush()

    def start(self, already_done: int) -> None:
        self.done = already_done
        if self.progress is not None:
            self.progress.update(self.study_task, completed=already_done)
        elif self.enabled and self.plain:
            left = len(self.plan.jobs) - already_done
            self._line(f"study {self.plan.spec.name}: {left} job(s) to run, {already_done} already done")

    def _describe_running(self) -> str:
        labels = list(self.running.values())
        more = f" (+{len(labels) - 2})" if len(labels) > 2 else ""
        return ("running: " + ", ".join(labels[:2]) + more) if labels else "waiting"

    def job_started(self, job: Any) -> None:
        with self._lock:
            self.running[job.id] = job.label
        if self.progress is not None:
            self.progress.update(self.job_task, description=self._describe_running(), completed=0.0)

    def job_ended(self, job: Any, status: str, reused: bool = False) -> None:
        with self._lock:
            self.running.pop(job.id, None)
            self.fractions.pop(job.id, None)
        self.ended_this_run += not reused  # the pace (ETA) counts only jobs that ran
        if status == "done":
            self.done += 1
        elif status == "failed":
            self.failed += 1
        if self.progress is not None:
            if status == "done":
                self.progress.advance(self.study_task)
            self.progress.update(self.job_task, description=self._describe_running(), completed=0.0)
        elif self.enabled and self.plain:
            word = {"done": "done", "failed": "failed"}.get(status, "will retry")
            self._line(f"{word} {job.label}" + (" (from the family cache)" if reused else ""))

    def _tick_loop(self) -> None:
        while not self._stop.wait(min(self.interval / 2, 1.0)):
            self.tick()

    def tick(self) -> None:
        """A "still running" line when ``interval`` seconds passed without any line (plain mode)."""
        if not (self.enabled and self.plain):
            return
        with self._lock:
            if not self.running or time.monotonic() - self.last_line < self.interval:
                return
            parts = [
                label + (f" {self.fractions[job_id]:.0%}" if job_id in self.fractions else "")
                for job_id, label in list(self.running.items())
            ]
            self._write_line("running: " + ", ".join(parts))

    def _on_job_progress(self, job_id: str, fraction: float, message: str) -> None:
        if job_id in self.running:
            self.fractions[job_id] = fraction
        if self.progress is not None and job_id in self.running:
            text = self.running[job_id] + (f" · {message}" if message else "")
            self.progress.update(self.job_task, description=text, completed=fraction)
