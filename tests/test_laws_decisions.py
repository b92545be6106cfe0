"""Seed-aware statistics and decision helpers: noise floor, lack of fit, equivalent data, P(better), bootstrap
fallbacks and predictions, and the extrapolation-based choice of a law form."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pandas as pd
import pytest

from ftscale.laws import (
    MultiplicativeLaw,
    PowerLaw,
    bootstrap,
    data_multiplier,
    equivalent_data_size,
    prob_better,
)
from ftscale.laws.evaluation import evaluate_fit, lack_of_fit, noise_floor
from ftscale.laws.selection import compare_forms


def test_noise_floor_is_the_mean_absolute_error_of_seed_means():
    rng = np.random.default_rng(0)
    std, n = np.full(400, 0.02), np.full(400, 4)
    floor = noise_floor(std, n)
    assert floor == pytest.approx(math.sqrt(2 / math.pi) * 0.02 / 2)
    # Monte Carlo: the mean |mean of 4 draws − truth| matches
    draws = rng.normal(0, 0.02, size=(20000, 4)).mean(axis=1)
    assert np.mean(np.abs(draws)) == pytest.approx(floor, rel=0.03)
    assert math.isnan(noise_floor([0.01, 0.02], [1, 1]))  # single seeds: no spread to judge by


def _replicated(law_values, noise, seeds, rng):
    runs = law_values[:, None] + rng.normal(0, noise, size=(len(law_values), seeds))
    return runs.mean(axis=1), runs.std(axis=1, ddof=1), np.full(len(law_values), seeds)


def test_lack_of_fit_accepts_the_truth_and_rejects_a_wrong_law():
    rng = np.random.default_rng(1)
    d = np.geomspace(50, 1600, 6)
    truth = 3.0 * d**-0.3 + 1.0
    p_truth = []
    for _ in range(200):
        mean, std, n = _replicated(truth, 0.01, 3, rng)
        p_truth.append(lack_of_fit(mean, truth, std, n, 0).p)  # the truth itself: no fitted parameters
    # exact law: p is uniform, so about 5 % of replicates fall below 0.05
    assert np.mean(np.array(p_truth) < 0.05) == pytest.approx(0.05, abs=0.04)
    mean, std, n = _replicated(truth, 0.01, 3, rng)
    wrong = truth + 0.03 * np.sin(np.log(d))  # a systematic 0.03-nat misfit, three times the seed noise
    result = lack_of_fit(mean, wrong, std, n, 0)
    assert result.p < 0.01 and "misses" in result.describe()
    assert math.isnan(lack_of_fit(mean, truth, std, np.ones(6), 3).p)  # no replicates: no test


def test_evaluate_fit_reports_floor_and_lack_of_fit():
    rng = np.random.default_rng(2)
    rows = []
    for d in np.geomspace(50, 6400, 8):
        for seed in range(3):
            rows.append({"d": d, "loss": 3.0 * d**-0.3 + 1.0 + rng.normal(0, 0.005), "seed": seed})
    frame = pd.DataFrame(rows)
    report = evaluate_fit(PowerLaw(), frame, x=None, d="d")
    held = frame[frame["d"] == frame["d"].max()]["loss"]  # "largest": the largest D_f cell is held out
    assert report.noise_floor_h == pytest.approx(math.sqrt(2 / math.pi) * held.std(ddof=1) / math.sqrt(3))
    assert 0 <= report.lack_of_fit_p <= 1


def test_equivalent_data_and_multiplier():
    law = PowerLaw.from_params(A=10.0, beta=0.5, E=1.0)
    assert equivalent_data_size(law, None, 2.0) == pytest.approx(100.0)
    assert math.isinf(equivalent_data_size(law, None, 0.9))  # below the floor E: never reached
    assert equivalent_data_size(law, None, 400.0, d_min=1e-3) == 1e-3  # already below at the smallest size
    fast = MultiplicativeLaw.from_params(A=10.0, alpha=0.0, beta=0.5, E=1.0)
    slow = MultiplicativeLaw.from_params(A=20.0, alpha=0.0, beta=0.5, E=1.0)
    # slow needs 4x the data for the same loss: 20/sqrt(4d) = 10/sqrt(d)
    assert data_multiplier(fast, slow, 1.0, 100.0) == pytest.approx(4.0)
    assert data_multiplier(slow, fast, 1.0, 100.0) == pytest.approx(0.25)


def test_prob_better_pairs_draws():
    good = [PowerLaw.from_params(A=10.0, beta=0.5, E=1.0 + e) for e in np.linspace(-0.01, 0.01, 50)]
    bad = [PowerLaw.from_params(A=10.0, beta=0.5, E=1.2 + e) for e in np.linspace(-0.01, 0.01, 50)]
    assert prob_better(good, bad, None, None, 100.0) == (1.0, 50)
    assert prob_better(bad, good, None, None, 100.0) == (0.0, 50)
    assert math.isnan(prob_better([], good, None, None, 100.0)[0])


def test_bootstrap_predictions():
    d = np.geomspace(50, 6400, 10)
    y = 3.0 * d**-0.3 + 1.0 + np.random.default_rng(3).normal(0, 0.003, len(d))
    law = PowerLaw().fit(d, y)
    result = bootstrap(law, d, y, n_resamples=40, seed=0, prefit=True)
    draws = result.predict(law, [100.0, 1e5])
    assert draws.shape == (40 - result.n_failed, 2)
    assert np.all(draws[:, 1] < draws[:, 0])
    low, high, se = result.predict_ci(law, [100.0, 1e5])
    assert np.all(low <= law.predict([100.0, 1e5])) and np.all(law.predict([100.0, 1e5]) <= high)
    assert np.all(se > 0) and result.n_failed == 0


def test_failed_warm_refits_are_redone_from_the_grid(monkeypatch):
    """A resample whose warm-started refit did not converge is refitted cold, not dropped."""
    bootstrap_module = importlib.import_module(
        "ftscale.laws.bootstrap"
    )  # the package shadows it by a function

    d = np.geomspace(50, 6400, 10)
    y = 3.0 * d**-0.3 + 1.0 + np.random.default_rng(3).normal(0, 0.003, len(d))
    law = PowerLaw().fit(d, y)
    reference = bootstrap(law, d, y, n_resamples=6, seed=0, prefit=True)
    warm = bootstrap_module._run_warm_started

    def every_other_fails(*args, **kwargs):
        xs, ok = warm(*args, **kwargs)
        ok[::2] = False
        return xs, ok

    monkeypatch.setattr(bootstrap_module, "_run_warm_started", every_other_fails)
    result = bootstrap(law, d, y, n_resamples=6, seed=0, prefit=True)
    assert result.n_cold == 3 and result.n_failed == 0 and list(result.samples.index) == list(range(6))
    # the cold refits reach the warm refits' optima
    np.testing.assert_allclose(result.samples.to_numpy(), reference.samples.to_numpy(), rtol=1e-5)


def test_failed_warm_two_stage_refits_are_redone_from_the_grid(monkeypatch):
    from ftscale.laws import bootstrap_two_stage

    bootstrap_module = importlib.import_module("ftscale.laws.bootstrap")

    rng = np.random.default_rng(4)
    X = np.array([(x, dd) for x in np.geomspace(1e6, 1e8, 4) for dd in np.geomspace(100, 1e5, 5)])
    y = MultiplicativeLaw.from_params(A=30.0, alpha=0.2, beta=0.15, E=1.0).predict(X) + rng.normal(
        0, 0.002, len(X)
    )
    factors = {"model_size": (X, y)}
    warm = bootstrap_module._warm_two_stage_rows

    def none_converge(args):
        stage1_x, ok, per_factor = warm(args)
        return stage1_x, np.zeros_like(ok), per_factor

    monkeypatch.setattr(bootstrap_module, "_warm_two_stage_rows", none_converge)
    result = bootstrap_two_stage(factors, n_resamples=3, seed=0, stage1=("model_size",))
    assert result.n_cold == 3 and result.n_failed == 0 and len(result.samples) == 3


def test_compare_forms_prefers_the_form_that_extrapolates():
    d = np.geomspace(50, 25600, 10)
    frame = pd.DataFrame({"d": d, "loss": 80.0 / (30.0 + d**0.7) + 0.9})
    comparison = compare_forms(frame, x=None, d="d", forms=["power", "rectified"])
    assert comparison.chosen == "rectified"
    table = comparison.table()
    assert list(table["form"]) == ["rectified", "power"]
    assert {"largest-d", "rolling-d"} <= set(comparison.scores[0].errors)
    assert comparison.scores[0].aic < comparison.scores[1].aic  # the true form also fits better in-sample
    with pytest.raises(Exception, match="needs --x"):
        compare_forms(frame, x=None, d="d", forms=["multiplicative"])
