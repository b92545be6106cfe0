"""Crash safety: SIGKILL a running study at several points, resume, and get every job done exactly once with
the same results as an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from conftest import REPO_ROOT, cli_env
from ftscale.study.driver import run_study
from ftscale.study.plan import build_plan
from ftscale.study.spec import parse_spec
from ftscale.study.store import Store
from test_study_fakes import fake_job
from test_study_run import SMALL, results


def _log_lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def _running_job(log: Path) -> str | None:
    """The job that has started and not ended (the run is sequential)."""
    open_jobs = [parts[1] for parts in _log_lines(log) if parts[0] == "start"]
    ended = {parts[1] for parts in _log_lines(log) if parts[0] == "end"}
    unfinished = [job for job in open_jobs if job not in ended]
    return unfinished[-1] if unfinished else None


def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(SMALL))
    plan = build_plan(parse_spec(SMALL))
    kinds = {job.id: job.kind for job in plan.jobs}
    study_dir, log = tmp_path / "study", tmp_path / "log"
    env = cli_env()
    env.update(
        PYTHONPATH=env["PYTHONPATH"] + os.pathsep + str(REPO_ROOT / "tests"),
        FTSCALE_JOB_FN="test_study_fakes:fake_job",
        FAKE_LOG=str(log),
        FAKE_SLEEP="0.04",
    )
    command = [
        sys.executable,
        "-m",
        "ftscale",
        "study",
        "run",
        str(spec_file),
        "--dir",
        str(study_dir),
        "--no-progress",
    ]
    rng = random.Random(1234)
    excused: set[str] = set()

    def kill_when(condition: Callable[[], bool], extra_delay: float) -> None:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not condition():
            assert process.poll() is None, f"run ended before the kill point: {process.stderr.read()!r}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(extra_delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # a job whose function returned but whose result was not yet committed legitimately runs again
        lines = _log_lines(log)
        if lines and lines[-1][0] == "end":
            with Store.open(study_dir) as store:
                if store.statuses().get(lines[-1][1]) != "done":
                    excused.add(lines[-1][1])

    def started(kind: str) -> Callable[[], bool]:
        return lambda: (job := _running_job(log)) is not None and kinds.get(job) == kind

    kill_when(started("pretrain"), 0.05)  # during a pretraining job
    interrupted_pretrain = _running_job(log)
    kill_when(started("finetune"), rng.uniform(0.0, 0.03))  # mid-run, inside a finetuning job
    ends_before = len([p for p in _log_lines(log) if p[0] == "end"])
    kill_when(
        lambda: len([p for p in _log_lines(log) if p[0] == "end"]) >= ends_before + 3, 0.0
    )  # between jobs
    kill_when(lambda: True, rng.uniform(0.8, 1.5))  # anywhere (including interpreter start-up)

    status = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "status", str(study_dir)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr

    with Store.open(study_dir) as store:
        rows = {row["id"]: row for row in store.rows()}
    assert set(rows) == set(kinds) and all(row["status"] == "done" for row in rows.values())
    completions = Counter(parts[1] for parts in _log_lines(log) if parts[0] == "end")
    for job_id in kinds:
        assert completions[job_id] == 1 or (job_id in excused and completions[job_id] == 2), job_id
    assert interrupted_pretrain is not None and rows[interrupted_pretrain]["attempts"] == 2

    reference = tmp_path / "reference"
    run_study(parse_spec(SMALL), reference, fake_job, progress=False)
    pd.testing.assert_frame_equal(results(study_dir), results(reference))
    metrics = [json.loads(m) for m in results(study_dir)["metrics"]]
    assert all(m for m in metrics)
