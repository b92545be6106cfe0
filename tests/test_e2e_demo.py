"""The README's main job, end to end: ``ftscale demo`` runs the tiny study, fits it and writes the report.

This is the full ``tiny`` preset (108 finetuning runs), not a cut-down version. It checks that the demo is a study
in the paper's regime, as its report says: every base model read at least 20 pretraining tokens per parameter, the
ladder is ordered by validation loss, and fewer than 10 % of the runs were ended by their budget rather than by
early stopping. What the fitted laws then find is what the report says; the test does not ask for a verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "ftscale-demo"
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "demo", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "report.html" in done.stdout
    return out


def _ci(analysis: dict, method: str, factor: str, param: str) -> dict:
    (row,) = [
        r
        for r in analysis["param_ci"]
        if r["method"] == method and r["factor"] == factor and r["param"] == param
    ]
    return row


def test_demo_writes_a_complete_report(demo_dir: Path) -> None:
    report = demo_dir / "report"
    html = (report / "report.html").read_text()
    assert "<img" in html and "http://" not in html and "https://" not in html
    assert (report / "report.md").is_file()
    analysis = json.loads((report / "analysis.json").read_text())
    counts = {(r["method"], r["status"]): r["n"] for r in analysis["run_counts"]}
    # 108 finetuning runs and the 7 un-finetuned baselines (method "base") of the base checkpoints
    assert counts == {("fmt", "done"): 28, ("lora", "done"): 40, ("prompt", "done"): 40, ("base", "done"): 7}


def test_demo_is_in_regime(demo_dir: Path) -> None:
    analysis = json.loads((demo_dir / "report" / "analysis.json").read_text())
    (regime,) = analysis["regime"].values()
    thresholds = regime["thresholds"]
    models = regime["base_models"]
    assert [m["name"] for m in models] == ["t1", "t2", "t3", "t4"]
    assert (
        len({m["pretrain_tokens"] for m in models}) == 1
    )  # every size reads the same tokens, as the paper's
    assert all(m["tokens_per_param"] >= thresholds["min_tokens_per_param"] for m in models), models
    losses = [m["val_loss"] for m in models]
    assert regime["ladder_ordered"] and losses == sorted(losses, reverse=True), losses
    assert regime["budget_bound_runs"] == 108
    assert regime["budget_bound_share"] < thresholds["max_budget_bound_share"], regime["budget_bound"]
    assert regime["warnings"] == []
    report = (demo_dir / "report" / "report.md").read_text()
    assert "Regime: are these runs evidence about finetuning?" in report
    assert "\nIn regime." in report


def test_demo_fits_every_law(demo_dir: Path) -> None:
    """Every method's model-size and pretraining laws are fitted with a bootstrap interval for each exponent,
    whatever their sign."""
    analysis = json.loads((demo_dir / "report" / "analysis.json").read_text())
    for method in ("fmt", "prompt", "lora"):
        for factor in ("model_size", "pretrain_tokens"):
            for param in ("alpha", "beta"):
                row = _ci(analysis, method, factor, param)
                assert row["low"] <= row["estimate"] <= row["high"], (method, factor, param, row)


def test_demo_reruns_without_work(demo_dir: Path) -> None:
    """A second ``ftscale demo`` resumes: every job is done, only the analysis runs again."""
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "run", "tiny", "--dir", str(demo_dir), "--no-progress"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(0 attempts in this run)" in " ".join(done.stdout.split())
