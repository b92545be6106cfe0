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
    "unknown loss": (
        lambda t: [
            "fit",
            str(write_points(t / "p1.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--loss",
            "l1",
        ],
        "loss must be one of huber, lsq, got 'l1'",
    ),
    "bad huber delta": (
        lambda t: [
            "fit",
            str(write_points(t / "p2.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--huber-delta",
            "-1",
        ],
        "huber_delta must be a positive number",
    ),
    "unknown solver": (
        lambda t: [
            "fit",
            str(write_points(t / "p3.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--solver",
            "x",
        ],
        "solver must be one of auto, vp, multistart",
    ),
    "vp for a form without linear terms": (
        lambda t: [
            "fit",
            str(write_points(t / "p4.csv")),
            "--law",
            "vanilla",
            "--d",
            "ft_examples",
            "--solver",
            "vp",
        ],
        "variable projection needs a sum of power-law terms",
    ),
    "predict malformed": (
        lambda t: [
            "fit",
            str(write_points(t / "p5.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--predict",
            "d",
        ],
        "--predict 'd': expected axis=value pairs",
    ),
    "predict unknown axis": (
        lambda t: [
            "fit",
            str(write_points(t / "p6.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--predict",
            "z=1",
        ],
        "--predict: axis 'z' is not one of",
    ),
    "predict not a number": (
        lambda t: [
            "fit",
            str(write_points(t / "p7.csv")),
            "--law",
            "power",
            "--d",
            "ft_examples",
            "--predict",
            "d=lots",
        ],
        "value 'lots' for axis 'd' is not a number",
    ),
    "predict without x for a joint law": (
        lambda t: [
            "fit",
            str(write_points(t / "p8.csv")),
            "--x",
            "model_size",
            "--d",
            "ft_examples",
            "--predict",
            "d=1e8",
        ],
        "a multiplicative law needs x and d",
    ),
    "predict at a negative size": (
        lambda t: [
            "fit",
            str(write_points(t / "p9.csv")),
            "--law",
            "power",
            "--d",
            "ft_examples",
            "--predict",
            "d=-5",
        ],
        "prediction point {'d': -5.0}: PowerLaw: inputs (d) must be finite and > 0",
    ),
    "zero-shot for a form undefined at 0": (
        lambda t: [
            "fit",
            str(write_points(t / "pa.csv")),
            "--law",
            "power",
            "--d",
            "ft_examples",
            "--zero-shot",
        ],
        "the power law is not defined at D_f = 0",
    ),
    "zero size without --zero-shot": (
        lambda t: [
            "fit",
            _bad_csv(t, "zero.csv", "d,loss\n0,3\n1,2\n2,1.5\n4,1.2\n8,1.1\n"),
            "--law",
            "rectified",
            "--d",
            "d",
        ],
        "column 'd' has a non-positive size 0",
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


def test_fit_loss_lsq_and_predict_with_interval(tmp_path):
    csv = write_points(tmp_path / "runs.csv")
    proc = run_cli(
        "fit", str(csv), "--x", "model_size", "--d", "ft_examples", "--loss", "lsq", "--heldout", "none",
        "--predict", "x=1e10,d=1e7", "--predict", "model_size=1e11,ft_examples=1e8", "--bootstrap", "30", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["loss"] == "lsq" and payload["solver"] == "auto"
    (fit,) = payload["fits"]
    first, second = fit["predictions"]
    truth = TRUTH["A"] * 1e10 ** -TRUTH["alpha"] * 1e7 ** -TRUTH["beta"] + TRUTH["E"]
    assert first["x"] == 1e10 and first["d"] == 1e7
    assert first["loss"] == pytest.approx(truth, abs=0.01)
    assert first["low"] <= first["loss"] <= first["high"] and first["se"] > 0
    # an extrapolation 10x beyond the data is less certain than a point inside it
    assert second["high"] - second["low"] > first["high"] - first["low"]


def test_fit_predict_table_defaults_to_a_bootstrap(tmp_path):
    csv = write_points(tmp_path / "runs.csv")
    proc = run_cli("fit", str(csv), "--law", "power", "--d", "ft_examples", "--predict", "d=1e8")
    assert proc.returncode == 0, proc.stderr
    assert "predicted loss" in proc.stdout and "low 95%" in proc.stdout
    assert proc.stderr == ""


def test_fit_zero_shot_point_is_used_by_the_rectified_law(tmp_path):
    truth = dict(B=50.0, D_l=20.0, beta=0.6, E=1.0)
    d = np.array([0, 25, 50, 100, 200, 400, 800, 1600, 3200])
    loss = truth["B"] / (truth["D_l"] + d ** truth["beta"]) + truth["E"]
    csv = tmp_path / "curve.csv"
    pd.DataFrame({"d": d, "loss": loss}).to_csv(csv, index=False)
    proc = run_cli(
        "fit", str(csv), "--law", "rectified", "--d", "d", "--zero-shot", "--heldout", "none", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    (fit,) = json.loads(proc.stdout)["fits"]
    assert fit["n_fit"] == len(d)
    assert fit["delta_e"] < 1e-3 and fit["params"]["beta"] == pytest.approx(0.6, abs=0.02)


def test_fit_law_compare_and_auto_choose_by_extrapolation(tmp_path):
    # A curve that flattens at small D (rectified): power-type forms extrapolate it worse.
    d = np.array([50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600])
    loss = 80.0 / (30.0 + d**0.7) + 0.9
    csv = tmp_path / "curve.csv"
    pd.DataFrame({"d": d, "loss": loss}).to_csv(csv, index=False)
    proc = run_cli("fit", str(csv), "--law", "compare", "--d", "d", "--json")
    assert proc.returncode == 0, proc.stderr
    comparison = json.loads(proc.stdout)
    forms = [s["form"] for s in comparison["scores"]]
    assert {"power", "rectified", "vanilla"} <= set(forms)
    scores = {s["form"]: s["score"] for s in comparison["scores"]}
    assert scores["rectified"] < scores["power"]
    assert comparison["chosen"] == forms[0] and comparison["reason"].startswith(forms[0])
    auto = run_cli("fit", str(csv), "--law", "auto", "--d", "d", "--json")
    assert auto.returncode == 0, auto.stderr
    payload = json.loads(auto.stdout)
    assert payload["law"] == comparison["chosen"] and payload["fits"][0]["law"] == payload["law"]
    assert payload["selection"]["chosen"] == payload["law"]


def test_fit_auto_never_sees_the_heldout_points(tmp_path):
    """The selection runs on the fit split, so Δh stays a test of the chosen form."""
    from ftscale.laws.selection import compare_forms

    d = np.array([50, 100, 200, 400, 800, 1600, 3200, 6400])
    loss = 80.0 / (30.0 + d**0.7) + 0.9
    frame = pd.DataFrame({"d": d, "loss": loss})
    direct = compare_forms(frame[frame.d < 6400], x=None, d="d", forms=["power", "rectified"])
    csv = tmp_path / "curve.csv"
    frame.to_csv(csv, index=False)
    proc = run_cli("fit", str(csv), "--law", "auto", "--d", "d", "--residual", "linear", "--json")
    selection = json.loads(proc.stdout)["selection"]
    by_form = {s["form"]: s["score"] for s in selection["scores"]}
    for score in direct.scores:
        assert by_form[score.form] == pytest.approx(score.score, rel=1e-9)


def test_cli_app_imports_no_numerics():
    """``ftscale --help`` and the start of every command stay fast: the app imports no numpy/pandas/torch."""
    import subprocess
    import sys

    code = "import sys, ftscale.cli.app; print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
