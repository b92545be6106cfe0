"""The Ray backend against a real local Ray cluster (loopback), including a worker that dies mid-job."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT, cli_env
from ftscale.study.driver import run_study
from ftscale.study.spec import parse_spec
from ftscale.study.store import Store
from test_study_fakes import fake_job
from test_study_run import SMALL, results

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    ray_cli = shutil.which("ray") or pytest.skip("ray is not installed")
    port = _free_port()
    env = cli_env()
    env.update(
        PYTHONPATH=env["PYTHONPATH"] + os.pathsep + str(REPO_ROOT / "tests"),
        FAKE_MARKER_DIR=str(tmp_path),
        FAKE_LOG=str(tmp_path / "log"),
        RAY_USAGE_STATS_ENABLED="0",
    )
    started = subprocess.run(
        [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--node-ip-address=127.0.0.1", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"ray start failed: {started.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_backend_retries_a_dead_worker_and_counts_once(
    tmp_path: Path, ray_cluster: tuple[str, dict[str, str]]
) -> None:
    address, env = ray_cluster
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(SMALL))
    env = dict(env, FTSCALE_JOB_FN="test_study_fakes:crash_once_job")
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "run", str(spec_file), "--dir", str(tmp_path / "study"),
         "--backend", "ray", "--address", address, "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    crashed_job = (tmp_path / "crashed").read_text()
    with Store.open(tmp_path / "study") as store:
        rows = {row["id"]: row for row in store.rows()}
    assert all(row["status"] == "done" for row in rows.values())
    assert rows[crashed_job]["attempts"] == 2 and rows[crashed_job]["failures"] == 1
    assert all(row["attempts"] == 1 for job_id, row in rows.items() if job_id != crashed_job)
    completions = Counter(
        line.split()[1] for line in (tmp_path / "log").read_text().splitlines() if line.startswith("end")
    )
    assert set(completions.values()) == {1} and set(completions) == set(rows)

    reference = tmp_path / "reference"
    os.environ.pop("FAKE_LOG", None)
    run_study(parse_spec(SMALL), reference, fake_job, progress=False)
    pd.testing.assert_frame_equal(results(tmp_path / "study"), results(reference))
