"""The Slurm backend (``study run --backend slurm``) through submitit, run on submitit's local executor
(``$FTSCALE_SLURM_CLUSTER=local``: each task is a process that, like a Slurm job, outlives the driver): the same
results as a sequential run, retries of crashed, failed, timed-out and lost jobs, no job run twice after the driver
is killed or stopped, and one-line errors for bad settings."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, cli_env
from ftscale.errors import SpecError, UserError
from ftscale.study import slurm
from ftscale.study.driver import run_study
from ftscale.study.executors import JobContext, Outcome
from ftscale.study.plan import build_plan
from ftscale.study.slurm import SLURM_BOOK, SLURM_CLUSTER_ENV, SLURM_DIR, run_slurm_task, scheduler_outcome
from ftscale.study.spec import parse_spec
from ftscale.study.store import Store
from test_study_fakes import crash_once_job, failing_job, fake_job
from test_study_spec import BASE

# 11 jobs: a tokenizer, two pretraining runs, then two baselines and six finetuning runs that can all run at once
MINI: dict[str, Any] = copy.deepcopy(BASE)
MINI["methods"] = {"fmt": {"lr": 1e-3}, "lora": {"lora_rank": 4}}
MINI["factors"] = {"model_size": ["xs", "s"], "ft_sizes": {"fmt": [10, 20], "lora": [10]}, "seeds": 1}
MINI["execution"] = {"cpus_per_job": 2, "slurm": {"partition": "test", "time_min": 30, "mem_gb": 1}}
SCHEDULER_ENV = "FAKE_SCHEDULER"  # scheduler_job: what the first finetuning jobs do to themselves


def mini(**slurm: Any) -> Any:
    raw = copy.deepcopy(MINI)
    raw["execution"]["slurm"].update(slurm)
    return parse_spec(raw)


def _lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def _count(log: Path, word: str) -> Counter[str]:
    return Counter(parts[1] for parts in _lines(log) if parts[0] == word)


def _rows(study_dir: Path) -> dict[str, dict[str, Any]]:
    with Store.open(study_dir) as store:
        return {row["id"]: row for row in store.rows()}


def _book(study_dir: Path) -> dict[str, Any]:
    return json.loads((study_dir / SLURM_DIR / SLURM_BOOK).read_text())["jobs"]


@pytest.fixture
def local_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tasks on submitit's local executor; they import the fake job functions from tests/; the log is
    ``tmp_path/log``."""
    monkeypatch.setenv(SLURM_CLUSTER_ENV, "local")
    monkeypatch.setenv("PYTHONPATH", f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT / 'tests'}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("FAKE_MARKER_DIR", str(tmp_path))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # nothing may be written here
    return tmp_path / "log"


def scheduler_job(ctx: JobContext) -> dict[str, Any]:
    """The first finetuning jobs, on their first attempt, do what $FAKE_SCHEDULER lists (comma-separated), one
    each: 'timeout' (the warning signal of a time limit: submitit stops the job), 'lost' (the job's controller
    dies with it, as when a node goes away), 'preempt' (the preemption signal: submitit requeues the job)."""
    if ctx.kind == "finetune" and ctx.attempt == 1:
        for event in os.environ.get(SCHEDULER_ENV, "").split(","):
            try:
                fd = os.open(
                    Path(os.environ["FAKE_MARKER_DIR"]) / event, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                )
            except FileExistsError:
                continue
            os.write(fd, ctx.job_id.encode())
            os.close(fd)
            if event == "lost":
                os.kill(os.getppid(), signal.SIGKILL)
                os._exit(1)
            os.kill(os.getpid(), signal.SIGUSR2)  # submitit's handler raises (timeout) or requeues (preempt)
            time.sleep(30)
            raise AssertionError("the scheduler's signal did not stop the job")
    return fake_job(ctx)


# --- (1) the same results as a sequential run, arrays, logs under DIR/.slurm --------------------------------


def test_slurm_backend_gives_the_sequential_results(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import submitit

    from test_study_run import results

    batches: list[int] = []
    submit_batch = submitit.AutoExecutor._internal_process_submissions

    def recording(self: Any, delayed: list[Any]) -> Any:
        batches.append(len(delayed))
        return submit_batch(self, delayed)

    monkeypatch.setattr(submitit.AutoExecutor, "_internal_process_submissions", recording)
    plan = build_plan(mini())
    summary = run_study(mini(), tmp_path / "study", fake_job, backend="slurm", progress=False)
    assert summary.done == summary.total == len(plan.jobs) == 11 and summary.failed == 0
    rows = _rows(tmp_path / "study")
    assert all(row["status"] == "done" and row["attempts"] == 1 for row in rows.values())
    assert {row["environment"]["threads"] for row in rows.values()} == {2}  # execution.cpus_per_job
    assert set(_count(local_slurm, "end").values()) == {1}
    # the ready jobs go together: the tokenizer, then both pretraining runs, then what they unlock
    assert batches[:2] == [1, 2] and sum(batches) == 11 and max(batches) > 2
    # submitit's files are in DIR/.slurm, nothing in the working directory, and no job is left recorded
    assert len(list((tmp_path / "study" / SLURM_DIR).glob("*_log.err"))) == 11
    assert not any((tmp_path / "cwd").iterdir()) and _book(tmp_path / "study") == {}

    monkeypatch.delenv("FAKE_LOG")
    run_study(mini(), tmp_path / "reference", fake_job, progress=False)
    import pandas as pd

    pd.testing.assert_frame_equal(results(tmp_path / "study"), results(tmp_path / "reference"))


# --- (2) a task whose process dies is retried and counted once ---------------------------------------------


def test_a_dead_task_is_retried_and_counted_once(tmp_path: Path, local_slurm: Path) -> None:
    summary = run_study(
        mini(), tmp_path / "study", crash_once_job, backend="slurm", workers=4, progress=False
    )
    assert summary.done == summary.total and summary.failed == 0
    crashed = (tmp_path / "crashed").read_text()
    rows = _rows(tmp_path / "study")
    assert rows[crashed]["attempts"] == 2 and rows[crashed]["failures"] == 1
    assert all(row["attempts"] == 1 for job_id, row in rows.items() if job_id != crashed)
    assert _count(local_slurm, "end") == dict.fromkeys(rows, 1)


# --- (3) a job failing with an error: retried, then failed with its reason, dependants blocked ----------------


def test_a_failing_job_is_retried_then_failed_and_blocks_its_dependants(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = build_plan(mini())
    broken = next(job for job in plan.jobs if job.kind == "pretrain" and job.axes["model_size"] == "s")
    flaky = next(job for job in plan.jobs if job.kind == "finetune" and broken.id not in job.deps)
    monkeypatch.setenv("FAKE_FAIL", json.dumps({broken.id: -1, flaky.id: 1}))
    summary = run_study(
        mini(), tmp_path / "study", failing_job, backend="slurm", max_retries=2, progress=False
    )
    dependants = [job.id for job in plan.jobs if broken.id in job.deps]
    assert dependants and set(summary.failed_jobs) == {broken.id, *dependants}
    rows = _rows(tmp_path / "study")
    assert rows[broken.id]["attempts"] == 3 and rows[broken.id]["failures"] == 3
    assert rows[broken.id]["reason"] == "RuntimeError: planned failure on attempt 3"
    assert all("dependency" in rows[d]["reason"] and rows[d]["attempts"] == 0 for d in dependants)
    assert rows[flaky.id]["status"] == "done" and rows[flaky.id]["attempts"] == 2
    assert _book(tmp_path / "study") == {}


# --- (4) a killed or stopped driver: nothing runs twice -----------------------------------------------------


def _cli(tmp_path: Path, study_dir: Path, job_fn: str, sleep: str) -> tuple[list[str], dict[str, str]]:
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(MINI))
    env = cli_env()
    env.update(FTSCALE_JOB_FN=job_fn, FAKE_SLEEP=sleep)
    command = [sys.executable, "-m", "ftscale", "study", "run", str(spec_file), "--dir", str(study_dir)]
    return [*command, "--backend", "slurm", "--workers", "4", "--no-progress"], env


def _start_and_stop(command: list[str], env: dict[str, str], log: Path, sig: int) -> subprocess.Popen[str]:
    """Start a run and send it ``sig`` while both pretraining jobs run (as tasks of one array)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_count(log, "start")) < 3:  # the tokenizer, then the two pretraining jobs
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(_count(log, "end")) == 1
    process.send_signal(sig)
    process.wait(timeout=60)
    return process


def test_a_killed_driver_leaves_its_jobs_running_and_the_next_run_adopts_them(
    tmp_path: Path, local_slurm: Path
) -> None:
    study_dir = tmp_path / "study"
    command, env = _cli(tmp_path, study_dir, "test_study_fakes:fake_job", "0.6")  # pretraining 3 s
    _start_and_stop(command, env, local_slurm, signal.SIGKILL)
    rows = _rows(study_dir)
    running = sorted(job_id for job_id, row in rows.items() if row["status"] == "running")
    assert len(running) == 2 and set(_book(study_dir)) == set(running)
    # one of them is reset meanwhile: its task must be stopped, not left to write beside the rerun's attempt
    reset, adopted = running
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "reset", str(study_dir), reset[:12]],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert "1 job(s) submitted by an earlier run" in final.stderr
    rows = _rows(study_dir)
    assert all(row["status"] == "done" for row in rows.values())
    assert rows[adopted]["attempts"] == 1  # followed, not submitted again
    assert _count(local_slurm, "start") == {**dict.fromkeys(rows, 1), reset: 2}
    # the reset job's first task was stopped and never ended; only on a slow machine may it have ended before
    # the rerun looked (then there was nothing to stop), but never after the rerun's own attempt started
    lines = _lines(local_slurm)
    rerun_start = next(i for i, parts in enumerate(lines) if parts[:3] == ["start", reset, "2"])
    ends = [i for i, parts in enumerate(lines) if parts == ["end", reset]]
    if "cancelling 1 local job(s)" in final.stderr:
        assert len(ends) == 1 and ends[0] > rerun_start
    else:
        assert len(ends) == 2 and ends[0] < rerun_start
    assert _count(local_slurm, "end") == {**dict.fromkeys(rows, 1), reset: len(ends)}
    assert _book(study_dir) == {}


def test_jobs_submitted_by_a_driver_killed_before_it_recorded_them_are_found(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_dir = tmp_path / "study"
    # the tokenizer job 'a' takes 0.5 s, the pretraining job 'b' 2.5 s
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    first = slurm.SlurmExecutor(study_dir, 1, mini().execution)
    for job_id, kind, params in (
        ("a", "tokenizer", {"tokenizer": {"vocab_size": 256}}),
        ("b", "pretrain", {"size": "s"}),
    ):
        ctx = JobContext(job_id * 64, kind, params, {}, study_dir, study_dir / "jobs" / job_id, attempt=1)
        first.submit(fake_job, ctx, {})
    saves = []

    def killed_after_the_intent() -> None:
        saves.append(1)
        if len(saves) == 2:  # the jobs are submitted, their ids not yet recorded: the driver dies here
            raise KeyboardInterrupt
        slurm._Book.save(first._book)

    monkeypatch.setattr(first._book, "save", killed_after_the_intent)
    with pytest.raises(KeyboardInterrupt):
        first.wait(0.0)
    assert {entry["submitit_id"] for entry in _book(study_dir).values()} == {None}
    # the next driver finds both in submitit's job files: one its store shows running is followed to its end,
    # the other (its row was reset meanwhile) is stopped
    second = slurm.SlurmExecutor(study_dir, 1, mini().execution)
    assert second.adopt({"a" * 64: 1}) == ["a" * 64]
    deadline = time.monotonic() + 60
    ended: list[tuple[str, Outcome]] = []
    while not ended and time.monotonic() < deadline:
        ended = second.wait(1.0)
    assert [(job_id, outcome.ok) for job_id, outcome in ended] == [("a" * 64, True)]
    second.recorded("a" * 64)
    assert _book(study_dir) == {}
    time.sleep(2.5)  # 'b' would have ended by now
    assert _count(local_slurm, "end") == {"a" * 64: 1}


def test_a_stopped_driver_cancels_its_jobs(tmp_path: Path, local_slurm: Path) -> None:
    study_dir = tmp_path / "study"
    command, env = _cli(tmp_path, study_dir, "test_study_fakes:fake_job", "0.4")  # pretraining 2 s
    stopped = _start_and_stop(command, env, local_slurm, signal.SIGINT)
    assert stopped.returncode == 130
    assert _book(study_dir) == {}  # both tasks were cancelled and seen gone
    pretrain = [job_id for job_id, row in _rows(study_dir).items() if row["kind"] == "pretrain"]
    assert all(_rows(study_dir)[job_id]["status"] == "pending" for job_id in pretrain)
    # the rerun runs them again; a cancelled attempt that went on would end before the rerun's (and twice)
    final = subprocess.run(
        [*command, "--until", "pretrain"], env=env, capture_output=True, text=True, timeout=120
    )
    assert final.returncode == 0, final.stderr
    rows = {
        job_id: row for job_id, row in _rows(study_dir).items() if row["kind"] in ("tokenizer", "pretrain")
    }
    assert all(row["status"] == "done" for row in rows.values())
    assert all(rows[job_id]["attempts"] == 2 and rows[job_id]["failures"] == 0 for job_id in pretrain)
    assert all(_count(local_slurm, "start")[job_id] == 2 for job_id in pretrain)
    assert _count(local_slurm, "end") == dict.fromkeys(rows, 1)


# --- (5) time limits, preemption and lost jobs ------------------------------------------------------------


def _scheduler_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviours: str, time_min: int
) -> dict[str, dict[str, Any]]:
    """Run the mini study on the Slurm backend with the first finetuning jobs doing ``behaviours`` to themselves;
    every job must end done. The store's rows by job id."""
    monkeypatch.setenv(SCHEDULER_ENV, behaviours)
    summary = run_study(
        mini(time_min=time_min), tmp_path / "s", scheduler_job, backend="slurm", workers=4, progress=False
    )
    assert summary.done == summary.total and summary.failed == 0
    return _rows(tmp_path / "s")


def test_a_timed_out_job_is_retried_and_a_lost_one_resubmitted_without_counting(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # time_min 1: submitit takes the warning signal for the time limit (with 60 min it would be a preemption)
    rows = _scheduler_run(tmp_path, monkeypatch, "timeout,lost", time_min=1)
    timed_out, lost = (tmp_path / "timeout").read_text(), (tmp_path / "lost").read_text()
    assert rows[timed_out]["attempts"] == 2 and rows[timed_out]["failures"] == 1
    assert rows[lost]["attempts"] == 2 and rows[lost]["failures"] == 0
    assert _count(local_slurm, "end") == dict.fromkeys(rows, 1)


def test_a_preempted_job_is_requeued_by_submitit_as_the_same_attempt(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _scheduler_run(tmp_path, monkeypatch, "preempt", time_min=60)
    preempted = (tmp_path / "preempt").read_text()
    assert rows[preempted]["attempts"] == 1 and rows[preempted]["failures"] == 0
    assert _count(local_slurm, "end") == dict.fromkeys(rows, 1)


def test_scheduler_states_map_to_retries() -> None:
    where = "Slurm job 77_3, log /d/.slurm/77_3_0_log.err"
    timeout = scheduler_outcome("TIMEOUT", where, 90)
    assert (
        timeout.crashed and not timeout.lost and "after 90 min" in timeout.reason and where in timeout.reason
    )
    assert "execution.slurm.mem_gb" in scheduler_outcome("OUT_OF_MEMORY", where, 90).reason
    for state in ("PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "VANISHED"):
        lost = scheduler_outcome(state, where, 90)
        assert lost.crashed and lost.lost and where in lost.reason
    for state in ("FAILED", "CANCELLED", "COMPLETED"):
        outcome = scheduler_outcome(state, where, 90)
        assert outcome.crashed and not outcome.lost and where in outcome.reason
    assert all("\n" not in scheduler_outcome(s, where, 1).reason for s in ("TIMEOUT", "FAILED", "NODE_FAIL"))


def test_a_task_stopped_by_submitit_at_its_time_limit_is_a_crash(tmp_path: Path) -> None:
    from submitit.core.utils import UncompletedJobError

    def stopped(ctx: JobContext) -> dict[str, Any]:
        raise UncompletedJobError("Job not requeued because: timed-out and not checkpointable.")

    ctx = JobContext("j", "finetune", {}, {}, tmp_path, tmp_path / "w", threads=3)
    outcome = run_slurm_task(stopped, ctx)
    assert outcome.crashed and not outcome.ok and os.environ["OMP_NUM_THREADS"] == "3"
    assert run_slurm_task(lambda ctx: {"loss": 1.0}, ctx).ok


class _FakeSlurmJob:
    """A submitit SlurmJob stand-in: sacct reports ``states`` one after another (the last one stays)."""

    def __init__(self, tmp_path: Path, states: list[str]) -> None:
        self.job_id = "77_3"
        self.paths = SimpleNamespace(result_pickle=tmp_path / "none.pkl", stderr=tmp_path / "77_3_0_log.err")
        self.states = states
        self.cancelled = False
        self.watcher = SimpleNamespace(get_state=self._state)

    def _state(self, job_id: str, mode: str = "standard") -> str:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def cancel(self, check: bool = True) -> None:
        self.cancelled = True


def test_a_preempted_vanished_or_timed_out_slurm_job_is_judged_by_its_state(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = slurm.SlurmExecutor(tmp_path / "s", 1, mini().execution)
    backend.cluster, backend.word, backend._grace_seconds = "slurm", "Slurm job", 0.0

    def check(states: list[str], now: float = 0.0) -> tuple[Outcome | None, _FakeSlurmJob]:
        job = _FakeSlurmJob(tmp_path, states)
        return backend._check(slurm._Submitted("j", 1, job), now), job

    assert check(["RUNNING"])[0] is None
    # still preempted when looked at again: lost, resubmitted (and cancelled, should Slurm requeue it late)
    outcome, job = check(["PREEMPTED", "PREEMPTED"])
    assert outcome is not None and outcome.lost and "77_3" in outcome.reason and job.cancelled
    outcome, job = check(["PREEMPTED", "PENDING"])  # requeued by Slurm meanwhile: still in flight
    assert outcome is None and not job.cancelled
    outcome, _ = check(["TIMEOUT"])
    assert outcome is not None and outcome.crashed and not outcome.lost and "time_min" in outcome.reason
    # a job that Slurm's accounting stops listing is lost once others were seen; never seen any: a user error
    monkeypatch.setattr(slurm, "SLURM_VANISH_SECONDS", 5.0)
    submitted = slurm._Submitted("j", 1, _FakeSlurmJob(tmp_path, ["UNKNOWN"]))
    backend._states_seen = False
    assert backend._check(submitted, 0.0) is None
    with pytest.raises(UserError, match="sacct"):
        backend._check(submitted, 10.0)
    backend._states_seen = True
    outcome = backend._check(submitted, 10.0)
    assert outcome is not None and outcome.lost and "vanished" in outcome.reason


# --- (6) one-line errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slurm", "expected"),
    [
        ({"time_min": 0}, "execution.slurm.time_min: must be > 0 (got 0)"),
        ({"partiton": "gpu"}, "execution.slurm.partiton: unknown key (did you mean 'partition'?)"),
        ({"mem_gb": -1}, "execution.slurm.mem_gb: must be > 0"),
        ({"partition": ""}, "execution.slurm.partition: string should have at least 1 character"),
        ({"additional_parameters": {"time": 5}}, "--time cannot be given here: set execution.slurm.time_min"),
        ({"additional_parameters": {"output": "x"}}, "ftscale sets it itself"),
        ({"additional_parameters": {"ntasks_per_node": 2}}, "--ntasks-per-node cannot be given here"),
        ({"additional_parameters": {"mail-type": [1]}}, "give a text, a number or true"),
        ({"gpus_per_node": 1, "partition": "cpu"}, "execution.slurm.gpus_per_node: must be 0 when"),
    ],
)
def test_bad_slurm_settings_are_one_line(slurm: dict[str, Any], expected: str) -> None:
    raw = copy.deepcopy(MINI)
    raw["execution"] = {"device": "cpu", "slurm": slurm}
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert expected in str(info.value) and len(str(info.value).splitlines()) == 1


def test_slurm_defaults_come_from_the_execution_section() -> None:
    raw = copy.deepcopy(MINI)
    raw["execution"] = {"cpus_per_job": 4, "gpus_per_job": 0.5}
    resources = parse_spec(raw).execution.slurm_resources()
    assert (resources.cpus_per_task, resources.gpus_per_node, resources.time_min) == (4, 1, 60)


def test_backend_slurm_errors_are_one_line(
    tmp_path: Path, local_slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def error(**kwargs: Any) -> str:
        with pytest.raises(UserError) as info:
            run_study(mini(), tmp_path / "s", fake_job, progress=False, **kwargs)
        assert len(str(info.value).splitlines()) == 1
        return str(info.value)

    assert "choose one of local, ray, slurm" in error(backend="sge")
    assert "--address is only used with --backend ray" in error(backend="slurm", address="h:1")
    monkeypatch.setenv(SLURM_CLUSTER_ENV, "pbs")
    assert f"${SLURM_CLUSTER_ENV}='pbs'" in error(backend="slurm")
    monkeypatch.setenv(SLURM_CLUSTER_ENV, "local")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "submitit", None)  # not installed
        assert "pip install 'ftscale[slurm]'" in error(backend="slurm")
    # a Slurm run's jobs may outlive it: another backend refuses to start beside them
    book = tmp_path / "s" / SLURM_DIR / SLURM_BOOK
    book.parent.mkdir(parents=True, exist_ok=True)
    book.write_text(json.dumps({"cluster": "slurm", "jobs": {"x": {"attempt": 1, "submitit_id": "12_0"}}}))
    assert "rerun with --backend slurm" in error(backend="local") and "12_0" in error(backend="local")


def test_no_slurm_here_is_one_line(tmp_path: Path) -> None:
    import shutil

    if shutil.which("srun"):
        pytest.skip("Slurm is installed here")
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(MINI))
    env = cli_env()
    env.pop(SLURM_CLUSTER_ENV, None)
    env["FTSCALE_JOB_FN"] = "test_study_fakes:fake_job"
    env["PYTHONPATH"] += os.pathsep + str(REPO_ROOT / "tests")
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "run", str(spec_file), "--dir", str(tmp_path / "s"),
         "--backend", "slurm"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Slurm is not available here" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
