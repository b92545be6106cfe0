"""``ftscale fit`` and ``ftscale demo --points`` end to end in a subprocess: tables, JSON, one-line user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from ftscale.laws.io import read_lin2024, read_points

TRUTH = dict(A=400.0, alpha=0.3, beta=0.25, E=0.8)


def write_points(path: Path, *, seeds: int = 2, noise: float = 0.002, methods=("fmt",)) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        for x in (1e6, 1e7, 1e8, 1e9, 1e10):
            for d in (1e2, 1e3, 1e4, 1e5, 1e6, 1e7):
                clean = TRUTH["A"] * x ** -TRUTH["alpha"] * d ** -TRUTH["beta"] + TRUTH["E"]
                for seed in range(seeds):
                    loss = clean + noise * rng.standard_normal()
                    rows.append(
                        {"method": method, "model_size": x, "ft_examples": d, "seed": seed, "loss": loss}
                    )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_fit_prints_parameters_and_errors(tmp_path):
    csv = write_points(tmp_path / "runs.csv")
    proc = run_cli("fit", str(csv), "--law", "multiplicative", "--x", "model_size", "--d", "ft_examples")
    assert proc.returncode == 0, proc.stderr
    for token in ("alpha", "beta", "Δe", "Δh", "RMSElog", "20/10"):
        assert token in proc.stdout, token
    assert proc.stderr == ""


@pytest.mark.slow
def test_fit_json_with_bootstrap_and_explicit_heldout(tmp_path):
    csv = write_points(tmp_path / "runs.csv")
    proc = run_cli(
        "fit", str(csv), "--x", "model_size", "--d", "ft_examples",
        "--heldout", "x=1e10,d=1e2", "--bootstrap", "20", "--seed", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)  # one JSON object, nothing else on stdout
    (fit,) = payload["fits"]
    assert payload["law"] == "multiplicative" and fit["law"] == "multiplicative"
    assert fit["n_fit"] == 4 * 5 and fit["n_heldout"] == 30 - 20
    for name, value in TRUTH.items():
        assert fit["params"][name] == pytest.approx(value, rel=0.1), name
        ci = fit["ci"][name]
        assert ci["low"] <= ci["high"] and ci["se"] >= 0
    assert fit["delta_e"] < 0.003 and fit["delta_h"] < 0.01
    assert fit["ci_level"] == 0.95


@pytest.mark.slow
def test_fit_groups_and_single_factor_law(tmp_path):
    csv = write_points(tmp_path / "runs.csv", methods=("fmt", "lora"))
    proc = run_cli(
        "fit", str(csv), "--law", "power", "--d", "ft_examples", "--group", "model_size",
        "--where", "method=lora", "--heldout", "none", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fits = json.loads(proc.stdout)["fits"]
    assert [f["group"] for f in fits] == [f"model_size={x:g}" for x in (1e6, 1e7, 1e8, 1e9, 1e10)]
    for f in fits:
        assert f["law"] == "power" and f["n_fit"] == 6 and f["delta_h"] is None
        assert "no held-out points" in f["heldout_note"]
    # At fixed X the law is A·X^-α·D^-β + E, so the single-factor β is the joint one.
    assert fits[0]["params"]["beta"] == pytest.approx(TRUTH["beta"], rel=0.05)


def _bad_csv(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_CASES = {
    "missing file": (lambda t: ["fit", str(t / "nope.csv"), "--x", "n", "--d", "d"], "file not found"),
    "unreadable csv": (
        lambda t: ["fit", _bad_csv(t, "bad.csv", "n,d,loss\n1,2,3\n1,2,3,4,5\n"), "--x", "n", "--d", "d"],
        "not a readable CSV",
    ),
    "empty csv": (lambda t: ["fit", _bad_csv(t, "empty.csv", ""), "--x", "n", "--d", "d"], "file is empty"),
    "missing column": (
        lambda t: ["fit", _bad_csv(t, "cols.csv", "n,d,loss\n1,2,3\n"), "--x", "size", "--d", "d"],
        "column 'size' not found; available columns: n, d, loss",
    ),
    "non-positive size": (
        lambda t: ["fit", _bad_csv(t, "zero.csv", "n,d,loss\n1,2,3\n1,0,3\n"), "--x", "n", "--d", "d"],
        "column 'd' has a non-positive size 0 (data row 2)",
    ),
    "nan loss": (
        lambda t: ["fit", _bad_csv(t, "nan.csv", "n,d,loss\n1,2,3\n1,3,nan\n"), "--x", "n", "--d", "d"],
        "column 'loss' has a missing or infinite value (data row 2)",
    ),
    "inf loss": (
        lambda t: ["fit", _bad_csv(t, "inf.csv", "n,d,loss\n1,2,inf\n"), "--x", "n", "--d", "d"],
        "missing or infinite value",
    ),
    "too few points": (
        lambda t: [
            "fit",
            _bad_csv(t, "few.csv", "n,d,loss\n1,2,3\n2,2,2.5\n1,4,2.8\n"),
            "--x",
            "n",
            "--d",
            "d",
            "--heldout",
            "none",
        ],
        "4 parameters but only 3 fitting points (0 held out)",
    ),
    "unknown law": (
        lambda t: ["fit", _bad_csv(t, "ok.csv", "n,d,loss\n1,2,3\n"), "--law", "quadratic", "--d", "d"],
        "unknown law 'quadratic'",
    ),
    "joint law without x": (
        lambda t: ["fit", _bad_csv(t, "ok2.csv", "n,d,loss\n1,2,3\n"), "--d", "d"],
        "name the X column with --x",
    ),
    "heldout value absent": (
        lambda t: [
            "fit",
            str(write_points(t / "pts.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--heldout",
            "x=123",
        ],
        "held-out value model_size=123 is not in the data",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_user_errors_are_one_line_exit_2(tmp_path, case):
    make_args, message = BAD_CASES[case]
    proc = run_cli(*make_args(tmp_path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and message in lines[0], lines[0]


def test_too_few_points_names_the_counts(tmp_path):
    # 4 cells for a 4-parameter law: "largest" holds 3 of them out.
    csv = _bad_csv(tmp_path, "few.csv", "n,d,loss\n1,2,3\n2,2,2.5\n1,4,2.8\n2,4,2.2\n")
    proc = run_cli("fit", csv, "--x", "n", "--d", "d")
    assert proc.returncode == 2
    assert "has 4 parameters but only 1 fitting points (3 held out)" in proc.stderr


def test_read_points_rejects_text_in_numeric_column(tmp_path):
    from ftscale.errors import DataError

    csv = _bad_csv(tmp_path, "text.csv", "n,d,loss\n1,2,3\n1,abc,3\n")
    with pytest.raises(DataError, match=r"column 'd' has a non-numeric value 'abc' \(data row 2\)"):
        read_points(csv, sizes=["n", "d"], y="loss")


@pytest.mark.shared_data
def test_read_lin2024_melts_the_wide_table(shared_data):
    long = read_lin2024(shared_data / "finetuning_scaling_law_lin2024" / "flan.csv")
    assert list(long.columns) == ["model", "family", "size", "ft_examples", "loss"]
    assert len(long) == 30 * 14 and long["ft_examples"].min() == 200 and long["ft_examples"].max() == 1638400
    with_zero = read_lin2024(
        shared_data / "finetuning_scaling_law_lin2024" / "flan.csv", include_zero_shot=True
    )
    assert len(with_zero) == 30 * 15


@pytest.mark.shared_data
@pytest.mark.slow
def test_fit_multiplicative_law_on_lin2024_family(shared_data):
    csv = shared_data / "finetuning_scaling_law_lin2024" / "flan.csv"
    long = read_lin2024(csv)
    family = "OPT"
    n_models = long.loc[long.family == family, "model"].nunique()
    assert n_models >= 3
    proc = run_cli(
        "fit", str(csv), "--law", "multiplicative", "--x", "size", "--d", "ft_examples",
        "--where", f"family={family}", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (fit,) = json.loads(proc.stdout)["fits"]
    # Held out: the largest model and the largest data size (one model row + one data column).
    assert fit["n_fit"] == (n_models - 1) * 13 and fit["n_heldout"] == n_models * 14 - fit["n_fit"]
    p = fit["params"]
    assert p["alpha"] > 0 and p["beta"] > 0 and p["E"] > 0
    # Fine-tuning losses are O(1) nats: a sane joint law misses the points it fitted by far less than that.
    assert fit["delta_e"] < 0.15 and np.isfinite(fit["delta_h"])


@pytest.mark.shared_data
@pytest.mark.slow
def test_fit_power_law_per_model_on_lin2024(shared_data):
    csv = shared_data / "finetuning_scaling_law_lin2024" / "wmt19.csv"
    proc = run_cli(
        "fit", str(csv), "--law", "power", "--d", "ft_examples", "--group", "model",
        "--where", "family=GPT2", "--heldout", "none", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fits = json.loads(proc.stdout)["fits"]
    assert len(fits) >= 2 and all(f["n_fit"] == 14 for f in fits)
    assert all(f["rmse_log_fit"] < 0.2 for f in fits)


@pytest.mark.slow
def test_demo_runs_quickly_and_writes_points(tmp_path):
    proc = run_cli("demo", "--points", "--out", str(tmp_path / "demo"), timeout=240)
    assert proc.returncode == 0, proc.stderr
    for token in ("Fitted multiplicative laws", "Critical data size", "fmt vs prompt", "ftscale demo"):
        assert token in proc.stdout, token
    points = pd.read_csv(tmp_path / "demo" / "points.csv")
    assert set(points["method"]) == {"fmt", "prompt", "lora"}
    assert set(points["seed"]) == {0, 1, 2}
