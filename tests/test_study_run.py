"""Running studies with fake job functions: completion, resume, retries, refusal of a different spec, export."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO_ROOT, cli_env
from ftscale.errors import UserError
from ftscale.study.driver import run_study
from ftscale.study.plan import build_plan
from ftscale.study.spec import parse_spec
from ftscale.study.store import Store
from test_study_fakes import crash_once_job, expected_metrics, failing_job, fake_job
from test_study_spec import BASE

SMALL: dict[str, Any] = copy.deepcopy(BASE)
SMALL["factors"].update(
    {
        "model_size": ["xs", "s"],
        "prompt_length": None,
        "ft_sizes": {"fmt": [10, 20], "prompt": [10], "lora": [10, 20]},
    }
)
SMALL["factors"]["lora_rank"] = [2, 4]
SMALL["factors"]["pretrain_tokens"] = {"budgets": [500, 1000]}


def spec() -> Any:
    return parse_spec(copy.deepcopy(SMALL))


def results(study_dir: Path) -> pd.DataFrame:
    with Store.open(study_dir) as store:
        frame = store.to_dataframe()
    return (
        frame[["id", "status", "metrics", "loss", "non_embedding_params"]]
        .sort_values("id")
        .reset_index(drop=True)
    )


def test_run_completes_and_records_metrics(tmp_path: Path) -> None:
    plan = build_plan(spec())
    summary = run_study(spec(), tmp_path / "s", fake_job, progress=False)
    assert summary.done == summary.total == len(plan.jobs) and summary.failed == 0
    with Store.open(tmp_path / "s") as store:
        rows = {row["id"]: row for row in store.rows()}
        frame = store.to_dataframe()
    for job in plan.jobs:
        row = rows[job.id]
        assert row["status"] == "done" and row["attempts"] == 1
        assert row["metrics"] == pytest.approx(expected_metrics(job.kind, job.params, job.axes))
        assert row["environment"]["python"] and "hostname" not in row["environment"]
        assert row["duration_s"] >= 0
    finetune = frame[frame.kind == "finetune"]
    assert finetune["non_embedding_params"].notna().all()  # inherited from the pretraining job
    assert (tmp_path / "s" / "study.yaml").is_file()


def test_rerun_does_nothing_and_new_jobs_only_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    run_study(spec(), tmp_path / "s", fake_job, progress=False)
    first = log.read_text().count("end ")
    summary = run_study(spec(), tmp_path / "s", fake_job, progress=False)
    assert summary.executed == 0 and log.read_text().count("end ") == first


def test_failed_jobs_are_retried_and_dependents_blocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = build_plan(spec())
    flaky = next(job for job in plan.jobs if job.kind == "finetune")
    broken = next(job for job in plan.jobs if job.kind == "pretrain" and job.axes["model_size"] == "s")
    monkeypatch.setenv("FAKE_FAIL", json.dumps({flaky.id: 2, broken.id: -1}))
    summary = run_study(spec(), tmp_path / "s", failing_job, max_retries=2, progress=False)
    dependents = [job.id for job in plan.jobs if broken.id in job.deps]
    assert set(summary.failed_jobs) == {broken.id, *dependents}
    with Store.open(tmp_path / "s") as store:
        rows = {row["id"]: row for row in store.rows()}
    assert rows[flaky.id]["status"] == "done" and rows[flaky.id]["attempts"] == 3
    assert rows[broken.id]["attempts"] == 3 and "planned failure" in rows[broken.id]["reason"]
    assert all("dependency" in rows[d]["reason"] and rows[d]["attempts"] == 0 for d in dependents)
    # the fault is fixed: a rerun retries the failed job and runs what it blocked, nothing else
    monkeypatch.setenv("FAKE_FAIL", "{}")
    summary = run_study(spec(), tmp_path / "s", failing_job, progress=False)
    assert summary.failed == 0 and summary.executed == 1 + len(dependents)


def test_a_final_failure_is_not_retried_and_the_study_goes_on(tmp_path: Path) -> None:
    from ftscale.study.executors import FinalFailure

    plan = build_plan(spec())
    doomed = next(job for job in plan.jobs if job.kind == "finetune")

    def diverging(ctx: Any) -> dict[str, Any]:
        if ctx.job_id == doomed.id:
            raise FinalFailure("failed: diverged at step 7")
        return fake_job(ctx)

    summary = run_study(spec(), tmp_path / "s", diverging, max_retries=2, progress=False)
    assert list(summary.failed_jobs) == [doomed.id] and summary.done == summary.total - 1
    with Store.open(tmp_path / "s") as store:
        row = next(row for row in store.rows() if row["id"] == doomed.id)
    assert row["status"] == "failed" and row["attempts"] == 1 and "diverged at step 7" in row["reason"]


def test_user_error_from_a_job_stops_the_run(tmp_path: Path) -> None:
    def needs_data(ctx: Any) -> dict[str, Any]:
        raise UserError("data/missing.tsv: file not found")

    with pytest.raises(UserError, match="file not found"):
        run_study(spec(), tmp_path / "s", needs_data, progress=False)
    with Store.open(tmp_path / "s") as store:
        rows = store.rows()
    assert sum(row["attempts"] for row in rows) == 1


def test_a_different_spec_is_refused(tmp_path: Path) -> None:
    run_study(spec(), tmp_path / "s", fake_job, progress=False)
    other = copy.deepcopy(SMALL)
    other["factors"]["seeds"] = 3
    with pytest.raises(UserError, match="holds a different study spec"):
        run_study(parse_spec(other), tmp_path / "s", fake_job, progress=False)
    summary = run_study(parse_spec(other), tmp_path / "s", fake_job, progress=False, force=True)
    assert summary.done == summary.total and summary.executed < summary.total  # shared runs kept


def test_results_and_status_hold_only_the_current_plan(tmp_path: Path) -> None:
    from ftscale.study.results import results_table

    run_study(spec(), tmp_path / "s", fake_job, progress=False)
    changed = copy.deepcopy(SMALL)
    changed["methods"]["lora"]["lr"] = 5e-3  # new ids for every LoRA run
    plan = build_plan(parse_spec(changed))
    run_study(parse_spec(changed), tmp_path / "s", fake_job, progress=False, force=True)
    table = results_table(tmp_path / "s")
    wanted = {job.id for job in plan.jobs if job.kind == "finetune"}
    assert set(table["run_id"]) == wanted
    everything = results_table(tmp_path / "s", all_plans=True)
    old_lora = set(everything["run_id"]) - wanted
    assert old_lora and len(everything) == len(table) + len(old_lora)
    status = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "status", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    assert f"{len(old_lora)} job(s) of an older plan are kept but not run" in status.stdout


def test_process_pool_gives_the_same_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{REPO_ROOT / 'src'}:{REPO_ROOT / 'tests'}")
    run_study(spec(), tmp_path / "seq", fake_job, progress=False)
    summary = run_study(spec(), tmp_path / "pool", fake_job, workers=2, progress=False)
    assert summary.done == summary.total
    pd.testing.assert_frame_equal(results(tmp_path / "seq"), results(tmp_path / "pool"))


def test_export_round_trip_and_cli(tmp_path: Path) -> None:
    run_study(spec(), tmp_path / "s", fake_job, progress=False)
    with Store.open(tmp_path / "s") as store:
        frame = store.to_dataframe()
    env = cli_env()
    env["PYTHONPATH"] += f":{REPO_ROOT / 'tests'}"
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"out.{fmt}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ftscale",
                "study",
                "export",
                str(tmp_path / "s"),
                "--format",
                fmt,
                "--out",
                str(out),
                "--raw",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
        for column in ("id", "kind", "method", "model_size", "factors", "metrics"):
            assert (
                back[column].fillna("").astype(str).tolist() == frame[column].fillna("").astype(str).tolist()
            )
        for column in ("loss", "ppl", "ft_examples", "pretrain_tokens", "seed"):
            assert back[column].astype("float64").fillna(-1).tolist() == pytest.approx(
                frame[column].astype("float64").fillna(-1).tolist()
            )
        heldout = back["heldout_model_size"].map({True: True, False: False, "True": True, "False": False})
        assert (
            heldout.fillna("none").tolist()
            == frame["heldout_model_size"].astype(object).fillna("none").tolist()
        )
    status = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "status", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert status.returncode == 0 and "finetune · lora_rank" in status.stdout


def test_status_of_a_missing_study_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "status", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert done.returncode == 2 and "not a study directory" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "nothing").exists()


def test_export_to_an_unusable_path_is_a_user_error(tmp_path: Path) -> None:
    from ftscale.study.results import export_results

    run_study(spec(), tmp_path / "s", fake_job, progress=False)
    (tmp_path / "file").write_text("x")
    with Store.open(tmp_path / "s") as store:
        with pytest.raises(UserError, match="is a directory"):
            store.export(tmp_path / "s", "csv")
        with pytest.raises(UserError, match="cannot write"):
            store.export(tmp_path / "file" / "out.csv", "csv")
        with pytest.raises(UserError, match="choose csv or parquet"):
            store.export(tmp_path / "out.xls", "xls")
    with pytest.raises(UserError, match="cannot write"):
        export_results(tmp_path / "s", tmp_path / "file" / "out.csv", "csv")
    with pytest.raises(UserError, match="not a study directory"):
        export_results(tmp_path / "missing", tmp_path / "out.csv", "csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s"]


def test_process_pool_survives_a_dead_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{REPO_ROOT / 'src'}:{REPO_ROOT / 'tests'}")
    monkeypatch.setenv("FAKE_MARKER_DIR", str(tmp_path))
    summary = run_study(spec(), tmp_path / "pool", crash_once_job, workers=2, progress=False)
    assert summary.done == summary.total
    crashed = (tmp_path / "crashed").read_text()
    with Store.open(tmp_path / "pool") as store:
        row = next(r for r in store.rows() if r["id"] == crashed)
    assert row["attempts"] == 2 and row["failures"] == 1
    run_study(spec(), tmp_path / "seq", fake_job, progress=False)
    pd.testing.assert_frame_equal(results(tmp_path / "seq"), results(tmp_path / "pool"))


def test_results_export_is_the_report_contract(tmp_path: Path) -> None:
    """The default export has one row per finetuning run in the report's columns, and the report reads it."""
    from ftscale.analysis import load_results
    from ftscale.study.results import export_results, results_table

    run_study(spec(), tmp_path / "s", fake_job, progress=False)
    with Store.open(tmp_path / "s") as store:
        jobs = store.to_dataframe()
    table = results_table(tmp_path / "s")
    finetunes = jobs[jobs["kind"] == "finetune"]
    assert len(table) == len(finetunes) and set(table["run_id"]) == set(finetunes["id"])
    for column in ("task", "in_model_size", "in_pretrain_tokens", "in_pet_size", "model_params", "loss"):
        assert column in table.columns
    # memberships agree with the store's factor lists
    for _, row in table.merge(finetunes, left_on="run_id", right_on="id").iterrows():
        factors = set(row["factors"].split(","))
        assert row["in_model_size"] == ("model_size" in factors)
        assert row["in_pet_size"] == bool(factors & {"prompt_length", "lora_rank"})
    out = export_results(tmp_path / "s", tmp_path / "r.csv", "csv")
    back = load_results(out)
    assert len(back) == len(table)
    # read from the study directory, the runs come first and the un-finetuned baselines ("base") after them
    direct = load_results(tmp_path / "s")
    runs = direct[direct["method"] != "base"]
    assert runs["run_id"].tolist() == table["run_id"].tolist()
    assert set(direct.loc[direct["method"] == "base", "run_id"]) == set(
        jobs.loc[jobs["kind"] == "baseline", "id"]
    )
