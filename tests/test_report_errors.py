"""User errors of the report layer: missing / empty studies and too few runs name the problem in one line."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import cli_env
from ftscale.analysis import SyntheticStudy, analyse, load_results
from ftscale.errors import DataError, FitError


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
        "from ftscale.cli.report import report\n"
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


def test_bad_options_fail_before_the_analysis(tmp_path):
    from ftscale.cli.report import advise, report
    from ftscale.errors import UserError

    missing = tmp_path / "no-study"  # analysing it would fail differently: the option check comes first
    with pytest.raises(UserError, match="--examples"):
        advise(missing, examples=0, model=None, candidates=None, task=None, bootstrap=0, seed=0)
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(UserError, match=r"--out .* not a directory"):
        report(
            missing,
            out=taken,
            bootstrap=0,
            seed=0,
            x=None,
            d=None,
            y=None,
            method=None,
            factor=None,
            max_models=None,
        )


def test_fit_only_unreadable_csv_and_max_models(tmp_path):
    from ftscale.analysis import analyse_points, load_points

    empty, broken = tmp_path / "empty.csv", tmp_path / "broken.csv"
    empty.write_text("")
    broken.write_text('a,b\n1,2\n"x\n')
    for path in (empty, broken):
        with pytest.raises(DataError, match="cannot read"):
            load_points(path, x="a")
    good = tmp_path / "good.csv"
    good.write_text("name,size,100,200\nm1,1,2.0,1.5\nm2,2,1.8,1.2\n")
    points = load_points(good, x="size")
    assert sorted(points["model"].unique()) == ["m1", "m2"]  # the text column names the models
    with pytest.raises(DataError, match="--max-models"):
        analyse_points(points, max_models=0)
