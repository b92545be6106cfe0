"""Reliability of the installed ``ftscale`` command: exit codes, usage errors, damaged stores, concurrent runs,
orphan workers, deleted job outputs, reset and retry. Every CLI check runs the console script in a subprocess,
as a user or a CI script would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, cli_env
from ftscale.errors import EXIT_INTERRUPTED, EXIT_JOBS_FAILED, EXIT_USAGE, UserError
from ftscale.study.driver import run_study
from ftscale.study.executors import live_workers, wait_for_workers
from ftscale.study.plan import build_plan, job_dir_name
from ftscale.study.spec import parse_spec
from ftscale.study.store import Store
from test_study_fakes import fake_job
from test_study_run import SMALL


def ftscale_script() -> str:
    """The installed console script (beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("ftscale")
    found = str(beside) if beside.is_file() else shutil.which("ftscale")
    if found is None:
        pytest.skip("the ftscale console script is not installed (pip install -e .)")
    return found


def env_with_fakes(**extra: str) -> dict[str, str]:
    env = cli_env()
    env["PYTHONPATH"] += os.pathsep + str(REPO_ROOT / "tests")
    env["FTSCALE_JOB_FN"] = env.get("FTSCALE_JOB_FN", "test_study_fakes:fake_job")
    env.update(extra)
    return env


def ftscale(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ftscale_script(), *args],
        capture_output=True,
        text=True,
        env=env or env_with_fakes(),
        timeout=timeout,
    )


def spec_file(tmp_path: Path, spec: dict[str, Any] | None = None, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec or SMALL))
    return path


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


def log_lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, (
            f"the run ended early: {process.stderr.read() if process.stderr else ''}"
        )
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# ----- 1 · exit codes ---------------------------------------------------------------------------------------


def test_a_study_with_failed_jobs_exits_3_and_lists_labels(tmp_path: Path) -> None:
    plan = build_plan(parse_spec(SMALL))
    doomed = next(job for job in plan.jobs if job.kind == "finetune")
    env = env_with_fakes(FTSCALE_JOB_FN="test_study_fakes:failing_job", FAKE_FAIL=json.dumps({doomed.id: -1}))
    args = ("study", "run", str(spec_file(tmp_path)), "--dir", str(tmp_path / "s"), "--no-progress")
    done = ftscale(*args, "--max-retries", "0", env=env)
    assert done.returncode == EXIT_JOBS_FAILED, done.stdout + done.stderr
    assert "1 failed" in done.stdout and f"{doomed.label} ({doomed.id[:12]})" in done.stderr
    no_traceback(done)
    # fixed: the rerun retries it (it failed with an error) and the code is 0
    done = ftscale(*args, env=env_with_fakes())
    assert done.returncode == 0, done.stderr


def test_ctrl_c_prints_one_line_exits_130_and_is_not_a_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    env = env_with_fakes(FAKE_LOG=str(log), FAKE_SLEEP="30")
    process = subprocess.Popen(
        [
            ftscale_script(),
            "study",
            "run",
            str(spec_file(tmp_path)),
            "--dir",
            str(tmp_path / "s"),
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: any(parts[0] == "start" for parts in log_lines(log)), process)
    running = next(parts[1] for parts in log_lines(log) if parts[0] == "start")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED
    assert "interrupted; rerun the same command to resume" in stderr and "Traceback" not in stderr
    with Store.open(tmp_path / "s") as store:
        row = next(row for row in store.rows() if row["id"] == running)
    assert row["status"] == "pending" and row["failures"] == 0  # like a kill -9: not counted as a failure


# ----- 2 · usage errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (("study", "run", "tiny"), "Missing option '--dir'"),
        (("fit", "x.csv", "--bogus", "1"), "No such option: --bogus"),
        (("frobnicate",), "No such command 'frobnicate'"),
        (("study", "run", "tiny", "--dir", "d", "--workers", "many"), "Invalid value for '--workers'"),
    ],
)
def test_usage_errors_are_one_message_and_exit_2(args: tuple[str, ...], says: str) -> None:
    done = ftscale(*args)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert says in done.stderr and "Usage: ftscale" in done.stderr
    no_traceback(done)


def test_help_exits_0() -> None:
    done = ftscale("study", "run", "--help")
    assert done.returncode == 0 and "--retry-failed" in done.stdout


# ----- 3 · damaged stores ------------------------------------------------------------------------------------


def _damage(study_dir: Path, how: str) -> None:
    db = study_dir / "study.sqlite"
    if how == "empty":
        db.write_bytes(b"")
    elif how == "not sqlite":
        db.write_text("this is not a database\n" * 10)
    elif how == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    elif how == "not a study":
        import sqlite3

        db.unlink()
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE other (x)")
        conn.commit()
        conn.close()


@pytest.mark.parametrize("how", ["empty", "not sqlite", "truncated", "not a study"])
def test_a_damaged_store_is_one_line_for_every_command_and_never_restarted(tmp_path: Path, how: str) -> None:
    study_dir = tmp_path / "s"
    run_study(parse_spec(SMALL), study_dir, fake_job, progress=False)
    for leftover in study_dir.glob("study.sqlite-*"):  # a closed store has no WAL left, but be sure
        leftover.unlink()
    _damage(study_dir, how)
    before = (study_dir / "study.sqlite").read_bytes()
    spec = str(spec_file(tmp_path))
    for args in (
        ("study", "status", str(study_dir)),
        ("study", "export", str(study_dir), "--out", str(tmp_path / "out.csv")),
        ("report", str(study_dir), "--out", str(tmp_path / "report"), "--bootstrap", "0"),
        ("study", "run", spec, "--dir", str(study_dir), "--no-progress"),
    ):
        done = ftscale(*args)
        assert done.returncode == EXIT_USAGE, (args, done.stdout, done.stderr)
        assert str(study_dir / "study.sqlite") in done.stderr, done.stderr
        no_traceback(done)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (study_dir / "study.sqlite").read_bytes() == before  # nothing started over
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "report").exists()


def test_an_older_store_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    study_dir = tmp_path / "s"
    run_study(parse_spec(SMALL), study_dir, fake_job, progress=False)
    conn = sqlite3.connect(study_dir / "study.sqlite")
    for column in ("failure_kind", "outputs"):
        conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    conn.commit()
    conn.close()
    summary = run_study(parse_spec(SMALL), study_dir, fake_job, progress=False)
    assert summary.executed == 0 and summary.done == summary.total  # outputs of old stores: dir check


# ----- 8 · an unusable study directory ------------------------------------------------------------------------


def test_an_unwritable_study_directory_is_one_line_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = ftscale("study", "run", str(spec_file(tmp_path)), "--dir", str(blocker / "study"), "--no-progress")
    assert done.returncode == EXIT_USAGE and "cannot write the study directory" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    no_traceback(done)


# ----- 4 · a refused concurrent --force run changes nothing ---------------------------------------------------


def test_a_refused_concurrent_run_leaves_the_study_as_it_was(tmp_path: Path) -> None:
    log = tmp_path / "log"
    study_dir = tmp_path / "s"
    spec_a = spec_file(tmp_path)
    other = json.loads(json.dumps(SMALL))
    other["factors"]["seeds"] = 3
    spec_b = spec_file(tmp_path, other, name="other.yaml")
    env = env_with_fakes(FAKE_LOG=str(log), FAKE_SLEEP="1")
    first = subprocess.Popen(
        [ftscale_script(), "study", "run", str(spec_a), "--dir", str(study_dir), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: any(parts[0] == "start" for parts in log_lines(log)), first)
    spec_text = (study_dir / "study.yaml").read_text()
    refused = ftscale(
        "study", "run", str(spec_b), "--dir", str(study_dir), "--force", "--no-progress", env=env
    )
    assert refused.returncode == EXIT_USAGE and "already being run by pid" in refused.stderr
    assert first.poll() is None, "the first run must still be running for this test to mean anything"
    assert (study_dir / "study.yaml").read_text() == spec_text
    first.communicate(timeout=120)
    assert first.returncode == 0
    status = ftscale("study", "status", str(study_dir))
    total = len(build_plan(parse_spec(SMALL)).jobs)
    assert f"{total} jobs" in " ".join(status.stdout.split())
    again = ftscale("study", "run", str(spec_a), "--dir", str(study_dir), "--no-progress", env=env)
    assert again.returncode == 0 and "(0 attempts in this run)" in again.stdout, again.stderr


# ----- 5 · workers die with their driver, and a new run never runs beside one ----------------------------------


def test_workers_die_with_a_killed_driver_and_the_rerun_completes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    study_dir = tmp_path / "s"
    env = env_with_fakes(FAKE_LOG=str(log), FAKE_SLEEP="20")
    command = [ftscale_script(), "study", "run", str(spec_file(tmp_path)), "--dir", str(study_dir)]
    driver = subprocess.Popen(
        [*command, "--workers", "2", "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: any(parts[0] == "start" for parts in log_lines(log)), driver)
    workers = {int(parts[3]) for parts in log_lines(log) if parts[0] == "start"}
    assert driver.pid not in workers
    driver.send_signal(signal.SIGKILL)  # the driver alone, not its process group
    driver.wait()
    # Every worker of the pool, also one still starting up (holding its lock, no job begun yet), dies within
    # moments of its driver: the kernel's parent-death signal, or the watcher thread within half a second.
    deadline = time.monotonic() + 10
    while (any(pid_alive(pid) for pid in workers) or live_workers(study_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in workers), "a worker outlived its driver"
    assert live_workers(study_dir) == [], "a worker of the pool outlived its driver"
    done = subprocess.run(
        [*command, "--workers", "2", "--no-progress"],
        env=env_with_fakes(FAKE_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ends = [parts[1] for parts in log_lines(log) if parts[0] == "end"]
    assert len(ends) == len(set(ends)) == len(build_plan(parse_spec(SMALL)).jobs)


def test_a_run_waits_for_live_workers_of_an_earlier_run_and_refuses_if_they_stay(tmp_path: Path) -> None:
    study_dir = tmp_path / "s"
    study_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ftscale.study.executors import _register_worker; "
            "_register_worker(sys.argv[1]); print('ready', flush=True); time.sleep(60)",
            str(study_dir),
        ],
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert live_workers(study_dir) == [holder.pid]
        with pytest.raises(UserError, match=f"pids {holder.pid}"):
            wait_for_workers(study_dir, timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
    wait_for_workers(study_dir, timeout=5)  # the lock died with its holder
    assert not list((study_dir / ".workers").glob("*.lock"))  # and its stale file is gone


# ----- 7 · deleted outputs, reset ------------------------------------------------------------------------------


def test_a_deleted_dependency_directory_is_detected_and_rerun(tmp_path: Path) -> None:
    spec = parse_spec(SMALL)
    plan = build_plan(spec)
    study_dir = tmp_path / "s"
    run_study(spec, study_dir, fake_job, progress=False, until="pretrain")
    pretrain = next(job for job in plan.jobs if job.kind == "pretrain")
    shutil.rmtree(study_dir / "jobs" / job_dir_name(pretrain))
    notes: list[str] = []
    summary = run_study(spec, study_dir, fake_job, progress=False, notify=notes.append)
    assert summary.failed == 0 and summary.done == summary.total, summary.failed_jobs
    assert any(pretrain.label in note and "runs again" in note for note in notes)
    # a whole study whose outputs are intact: nothing is rerun and nothing is reported
    notes.clear()
    assert run_study(spec, study_dir, fake_job, progress=False, notify=notes.append).executed == 0
    assert notes == []


def test_a_changed_output_file_is_detected(tmp_path: Path) -> None:
    spec = parse_spec(SMALL)
    study_dir = tmp_path / "s"
    run_study(spec, study_dir, fake_job, progress=False, until="pretrain")
    pretrain = next(job for job in build_plan(spec).jobs if job.kind == "pretrain")
    (study_dir / "jobs" / job_dir_name(pretrain) / "artifact.json").write_text("{}")  # truncated by hand
    notes: list[str] = []
    run_study(spec, study_dir, fake_job, progress=False, notify=notes.append)
    assert any("changed size" in note for note in notes)


def test_reset_invalidates_a_job_and_its_dependants(tmp_path: Path) -> None:
    spec = parse_spec(SMALL)
    plan = build_plan(spec)
    study_dir = tmp_path / "s"
    run_study(spec, study_dir, fake_job, progress=False)
    pretrain = next(job for job in plan.jobs if job.kind == "pretrain" and job.axes["model_size"] == "s")
    dependants = {job.id for job in plan.jobs if pretrain.id in job.deps}
    done = ftscale("study", "reset", str(study_dir), pretrain.label)
    assert done.returncode == 0, done.stderr
    assert f"{1 + len(dependants)} job(s) reset" in done.stdout
    assert not (study_dir / "jobs" / job_dir_name(pretrain)).exists()
    with Store.open(study_dir) as store:
        rows = {row["id"]: row for row in store.rows()}
    assert all(
        rows[i]["status"] == "pending" and rows[i]["metrics"] is None for i in {pretrain.id, *dependants}
    )
    summary = run_study(spec, study_dir, fake_job, progress=False)
    assert summary.executed == 1 + len(dependants) and summary.done == summary.total
    unknown = ftscale("study", "reset", str(study_dir), "no such job")
    assert unknown.returncode == EXIT_USAGE and "no job matches" in unknown.stderr
    no_traceback(unknown)


# ----- 10 · final failures are rerun only on request -------------------------------------------------------------


def test_a_final_failure_is_kept_by_a_rerun_and_retried_with_retry_failed(tmp_path: Path) -> None:
    from ftscale.study.executors import FinalFailure

    spec = parse_spec(SMALL)
    doomed = next(job for job in build_plan(spec).jobs if job.kind == "finetune")
    calls: list[str] = []

    def diverging(ctx: Any) -> dict[str, Any]:
        calls.append(ctx.job_id)
        if ctx.job_id == doomed.id:
            raise FinalFailure("failed: diverged at step 7")
        return fake_job(ctx)

    first = run_study(spec, tmp_path / "s", diverging, progress=False)
    assert first.final == {doomed.id} and first.labels[doomed.id] == doomed.label
    calls.clear()
    again = run_study(spec, tmp_path / "s", diverging, progress=False)
    assert calls == [] and again.failed == 1 and again.final == {doomed.id}
    retried = run_study(spec, tmp_path / "s", fake_job, progress=False, retry_failed=True)
    assert retried.executed == 1 and retried.failed == 0
