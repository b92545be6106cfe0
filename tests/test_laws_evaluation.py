"""Fit / held-out split, Δe / Δh, seed aggregation and FitReport serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ftscale.errors import DataError, FitError
from ftscale.laws.evaluation import aggregate_cells, evaluate_fit, fit_errors, split_points
from ftscale.laws.forms import MultiplicativeLaw, PowerLaw

# A coarse grid of starts keeps tests quick where the exact optimum does not matter.
COARSE = {"a": (0.0, 5.0, 10.0), "alpha": (0.0, 0.5), "beta": (0.0, 0.5), "e": (-1.0, 0.0)}
TRUE = dict(A=3.9e3, alpha=0.40, beta=0.051, E=0.62)  # PAPER Table 4, En-De Prompt, model-size law


def grid(noise: float = 0.0, seeds: int = 1, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    law = MultiplicativeLaw.from_params(**TRUE)
    rows = []
    for x in (1e9, 2e9, 4e9, 8e9, 16e9):
        for d in (8e3, 1e4, 2e4, 4e4, 6e4, 8e4, 1e5):
            clean = float(law.predict(np.array([[x, d]]))[0])
            for seed in range(seeds):
                rows.append({"x": x, "d": d, "seed": seed, "loss": clean + noise * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_split_largest_holds_out_any_axis_at_its_maximum():
    df = pd.DataFrame({"x": [1, 1, 1, 2, 2, 2, 3, 3, 3], "d": [10, 20, 30] * 3})
    fit, held = split_points(df, ("x", "d"), "largest")
    assert (fit == ~held).all()
    assert held.sum() == 5  # row x=3 (3 points) + column d=30 (3 points) − the shared corner
    assert set(zip(df.x[fit], df.d[fit], strict=True)) == {(1, 10), (1, 20), (2, 10), (2, 20)}


def test_split_explicit_values_and_none():
    df = pd.DataFrame({"x": [1e9, 1e9, 16e9, 16e9], "d": [1e4, 1e5, 1e4, 1e5]})
    fit, held = split_points(df, ("x", "d"), {"x": [16e9]})
    assert list(held) == [False, False, True, True]
    # An interior value (like the paper's 209B pretraining checkpoint) can be held out.
    fit, held = split_points(df, ("x", "d"), {"d": [1e4]})
    assert list(held) == [True, False, True, False]
    fit, held = split_points(df, ("x", "d"), None)
    assert fit.all() and not held.any()
    fit, held = split_points(df, ("x", "d"), "none")
    assert fit.all()


def test_split_rejects_unknown_values_and_axes():
    df = pd.DataFrame({"x": [1.0, 2.0], "d": [10.0, 20.0]})
    with pytest.raises(DataError, match=r"x=3 is not in the data; values are 1, 2"):
        split_points(df, ("x", "d"), {"x": [3.0]})
    with pytest.raises(DataError, match="not one of the law's axes"):
        split_points(df, ("x", "d"), {"model": [1.0]})
    with pytest.raises(DataError, match="not columns"):
        split_points(df, ("x", "tokens"))


def test_fit_errors_on_known_deviations():
    law = PowerLaw.from_params(A=10.0, beta=0.5, E=1.0)
    d = np.array([1.0, 4.0, 100.0])
    truth = law.predict(d)
    y = truth + np.array([0.1, -0.2, 0.3])
    err = fit_errors(law, d, y)
    assert err["mad"] == pytest.approx(0.2)
    assert err["max_abs"] == pytest.approx(0.3)
    assert err["rmse_log"] == pytest.approx(np.sqrt(np.mean((np.log(truth) - np.log(y)) ** 2)))
    assert err["n"] == 3
    empty = fit_errors(law, np.array([]), np.array([]))
    assert empty["n"] == 0 and math.isnan(empty["mad"])


def test_aggregate_cells_means_over_seeds_and_keeps_spread():
    df = pd.DataFrame(
        {"x": [1, 1, 1, 2], "d": [5, 5, 5, 5], "seed": [0, 1, 2, 0], "loss": [1.0, 2.0, 3.0, 4.0]}
    )
    out = aggregate_cells(df, ["x", "d"], "loss")
    assert list(out.columns) == ["x", "d", "loss", "loss_std", "n_seeds"]
    assert list(out["loss"]) == [2.0, 4.0]
    assert list(out["n_seeds"]) == [3, 1]
    assert out["loss_std"].iloc[0] == pytest.approx(1.0) and out["loss_std"].iloc[1] == 0.0


def test_evaluate_fit_recovers_a_noiseless_law():
    # Wide ranges in both axes make (A, α, β, E) identifiable, unlike the paper's narrow PET data range.
    truth = dict(A=400.0, alpha=0.3, beta=0.25, E=0.8)
    law = MultiplicativeLaw.from_params(**truth)
    xs, ds = np.meshgrid([1e6, 1e7, 1e8, 1e9, 1e10], [1e2, 1e3, 1e4, 3e4, 1e5, 1e6, 1e7])
    X = np.column_stack([xs.ravel(), ds.ravel()])
    df = pd.DataFrame({"x": X[:, 0], "d": X[:, 1], "loss": law.predict(X)})
    report = evaluate_fit(MultiplicativeLaw(), df, x="x", d="d", y="loss")
    assert report.law == "multiplicative"
    assert report.n_fit == 4 * 6 and report.n_heldout == 5 * 7 - 24
    for name, value in truth.items():
        assert report.params[name] == pytest.approx(value, rel=1e-3), name
    assert report.converged
    assert report.delta_e < 1e-4 and report.delta_h < 1e-3
    assert report.rmse_log_fit < 1e-4
    assert report.heldout_note == ""


def test_evaluate_fit_averages_seeds_before_fitting():
    noisy = grid(noise=0.01, seeds=3, rng_seed=3)
    report = evaluate_fit(MultiplicativeLaw(grid=COARSE), noisy, x="x", d="d", y="loss")
    assert report.n_fit + report.n_heldout == 35  # cells, not runs
    # Held-out error of an extrapolating law is larger than the in-sample error on noisy data.
    assert report.delta_e > 0 and report.delta_h > 0


def test_evaluate_fit_without_heldout_points_states_it():
    report = evaluate_fit(MultiplicativeLaw(grid=COARSE), grid(), x="x", d="d", y="loss", heldout="none")
    assert report.n_heldout == 0 and math.isnan(report.delta_h)
    assert "no held-out points" in report.heldout_note
    payload = json.loads(json.dumps(report.to_dict()))  # valid JSON: NaN became null
    assert payload["delta_h"] is None and payload["n_fit"] == 35


def test_evaluate_fit_needs_more_points_than_parameters():
    small = grid().query("x <= 2e9 and d <= 1e4")  # 4 cells; "largest" leaves 1 to fit
    with pytest.raises(FitError, match="4 parameters but only 1 fitting points"):
        evaluate_fit(MultiplicativeLaw(), small, x="x", d="d", y="loss")


def test_evaluate_fit_single_factor_law():
    df = grid().query("x == 1e9")
    report = evaluate_fit(
        PowerLaw(grid={"a": (0.0, 5.0), "beta": (0.0, 0.5), "e": (-1.0, 0.0)}), df, x=None, d="d", y="loss"
    )
    assert report.law == "power" and report.n_heldout == 1
    assert report.delta_e < 1e-4


def test_evaluate_fit_with_bootstrap_reports_ci():
    calls = {}

    class FakeBootstrap:
        def ci(self, level):
            calls["level"] = level
            return pd.DataFrame({"estimate": [1.0], "low": [0.5], "high": [2.0], "se": [0.1]}, index=["A"])

    def fake_bootstrap(law, X, y, n_resamples, seed):
        calls.update(n=n_resamples, seed=seed, rows=len(y))
        return FakeBootstrap()

    report = evaluate_fit(
        MultiplicativeLaw(grid=COARSE), grid(), bootstrap=7, seed=5, level=0.9, bootstrap_fn=fake_bootstrap
    )
    assert calls == {"n": 7, "seed": 5, "rows": 24, "level": 0.9}
    assert report.ci_level == 0.9 and report.to_dict()["ci"]["A"]["high"] == 2.0
