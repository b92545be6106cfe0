"""Baseline jobs in a running study (fake job function): resuming a study planned without them runs only them,
and status, plan and ``study export --baselines`` show them."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO_ROOT, cli_env
from ftscale.study import plan as plan_module
from ftscale.study.driver import run_study
from ftscale.study.plan import build_plan
from ftscale.study.results import baseline_table, export_results, results_table
from ftscale.study.spec import parse_spec, spec_to_yaml
from ftscale.study.store import Store
from test_study_fakes import LOG_ENV, fake_job
from test_study_run import SMALL


def spec() -> Any:
    return parse_spec(copy.deepcopy(SMALL))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    env["PYTHONPATH"] += f":{REPO_ROOT / 'tests'}"
    return subprocess.run([sys.executable, "-m", "ftscale", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study_dir = tmp_path_factory.mktemp("baselines") / "s"
    summary = run_study(spec(), study_dir, fake_job, progress=False)
    assert summary.failed == 0
    return study_dir


def test_resuming_a_study_planned_without_baselines_runs_only_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # the plan as it was before baseline jobs existed
        patch.setattr(plan_module._PlanBuilder, "baselines", property(lambda self: False))
        before = run_study(spec(), tmp_path / "s", fake_job, progress=False)
    with Store.open(tmp_path / "s") as store:
        first = {row["id"]: row for row in store.rows()}
    log = tmp_path / "log"
    monkeypatch.setenv(LOG_ENV, str(log))
    after = run_study(spec(), tmp_path / "s", fake_job, progress=False)
    baselines = [job for job in build_plan(spec()).jobs if job.kind == "baseline"]
    assert baselines and after.total == before.total + len(baselines) and after.failed == 0
    started = {line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")}
    assert started == {job.id for job in baselines} and after.executed == len(baselines)
    with Store.open(tmp_path / "s") as store:
        second = {row["id"]: row for row in store.rows()}
    for job_id, row in first.items():  # earlier results untouched
        assert (second[job_id]["status"], second[job_id]["metrics"]) == ("done", row["metrics"])


def test_baseline_table_has_the_runs_columns(study: Path) -> None:
    runs, base = results_table(study), baseline_table(study)
    assert list(base.columns) == list(runs.columns)  # the fake jobs report the same metrics for both kinds
    assert (base["method"] == "base").all() and (runs["method"] != "base").all()
    plan = build_plan(spec())
    assert set(base["run_id"]) == {job.id for job in plan.jobs if job.kind == "baseline"}
    assert base["fs1_bleu"].notna().all() and base["ft_examples"].isna().all()
    # X of the model-size factor is inherited from the pretraining job, as for the runs
    merged = base.merge(runs, on=["model_size", "pretrain_tokens", "checkpoint_kind"], suffixes=("", "_run"))
    assert (merged["model_params"] == merged["model_params_run"]).all()
    assert set(base.loc[base["in_model_size"], "model_size"]) == set(SMALL["factors"]["model_size"])


def test_export_with_and_without_baselines(study: Path, tmp_path: Path) -> None:
    plain = pd.read_csv(export_results(study, tmp_path / "r.csv", "csv"))
    assert "base" not in set(plain["method"])
    done = cli("study", "export", str(study), "--out", str(tmp_path / "b.csv"), "--baselines")
    assert done.returncode == 0, done.stderr
    both = pd.read_csv(tmp_path / "b.csv")
    assert list(both.columns[: len(plain.columns)]) == list(plain.columns)
    assert len(both) == len(plain) + len(baseline_table(study))
    assert both.loc[both["method"] == "base", "fs1_bleu"].notna().all()
    refused = cli("study", "export", str(study), "--out", str(tmp_path / "x.csv"), "--raw", "--baselines")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--baselines" in refused.stderr and not (tmp_path / "x.csv").exists()


def test_status_and_plan_show_baselines(study: Path, tmp_path: Path) -> None:
    status = cli("study", "status", str(study))
    assert status.returncode == 0, status.stderr
    n = len(baseline_table(study))
    line = next(row for row in status.stdout.splitlines() if row.strip("│ ").startswith("baseline "))
    assert line.split("│")[2].strip() == str(n)  # all done
    assert "baseline · model_size" in status.stdout
    (tmp_path / "s.yaml").write_text(spec_to_yaml(spec()))
    planned = cli("study", "plan", str(tmp_path / "s.yaml"))
    assert planned.returncode == 0 and f"{n} baseline" in planned.stdout
