"""The report commands' success paths through the real CLI: ``report``, ``advise`` and ``fit`` on a results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env
from ftscale.analysis import SyntheticStudy

pytestmark = pytest.mark.slow  # three CLI processes, each with two-stage fits and a small bootstrap

STUDY = SyntheticStudy(
    model_params={"1B": 1e9, "2B": 2e9, "4B": 4e9, "8B": 8e9},
    pretrain_tokens=(84e9, 126e9, 167e9, 283e9),
    pet_sizes={"prompt": (50, 100, 200, 400), "lora": (4, 8, 16, 64)},
    examples={
        "fmt": (1e5, 3e5, 1e6, 2e6, 4.5e6),
        "prompt": (8e3, 2e4, 5e4, 1e5),
        "lora": (8e3, 2e4, 5e4, 1e5),
    },
    seeds=2,
    noise=0.001,
)


def _ftscale(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ftscale", *args],
        capture_output=True,
        text=True,
        env={**cli_env(), **(env or {})},
        timeout=900,
    )


@pytest.fixture(scope="module")
def results_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "results.csv"
    STUDY.results(seed=3).to_csv(path, index=False)
    return path


def test_report_writes_html_md_and_json(results_csv: Path, tmp_path: Path) -> None:
    done = _ftscale("report", str(results_csv), "--out", str(tmp_path / "rep"), "--bootstrap", "20")
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("report.html", "report.md", "analysis.json"):
        assert (tmp_path / "rep" / name).is_file()
    analysis = json.loads((tmp_path / "rep" / "analysis.json").read_text())
    fits = {(f["method"], f["factor"], f["form"]) for f in analysis["fits"]}
    assert ("fmt", "model_size", "multiplicative") in fits and ("lora", "pet_size", "additive") in fits


def test_advise_names_a_method_and_reuses_the_report_analysis(results_csv: Path, tmp_path: Path) -> None:
    cache = {"FTSCALE_ANALYSIS_CACHE": str(tmp_path / "cache")}
    report = _ftscale(
        "report", str(results_csv), "--out", str(tmp_path / "rep"), "--bootstrap", "20", env=cache
    )
    assert report.returncode == 0, report.stderr[-2000:]
    (entry,) = (tmp_path / "cache").glob("*.pkl")  # the report's analysis, stored
    stamp = entry.stat().st_mtime_ns
    done = _ftscale("advise", str(results_csv), "--examples", "20000", "--bootstrap", "20", env=cache)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in (tmp_path / "cache").glob("*.pkl")] == [entry.name]  # read, not recomputed
    assert entry.stat().st_mtime_ns == stamp
    text = " ".join(done.stdout.split()).lower()
    assert (any(m in text for m in ("fmt", "prompt", "lora")) and "20,000" in text) or "20000" in text
    assert "p(best beats runner-up)" in text and "data multiplier" in text
    # every base model of the study is compared by default
    assert all(f"@{name.lower()}" in text for name in STUDY.model_params)


def test_fit_on_a_results_table_prints_table4(results_csv: Path) -> None:
    done = _ftscale("fit", str(results_csv), "--law", "study", "--bootstrap", "20")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "α_m" in done.stdout and "Held-out error" in done.stdout
