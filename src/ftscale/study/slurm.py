"""The Slurm backend: each job one task of a Slurm job array, submitted and followed through submitit.

Slurm jobs outlive their driver. :class:`SlurmExecutor` records which Slurm job runs which attempt in
``DIR/.slurm/jobs.json`` (written before and after each submission), and a new driver first adopts the attempts
that its store still shows running (:meth:`Executor.adopt`): it follows them to their end, or reads the result of
one that ended meanwhile, instead of submitting them again; any other recorded job is cancelled, and the run
waits until it is gone. The other backends refuse to start while that record lists jobs
(:func:`check_no_slurm_jobs`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftscale.errors import UserError
from ftscale.study.executors import Executor, JobContext, JobFunction, Outcome, _set_thread_count, execute_job

SLURM_DIR = ".slurm"  # DIR/.slurm: submitit's scripts, pickles and logs, and SLURM_BOOK
SLURM_BOOK = "jobs.json"  # ftscale job id -> the submitit job that runs its current attempt
# Testing only: "local" runs each task as a local process through submitit's local executor, which, like Slurm,
# outlives the driver; the default "slurm" needs a machine that can submit to Slurm (sbatch, srun, sacct).
SLURM_CLUSTER_ENV = "FTSCALE_SLURM_CLUSTER"
SLURM_CLUSTERS = ("slurm", "local")
_POLL_SECONDS = {"slurm": 5.0, "local": 0.1}  # how often result files and job states are read
# a job that ended without a result file is judged only after this long (a shared filesystem can lag behind)
_RESULT_GRACE_SECONDS = {"slurm": 30.0, "local": 0.0}
SLURM_VANISH_SECONDS = 600.0  # a job that Slurm's accounting has not listed for this long is taken as lost
SLURM_STOP_WAIT_SECONDS = 120.0  # how long a new run waits for cancelled jobs of an earlier run to end
SLURM_SHUTDOWN_WAIT_SECONDS = 10.0  # how long a stopping run waits for the jobs it cancels
_UNLIMITED = 1_000_000  # --workers 1 with Slurm: submit every job that is ready
_TIMED_OUT = "timed out"  # an Outcome reason from a task that submitit stopped at its time limit
# Slurm job states (sacct) of a job that is queued or running; RUNNING is also the local executor's word
ALIVE_STATES = frozenset(
    [
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "COMPLETING",
        "CONFIGURING",
        "STAGE_OUT",
        "SIGNALING",
        "STOPPED",
        "SPECIAL_EXIT",
        "READY",
    ]
)
# ended without a result through no fault of the job: it runs again without counting a failure (INTERRUPTED: the
# local executor's job was killed by a signal, like a node that went away; VANISHED: no longer known to Slurm)
LOST_STATES = frozenset(["PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "REVOKED", "INTERRUPTED", "VANISHED"])


def run_slurm_task(job_fn: JobFunction, ctx: JobContext) -> Outcome:
    """What one Slurm task runs: the job, with ``ctx.threads`` threads (the task's CPUs). A job that submitit
    stops at its time limit (it raises ``UncompletedJobError`` in the job on the warning signal) comes back as a
    crash; a preempted one is requeued by submitit and Slurm, and runs again as the same Slurm job."""
    _set_thread_count(ctx.threads)
    outcome = execute_job(job_fn, ctx)
    if not outcome.ok and outcome.reason.startswith("UncompletedJobError:"):
        return Outcome(ok=False, reason=_TIMED_OUT, detail=outcome.detail, crashed=True)
    return outcome


def scheduler_outcome(state: str, where: str, time_min: int) -> Outcome:
    """The outcome of a job that ended without a result, from its scheduler state; ``where`` names the job and
    its log. Every such outcome is retried; only a lost one (preempted, node failure, vanished) is not counted."""
    if state == "TIMEOUT":
        reason = f"timed out after {time_min} min ({where}); raise execution.slurm.time_min"
        return Outcome(ok=False, reason=reason, crashed=True)
    if state == "OUT_OF_MEMORY":
        return Outcome(
            ok=False, reason=f"ran out of memory ({where}); raise execution.slurm.mem_gb", crashed=True
        )
    if state in LOST_STATES:
        reason = f"lost to the cluster ({state.lower().replace('_', ' ')}; {where}); it runs again"
        return Outcome(ok=False, reason=reason, crashed=True, lost=True)
    if state == "CANCELLED":
        return Outcome(ok=False, reason=f"cancelled outside ftscale ({where})", crashed=True)
    return Outcome(
        ok=False, reason=f"ended without a result ({state.lower()}: its process died; {where})", crashed=True
    )


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` lives (one of our own children that ended is reaped, not taken for alive)."""
    with suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _failure_line(text: str) -> str:
    """The last line of the traceback inside a submitit ``FailedJobError`` message (the line that says what)."""
    parts = text.split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else text
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no traceback"


class _Book:
    """``DIR/.slurm/jobs.json``: per ftscale job in flight, the attempt and the submitit job id that runs it
    (null while it is being submitted), and whether this driver cancelled it. Written atomically."""

    def __init__(self, path: Path, cluster: str) -> None:
        self.path = path
        self.cluster = cluster
        self.jobs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
                raise ValueError("not a record of submitted jobs")
            return data
        except FileNotFoundError:
            return {"cluster": None, "jobs": {}}
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{path}: cannot read the record of submitted Slurm jobs ({exc}); make sure no job of this "
                "study still runs (squeue), then delete the file and rerun"
            ) from None

    def load(self) -> dict[str, dict[str, Any]]:
        data = self.read(self.path)
        if data["jobs"] and data.get("cluster") not in (None, self.cluster):
            raise UserError(
                f"{self.path}: jobs of an earlier run went to the {data['cluster']!r} cluster, this run uses "
                f"{self.cluster!r}; set ${SLURM_CLUSTER_ENV} as that run did and rerun"
            )
        return data["jobs"]

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"cluster": self.cluster, "jobs": self.jobs}, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise UserError(
                f"{self.path}: cannot record the submitted Slurm jobs ({exc.strerror or exc}); free space or fix "
                "the permissions of the study directory, then rerun"
            ) from None


def submitted_slurm_jobs(study_dir: str | Path) -> list[str]:
    """Ids of the Slurm jobs that a run of this study submitted and no run has seen end yet ('?' for one that
    was being submitted when its driver stopped)."""
    jobs = _Book.read(Path(study_dir) / SLURM_DIR / SLURM_BOOK)["jobs"]
    return sorted(str(entry.get("submitit_id") or "?") for entry in jobs.values())


def check_no_slurm_jobs(study_dir: str | Path) -> None:
    """For the other backends: refuse to start while jobs of a Slurm run of this study may still run."""
    ids = submitted_slurm_jobs(study_dir)
    if ids:
        listed = " ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise UserError(
            f"{study_dir}: {len(ids)} job(s) of an earlier '--backend slurm' run may still be queued or running "
            f"(Slurm job {listed}); rerun with --backend slurm, which follows them to their end"
        )


@dataclass
class _Submitted:
    """One attempt of an ftscale job given to submitit; ``adopted``: submitted by an earlier driver."""

    job_id: str
    attempt: int
    handle: Any  # a submitit Job
    adopted: bool = False
    ended_at: float | None = None  # when it was first seen ended without a result file
    unknown_since: float | None = None  # when Slurm's accounting was first seen not to list it


class SlurmExecutor(Executor):
    """Each job is one task of a Slurm job array, submitted through submitit with the resources of
    ``execution.slurm``; the jobs that are ready together form one array. Logs, scripts and pickles go to
    ``DIR/.slurm/``. Outcomes are read from submitit's result files; a job that ended without one is mapped from
    its Slurm state (:func:`scheduler_outcome`)."""

    def __init__(self, study_dir: Path, workers: int, execution: Any) -> None:
        try:
            import submitit
        except ImportError:
            raise UserError(
                "--backend slurm needs the 'submitit' package: pip install 'ftscale[slurm]'"
            ) from None
        self._submitit = submitit
        self.cluster = os.environ.get(SLURM_CLUSTER_ENV) or "slurm"
        if self.cluster not in SLURM_CLUSTERS:
            raise UserError(
                f"${SLURM_CLUSTER_ENV}={self.cluster!r}: choose 'slurm' (the default) or 'local' (runs the "
                "tasks as processes on this machine, for testing)"
            )
        self.word = "Slurm job" if self.cluster == "slurm" else "local job"
        self.folder = (Path(study_dir) / SLURM_DIR).resolve()
        spec = execution.slurm_resources()
        self.time_min = spec.time_min
        self.threads = spec.cpus_per_task  # the driver gives each job this many threads
        self.capacity = workers if workers > 1 else _UNLIMITED
        self._poll_seconds = _POLL_SECONDS[self.cluster]
        self._grace_seconds = _RESULT_GRACE_SECONDS[self.cluster]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        except OSError as exc:
            raise UserError(
                f"{self.folder}: cannot write ({exc.strerror or exc}); use a writable --dir on a filesystem "
                "that the cluster's nodes share"
            ) from None
        except RuntimeError:  # submitit finds no 'srun'
            raise UserError(
                "--backend slurm: Slurm is not available here (no 'srun' command); run 'ftscale study run' "
                "where Slurm jobs can be submitted (a login node), or use --backend local or ray"
            ) from None
        parameters: dict[str, Any] = {
            "name": f"ftscale-{Path(study_dir).resolve().name}",
            "timeout_min": spec.time_min,
            "cpus_per_task": spec.cpus_per_task,
            "nodes": 1,
            "tasks_per_node": 1,
        }
        if spec.gpus_per_node:  # no GPU option at all for CPU jobs: not every cluster knows GPUs
            parameters["gpus_per_node"] = spec.gpus_per_node
        if spec.mem_gb is not None:
            parameters["mem_gb"] = spec.mem_gb
        for name in ("partition", "account", "qos", "constraint", "array_parallelism"):
            if getattr(spec, name) is not None:
                parameters[f"slurm_{name}"] = getattr(spec, name)
        if spec.additional_parameters:
            parameters["slurm_additional_parameters"] = dict(spec.additional_parameters)
        try:
            executor.update_parameters(**parameters)
        except (ValueError, NameError, TypeError, AssertionError) as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"execution.slurm: submitit refuses these settings ({line}); fix the study file"
            ) from None
        if self.cluster == "local":  # submitit spaces submissions 0.2 s apart to spare Slurm: not needed here
            with suppress(AttributeError):
                executor._executor._throttling = 0.0
        self._executor = executor
        self._queue: list[tuple[JobFunction, JobContext]] = []
        self._running: dict[str, _Submitted] = {}
        self._book = _Book(self.folder / SLURM_BOOK, self.cluster)
        self._last_poll = float("-inf")
        self._states_seen = False  # whether Slurm's accounting has listed any job of this run

    # --- the driver's interface ---------------------------------------------------------------------------
    def submit(self, job_fn: JobFunction, ctx: JobContext, resources: Mapping[str, float]) -> None:
        self._queue.append((job_fn, ctx))  # submitted with the other ready jobs, as one array, by wait()

    def in_flight(self) -> list[str]:
        return [ctx.job_id for _, ctx in self._queue] + list(self._running)

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        self._flush()
        deadline = time.monotonic() + timeout
        while self._running:
            now = time.monotonic()
            next_poll = self._last_poll + self._poll_seconds
            if next_poll > now:
                if next_poll > deadline:
                    time.sleep(max(0.0, deadline - now))
                    return []
                time.sleep(next_poll - now)
            self._last_poll = time.monotonic()
            ended = self._collect()
            if ended or time.monotonic() >= deadline:
                return ended
        return []

    def recorded(self, job_id: str) -> None:
        if self._book.jobs.pop(job_id, None) is not None:
            self._book.save()

    def adopt(self, running: Mapping[str, int], notify: Callable[[str], None] | None = None) -> list[str]:
        """Follow the recorded jobs whose attempt the store still shows running (``running``: id -> attempt);
        cancel every other recorded job and wait until it is gone, so nothing of an earlier run runs beside
        this one."""
        entries = self._book.load()
        if not entries:
            return []
        if any(not entry.get("submitit_id") for entry in entries.values()):
            self._recover_ids(entries)
        adopted: list[str] = []
        stale: list[_Submitted] = []
        for job_id, entry in entries.items():
            submitit_id = entry.get("submitit_id")
            if not submitit_id:
                continue  # never reached the scheduler, or its task cannot find its job and ends at once
            attempt = int(entry.get("attempt") or 0)
            submitted = _Submitted(job_id, attempt, self._handle(str(submitit_id)), adopted=True)
            if running.get(job_id) == attempt and not entry.get("cancelled"):
                self._running[job_id] = submitted
                adopted.append(job_id)
            else:
                stale.append(submitted)
        left = self._stop(stale, SLURM_STOP_WAIT_SECONDS, notify)
        if left:
            ids = " ".join(str(s.handle.job_id) for s in left)
            cancel = "scancel" if self.cluster == "slurm" else "kill -INT"
            raise UserError(
                f"{self.folder.parent}: {self.word}s of an earlier run are still running ({ids}) and may still "
                f"write its jobs; stop them ({cancel} {ids}) and rerun"
            )
        self._book.jobs = {job_id: entries[job_id] for job_id in adopted}
        self._book.save()
        if adopted and notify is not None:
            notify(
                f"{len(adopted)} job(s) submitted by an earlier run are still queued or running, or have ended: "
                "following them instead of submitting them again"
            )
        return adopted

    def shutdown(self) -> None:
        """Cancel the jobs in flight, so that none runs beside a later run; one that does not end within a few
        seconds stays recorded as cancelled, and the next run waits for it."""
        self._queue.clear()
        live = list(self._running.values())
        self._running.clear()
        if not live:
            return
        for submitted in live:
            if submitted.job_id in self._book.jobs:
                self._book.jobs[submitted.job_id]["cancelled"] = True
        with suppress(UserError):
            self._book.save()
        left = {s.job_id for s in self._stop(live, SLURM_SHUTDOWN_WAIT_SECONDS)}
        for submitted in live:
            if submitted.job_id not in left:
                self._book.jobs.pop(submitted.job_id, None)
        with suppress(UserError):
            self._book.save()

    # --- submitting ---------------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Submit the queued jobs as one job array: their ids are recorded before (without a Slurm id: the
        intent) and after the submission, so a driver killed in between leaves a trace (see _recover_ids)."""
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        now = time.time()
        for _, ctx in batch:
            self._book.jobs[ctx.job_id] = {"attempt": ctx.attempt, "submitit_id": None, "since": now}
        self._book.save()
        try:
            # submitit prints sbatch's errors: the UserError below carries them
            with redirect_stderr(io.StringIO()), self._executor.batch():
                handles = [self._executor.submit(run_slurm_task, job_fn, ctx) for job_fn, ctx in batch]
        except Exception as exc:
            # sbatch refused the jobs (a partition, account, QOS or limit it does not take): follow those that
            # went before the refusal (the local executor submits one job at a time) and forget the rest
            self._recover_ids(self._book.jobs)
            for _, ctx in batch:
                submitit_id = self._book.jobs[ctx.job_id].get("submitit_id")
                if submitit_id:
                    handle = self._handle(str(submitit_id))
                    self._running[ctx.job_id] = _Submitted(ctx.job_id, ctx.attempt, handle, adopted=True)
                else:
                    del self._book.jobs[ctx.job_id]
            self._book.save()
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise UserError(
                f"{self.folder.parent}: Slurm refused the jobs ({lines[-1] if lines else type(exc).__name__}); "
                "check execution.slurm in the study file (partition, account, qos, time_min, mem_gb, "
                "gpus_per_node, additional_parameters)"
            ) from None
        for (_, ctx), handle in zip(batch, handles, strict=True):
            self._book.jobs[ctx.job_id]["submitit_id"] = str(handle.job_id)
            self._running[ctx.job_id] = _Submitted(ctx.job_id, ctx.attempt, handle)
        self._book.save()

    def _recover_ids(self, entries: dict[str, dict[str, Any]]) -> None:
        """A driver killed while it submitted leaves jobs recorded without a Slurm id. submitit writes each
        task's job (``<id>_submitted.pkl``) right after the submission, and a task whose file never appears ends
        without running anything; so the files written since then name every job that can run."""
        from submitit.core.utils import DelayedSubmission

        missing = {job_id: entry for job_id, entry in entries.items() if not entry.get("submitit_id")}
        if not missing:
            return
        since = min(float(entry.get("since") or 0.0) for entry in missing.values()) - 60.0
        suffix = "_submitted.pkl"
        for path in sorted(self.folder.glob(f"*{suffix}")):
            try:
                if path.stat().st_mtime < since:
                    continue
                delayed = DelayedSubmission.load(path)
            except Exception:  # half written, or not one of ours
                continue
            ctx = delayed.args[1] if len(delayed.args) > 1 else None
            entry = missing.get(getattr(ctx, "job_id", None))  # type: ignore[arg-type]
            if entry is not None and getattr(ctx, "attempt", None) == entry.get("attempt"):
                entry["submitit_id"] = path.name[: -len(suffix)]

    # --- following jobs -----------------------------------------------------------------------------------
    def _handle(self, submitit_id: str) -> Any:
        """A submitit job object for a job that an earlier driver submitted."""
        if self.cluster == "local":
            return self._submitit.LocalJob(folder=self.folder, job_id=submitit_id)
        return self._submitit.SlurmJob(folder=self.folder, job_id=submitit_id)

    def _state(self, submitted: _Submitted, mode: str = "standard") -> str:
        """The scheduler's word for the job: a Slurm state (UNKNOWN: not listed by sacct yet or any more), or
        for the local executor RUNNING, FINISHED or INTERRUPTED (killed by a signal)."""
        handle = submitted.handle
        if self.cluster == "local":
            if submitted.adopted:  # a process of an earlier driver: only whether it lives is known
                return "RUNNING" if _pid_alive(int(handle.job_id)) else "FINISHED"
            return str(handle.state).upper()
        state = handle.watcher.get_state(handle.job_id, mode=mode)
        return (str(state).split() or ["UNKNOWN"])[0].upper()

    def _where(self, submitted: _Submitted) -> str:
        return f"{self.word} {submitted.handle.job_id}, log {submitted.handle.paths.stderr}"

    def _collect(self) -> list[tuple[str, Outcome]]:
        now = time.monotonic()
        ended = []
        for job_id, submitted in list(self._running.items()):
            outcome = self._check(submitted, now)
            if outcome is not None:
                del self._running[job_id]
                ended.append((job_id, outcome))
        return ended

    def _check(self, submitted: _Submitted, now: float) -> Outcome | None:
        """The job's outcome once it has ended, else None."""
        if submitted.handle.paths.result_pickle.exists():
            if self.cluster == "local" and not submitted.adopted and self._state(submitted) == "RUNNING":
                return None  # its local controller is about to exit (result() would wait a second for it)
            return self._result(submitted)
        state = self._state(submitted)
        if state == "UNKNOWN":
            if submitted.unknown_since is None:
                submitted.unknown_since = now
            if now - submitted.unknown_since < SLURM_VANISH_SECONDS:
                return None
            if not self._states_seen:
                raise UserError(
                    f"{self.folder.parent}: Slurm's accounting (sacct) lists none of this run's jobs after "
                    f"{SLURM_VANISH_SECONDS:.0f} s; --backend slurm needs it to follow jobs: ask the cluster's "
                    "admins, or use --backend local or ray"
                )
            state = "VANISHED"
        else:
            submitted.unknown_since = None
            self._states_seen = True
            if state in ALIVE_STATES:
                submitted.ended_at = None
                return None
        if submitted.ended_at is None:
            submitted.ended_at = now
        if now - submitted.ended_at < self._grace_seconds:
            return None
        if state != "VANISHED" and self.cluster == "slurm":
            state = self._state(submitted, mode="force")  # a preempted job may have been requeued meanwhile
            if state in ALIVE_STATES:
                submitted.ended_at = None
                return None
        if submitted.handle.paths.result_pickle.exists():
            return self._result(submitted)
        self._cancel(submitted)  # it is resubmitted: make sure this one cannot come back (a late requeue)
        return scheduler_outcome(state, self._where(submitted), self.time_min)

    def _result(self, submitted: _Submitted) -> Outcome:
        """The outcome in the job's result file: the job's own, or the task's failure outside the job."""
        try:
            outcome = submitted.handle.result()
        except Exception as exc:  # the task failed before or after the job: e.g. it could not import the job
            text = str(exc)
            reason = f"the task failed outside the job ({self._where(submitted)}): {_failure_line(text)}"
            return Outcome(ok=False, reason=reason[:1000], detail=text)
        if not isinstance(outcome, Outcome):
            return Outcome(
                ok=False, reason=f"unexpected result {type(outcome).__name__} ({self._where(submitted)})"
            )
        if outcome.crashed and outcome.reason == _TIMED_OUT:
            outcome.reason = f"timed out after {self.time_min} min ({self._where(submitted)}); raise execution.slurm.time_min"
        return outcome

    def _cancel(self, submitted: _Submitted) -> None:
        if self.cluster == "local" and submitted.adopted:
            with suppress(OSError, ValueError):
                os.kill(int(submitted.handle.job_id), signal.SIGINT)  # what submitit's local cancel sends
            return
        with suppress(OSError, RuntimeError):  # scancel missing or failing: the job may already be gone
            submitted.handle.cancel(check=False)

    def _stop(
        self, jobs: list[_Submitted], timeout: float, notify: Callable[[str], None] | None = None
    ) -> list[_Submitted]:
        """Cancel the jobs that still run and wait up to ``timeout`` seconds for them to end; those left."""
        if self.cluster == "slurm" and jobs:
            for submitted in jobs:
                submitted.handle.watcher.register_job(str(submitted.handle.job_id))
            with suppress(Exception):
                jobs[0].handle.watcher.update()
        live = [s for s in jobs if self._state(s, mode="cache") in ALIVE_STATES]
        if live and notify is not None:
            notify(f"cancelling {len(live)} {self.word}(s) of an earlier run; waiting up to {timeout:.0f} s")
        for submitted in live:
            self._cancel(submitted)
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            time.sleep(min(self._poll_seconds, 2.0) if self.cluster == "slurm" else 0.1)
            if self.cluster == "slurm":
                with suppress(Exception):
                    live[0].handle.watcher.update()
            live = [s for s in live if self._state(s, mode="cache") in ALIVE_STATES]
        return live
