"""User errors of the report layer: missing / empty studies and too few runs name the problem in one line."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import cli_env
from ftscale.errors import DataError, FitError
from ftscale.report._synthetic import SyntheticStudy
from ftscale.report.analysis import analyse, load_results


def test_missing_study_dir(tmp_path):
    with pytest.raises(DataError, match="no results table"):
        load_results(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_results(tmp_path / "nope")


def test_empty_results(tmp_path):
    (tmp_path / "results.csv").write_text("run_id,task,method,status,ft_examples,loss\n")
    with pytest.raises(DataError, match="empty"):
        load_results(tmp_path)


def test_no_done_runs():
    table = SyntheticStudy(seeds=1).results().assign(status="failed")
    with pytest.raises(DataError, match="no finished runs"):
        analyse(table, n_bootstrap=0)


def test_too_few_runs_names_the_factor():
    # Two pretraining checkpoints: the larger is held out, one value of X is left to fit.
    study = SyntheticStudy(
        truth={"fmt": SyntheticStudy().truth["fmt"]}, pretrain_tokens=(84e9, 283e9), seeds=1
    )
    with pytest.raises(FitError) as info:
        analyse(study.results(), n_bootstrap=0)
    message = str(info.value)
    assert "'pretrain_tokens'" in message and "'fmt'" in message and "at least" in message
    assert "\n" not in message


def test_cli_error_is_one_line(tmp_path):
    code = (
        "import sys, typer\n"
        "from ftscale.errors import UserError\n"
        "from ftscale.report.cli import report\n"
        "app = typer.Typer(); app.command('report')(report); app.command('noop')(lambda: None)\n"
        "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
        "except UserError as exc:\n    print('error:', exc, file=sys.stderr); sys.exit(2)\n"
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for target, expected in ((tmp_path / "missing", "not found"), (empty, "empty")):
        proc = subprocess.run(
            [sys.executable, "-c", code, "report", str(target)],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_load_csv_and_parquet(tmp_path):
    table = SyntheticStudy(seeds=1).results().head(20)
    table.to_parquet(tmp_path / "results.parquet")
    loaded = load_results(tmp_path)
    assert len(loaded) == 20 and loaded.attrs["source"].endswith("results.parquet")
    table.to_csv(tmp_path / "r.csv", index=False)
    assert isinstance(load_results(tmp_path / "r.csv"), pd.DataFrame)
