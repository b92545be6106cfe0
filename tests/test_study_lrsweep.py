"""``ftscale study lr-sweep``: the sweep copies the study's own finetuning setup on the smallest model, changes only
the learning rate, resumes from saved runs and refuses to run before the base models exist."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import cli_env
from ftscale.errors import UserError
from ftscale.study import lrsweep
from ftscale.study.driver import run_study
from ftscale.study.jobs import run_job
from ftscale.study.lrsweep import plan_sweep, run_sweep, summarise
from ftscale.study.results import results_table
from ftscale.study.spec import parse_spec

SPEC = {
    "name": "sweep",
    "task": {
        "name": "synthetic-en-de",
        "max_source_tokens": 32,
        "max_target_tokens": 32,
        "train_pool": 200,
        "options": {
            "n_dev": 20,
            "n_test": 16,
            "pretraining_tokens": 20000,
            "config": {"n_lemmas": 60, "max_clause_depth": 0},
        },
    },
    "tokenizer": {"vocab_size": 300},
    "family": {
        "pretrain": {
            "ladder": "demo",
            "sizes": ["t1", "t2"],
            "total_tokens": 8192,
            "seq_len": 32,
            "batch_size": 8,
            "lr": 3e-3,
        }
    },
    "methods": {
        "fmt": {"lr": 1e-3, "batch_size": 4, "max_steps": 6, "eval_every": 2, "patience": 2},
        "lora": {"lr": 3e-3, "batch_size": 4, "max_steps": 6, "eval_every": 2, "patience": 2, "lora_rank": 2},
    },
    "factors": {"model_size": ["t2", "t1"], "ft_sizes": {"fmt": [8, 16], "lora": [8, 16]}, "seeds": 1},
    "evaluation": {"generation": False},
    "execution": {"device": "cpu"},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sweep")
    spec_path = root / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    summary = run_study(parse_spec(SPEC, "sweep.yaml"), root / "study", run_job, progress=False)
    assert summary.failed == 0, summary.failed_jobs
    return spec_path, root / "study"


def test_plan_takes_the_smallest_model_and_largest_data_size() -> None:
    runs = plan_sweep(parse_spec(SPEC, "sweep.yaml"), factors=[0.1, 1, 10], seeds=2)
    assert len(runs) == 2 * 3 * 2
    for job, _, _, n in runs:
        assert job.axes["model_size"] == "t1"  # first in the ladder, though listed second in the factor
        assert n == 16
    fmt_rates = sorted({lr for job, lr, _, _ in runs if job.axes["method"] == "fmt"})
    assert fmt_rates == [1e-4, 1e-3, 1e-2]  # exactly, not 1.0000000000000002e-4
    several = plan_sweep(
        parse_spec(SPEC, "sweep.yaml"), methods=["lora"], lrs=[1e-3], ft_examples=[16, 8, 16]
    )
    assert [n for *_, n in several] == [8, 16]


def test_summary_is_per_method_and_data_size() -> None:
    runs = [
        lrsweep.SweepRun("fmt", "t1", lr, 0, n, loss, "done", 2, 6, 0.1)
        for n, lr, loss in [(8, 1e-3, 3.0), (8, 1e-2, 2.9), (16, 1e-3, 2.5), (16, 1e-2, 2.6)]
    ]
    choices = summarise(runs, parse_spec(SPEC, "sweep.yaml"))
    assert [(c.ft_examples, c.best_lr) for c in choices] == [(8, 1e-2), (16, 1e-3)]
    assert choices[0].spec_gap == pytest.approx(0.1)


def test_sweep_at_the_spec_rate_reproduces_the_study_run(study: tuple[Path, Path]) -> None:
    _, study_dir = study
    spec = parse_spec(SPEC, "sweep.yaml")
    runs = plan_sweep(spec, factors=[1, 30])
    finished = run_sweep(spec, study_dir, runs, threads=1)
    table = results_table(study_dir)
    for method in ("fmt", "lora"):
        own = table[
            (table["method"] == method)
            & (table["model_size"] == "t1")
            & (table["ft_examples"] == 16)
            & (table["seed"] == 0)
        ]
        (study_dev,) = own["dev_loss"]
        (at_spec,) = [r for r in finished if r.method == method and r.lr == SPEC["methods"][method]["lr"]]
        # same checkpoint, subset, config and seed: the same run, to the bit
        assert at_spec.dev_loss == study_dev
        (other,) = [r for r in finished if r.method == method and r.lr != at_spec.lr]
        assert other.dev_loss != at_spec.dev_loss  # the rate reached the optimiser
    choices = {c.method: c for c in summarise(finished, spec)}
    for choice in choices.values():
        assert choice.best_lr == min(choice.losses, key=choice.losses.get)
        assert choice.at_edge  # two rates: the winner is always at an edge


def test_finished_runs_are_read_back_not_rerun(
    study: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, study_dir = study
    spec = parse_spec(SPEC, "sweep.yaml")
    runs = plan_sweep(spec, methods=["lora"], factors=[1, 30])
    first = run_sweep(spec, study_dir, runs, threads=1)

    def boom(*args, **kwargs):
        raise AssertionError("a finished sweep run was trained again")

    monkeypatch.setattr("ftscale.finetune.train.finetune", boom)
    assert run_sweep(spec, study_dir, runs, threads=1) == first
    assert len(list((study_dir / lrsweep.SWEEP_DIR).glob("lora-*.json"))) >= 2


def test_diverged_rate_scores_inf() -> None:
    run = lrsweep.SweepRun("fmt", "t1", 1.0, 0, 16, math.inf, "failed: diverged at step 3", 0, 3, 0.1)
    ok = lrsweep.SweepRun("fmt", "t1", 1e-3, 0, 16, 2.5, "done", 4, 6, 0.1)
    (choice,) = summarise([run, ok], parse_spec(SPEC, "sweep.yaml"))
    assert choice.losses[1.0] == math.inf
    assert choice.best_lr == 1e-3
    assert choice.spec_gap == 0.0


def test_refuses_before_the_base_models_exist(tmp_path: Path) -> None:
    spec_dict = copy.deepcopy(SPEC)
    spec = parse_spec(spec_dict, "sweep.yaml")
    # a study directory whose plan is recorded but nothing has run
    from ftscale.study.plan import build_plan
    from ftscale.study.store import Store

    with Store.prepare(tmp_path / "study", spec) as store:
        store.sync_plan(build_plan(spec))
    with pytest.raises(UserError, match="pretrain t1 job is not done"):
        run_sweep(spec, tmp_path / "study", plan_sweep(spec, factors=[1]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--factors", "1,x"], "--factors '1,x': give comma-separated numbers"),
        (["--lrs", "0,1e-3"], "--lrs: give positive, finite learning rates"),
        (["--methods", "prompt"], "--methods prompt: not finetuned by this study"),
        (["--size", "t9"], "--size 't9': the study finetunes no such model"),
        (["--seeds", "0"], "--seeds 0: must be >= 1"),
        (["--ft-examples", "8,0"], "--ft-examples 8,0: give sizes >= 1"),
        (["--ft-examples", "8.5"], "--ft-examples '8.5': give comma-separated whole numbers"),
    ],
)
def test_cli_bad_options_give_one_line(study: tuple[Path, Path], args: list[str], message: str) -> None:
    spec_path, study_dir = study
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftscale",
            "study",
            "lr-sweep",
            str(spec_path),
            "--dir",
            str(study_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_prints_the_choice_and_writes_csv(study: tuple[Path, Path], tmp_path: Path) -> None:
    spec_path, study_dir = study
    out = tmp_path / "sweep.csv"
    done = subprocess.run(
        [
            sys.executable, "-m", "ftscale", "study", "lr-sweep", str(spec_path), "--dir", str(study_dir),
            "--methods", "lora", "--factors", "1,30", "--threads", "1", "--no-progress", "--out", str(out),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "lora at 16 examples: best lr" in done.stdout
    import pandas as pd

    frame = pd.read_csv(out)
    assert sorted(frame["lr"]) == [0.003, 0.09]
    assert (frame["size"] == "t1").all()


def test_run_until_pretrain_then_sweep(tmp_path: Path) -> None:
    """The paper's order: base models first, learning rates tuned on the smallest, then the grid."""
    spec = parse_spec(SPEC, "sweep.yaml")
    summary = run_study(spec, tmp_path / "study", run_job, progress=False, until="pretrain")
    assert (summary.done, summary.failed) == (3, 0)  # the tokenizer and two pretraining runs
    from ftscale.study.store import Store

    with Store.open(tmp_path / "study") as store:
        kinds = {row["kind"]: row["status"] for row in store.rows() if row["status"] != "done"}
    assert kinds == {"finetune": "pending"}
    runs = plan_sweep(spec, methods=["fmt"], factors=[1])
    (run,) = run_sweep(spec, tmp_path / "study", runs, threads=1)
    assert math.isfinite(run.dev_loss)
    with pytest.raises(UserError, match="--until 'eval'"):
        run_study(spec, tmp_path / "study", run_job, progress=False, until="eval")
