"""Fitting: recovery of known laws, convergence and warnings, fixed parameters, two-stage fit, bootstrap."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ftscale.errors import FitError
from ftscale.laws.fitting import bootstrap, bootstrap_two_stage, fit_two_stage
from ftscale.laws.forms import AdditiveLaw, FitWarning, MultiplicativeLaw, PowerLaw

# paper-like grid: 5 values of X (model sizes), 9 finetuning data sizes, log-spaced
X_VALUES = np.geomspace(1e9, 1.6e10, 5)
D_VALUES = np.geomspace(8e3, 2e6, 9)
GRID = np.array([(x, d) for x in X_VALUES for d in D_VALUES])
NOISE = 0.002  # absolute noise on L, of the order of the paper's fit errors


def noisy(law_cls, params, seed=0, X=GRID):
    rng = np.random.default_rng(seed)
    return law_cls.from_params(**params).predict(X) + rng.normal(0, NOISE, len(X))


MULT = {"A": 3.3e3, "alpha": 0.34, "beta": 0.14, "E": 1.0}  # Table 4, En-Zh FMT
ADD = {"A": 2.0e3, "alpha": 0.35, "B": 60.0, "beta": 0.3, "E": 1.0}


def test_multiplicative_recovery_linear_residual():
    y = noisy(MultiplicativeLaw, MULT)
    law = MultiplicativeLaw().fit(GRID, y)
    assert law.converged_ and law.n_starts_ == 750
    assert law.params_["alpha"] == pytest.approx(MULT["alpha"], abs=0.03)
    assert law.params_["beta"] == pytest.approx(MULT["beta"], abs=0.03)
    assert law.params_["E"] == pytest.approx(MULT["E"], abs=0.05)
    # the fit is at least as good as the truth on its own objective
    truth_raw = MultiplicativeLaw.raw_from_natural(**MULT)
    assert law.loss_ <= law.objective(truth_raw, GRID, y) + 1e-12


def test_additive_recovery_log_residual():
    y = noisy(AdditiveLaw, ADD, seed=1)
    law = AdditiveLaw(residual="log").fit(GRID, y)
    assert law.converged_
    assert law.params_["alpha"] == pytest.approx(ADD["alpha"], abs=0.05)
    assert law.params_["beta"] == pytest.approx(ADD["beta"], abs=0.05)
    assert law.params_["E"] == pytest.approx(ADD["E"], abs=0.05)


def test_fixed_parameters_are_held():
    y = noisy(MultiplicativeLaw, MULT, seed=2)
    law = MultiplicativeLaw(fixed={"beta": 0.14, "E": 1.0}).fit(GRID, y)
    assert law.n_params == 2 and law.n_starts_ == 30
    assert law.params_["beta"] == 0.14 and law.params_["E"] == pytest.approx(1.0)
    assert law.params_["alpha"] == pytest.approx(MULT["alpha"], abs=0.02)


def test_convergence_flag_false_when_iterations_run_out():
    y = noisy(MultiplicativeLaw, MULT, seed=3)
    with pytest.warns(FitWarning, match="not converged"):
        law = MultiplicativeLaw(
            max_iter=2, grid={"a": [0.0], "alpha": [2.0], "beta": [2.0], "e": [-1.0]}
        ).fit(GRID, y)
    assert not law.converged_
    assert any("not converged" in w for w in law.warnings_)


def test_non_identifiable_fit_warns():
    # a single finetuning data size: A and D^-beta cannot be told apart, the objective is flat along a/beta
    X = np.c_[X_VALUES, np.full(5, 1e5)]
    X = np.r_[X, X * [1.0, 1.0]]
    y = MultiplicativeLaw.from_params(**MULT).predict(X)
    with pytest.warns(FitWarning, match="non-identifiable"):
        law = MultiplicativeLaw(residual="log", grid={"a": [5.0, 10.0], "e": [0.0]}).fit(X, y)
    flat = [w for w in law.warnings_ if "non-identifiable" in w]
    assert flat and "a" in flat[0] and "beta" in flat[0]


def test_clean_fit_has_no_warnings():
    y = noisy(MultiplicativeLaw, MULT, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        law = MultiplicativeLaw().fit(GRID, y)
    assert law.warnings_ == []


def test_vanishing_floor_warns():
    # data with no irreducible loss at all: E runs to the bottom of its box, or so far down that it no longer
    # moves any prediction (then the objective is flat along e)
    D = np.geomspace(1e3, 1e7, 12)
    y = 50.0 * D**-0.3
    with pytest.warns(FitWarning, match="E at lower bound|flat along e"):
        law = PowerLaw(residual="log").fit(D, y)
    assert law.params_["E"] < 1e-4


def make_factors(seed=0):
    rng = np.random.default_rng(seed)
    shared = {"beta": 0.12, "E": 0.9}
    truths = {
        "model_size": {"A": 2.0e3, "alpha": 0.30, **shared},
        "pretrain_tokens": {"A": 5.0e2, "alpha": 0.18, **shared},
        "pet_size": {"A": 1.5, "alpha": 0.003, **shared},
    }
    xs = {
        "model_size": X_VALUES,
        "pretrain_tokens": np.geomspace(8.4e10, 2.83e11, 5),
        "pet_size": np.array([50.0, 100.0, 150.0, 200.0, 300.0]),
    }
    factors = {}
    for name, truth in truths.items():
        X = np.array([(x, d) for x in xs[name] for d in D_VALUES])
        y = MultiplicativeLaw.from_params(**truth).predict(X) + rng.normal(0, NOISE / 2, len(X))
        factors[name] = (X, y)
    return factors, truths, shared


def test_two_stage_recovers_shared_beta_and_e():
    factors, _, shared = make_factors()
    result = fit_two_stage(factors)
    assert result.stage1_factors == ("model_size", "pretrain_tokens")
    assert result.converged
    assert result.shared["beta"] == pytest.approx(shared["beta"], abs=0.02)
    assert result.shared["E"] == pytest.approx(shared["E"], abs=0.05)
    assert set(result.laws) == set(factors)
    for law in result.laws.values():
        assert law.params_["beta"] == pytest.approx(result.shared["beta"])
        assert law.params_["E"] == pytest.approx(result.shared["E"])
        assert law.n_params == 2
    assert result.laws["model_size"].params_["alpha"] == pytest.approx(0.30, abs=0.03)
    assert result.laws["pretrain_tokens"].params_["alpha"] == pytest.approx(0.18, abs=0.03)
    assert abs(result.laws["pet_size"].params_["alpha"]) < 0.02
    assert set(result.params().columns) == {"A", "alpha", "beta", "E"}


def test_two_stage_additive_and_fallback_to_all_factors():
    factors, _, _ = make_factors(seed=1)
    only_pet = {"pet_size": factors["pet_size"]}
    result = fit_two_stage(only_pet, form="additive", residual="log", grid={"a": [0.0, 5.0], "b": [0.0, 5.0]})
    assert result.stage1_factors == ("pet_size",)
    assert set(result.laws["pet_size"].params_) == {"A", "alpha", "B", "beta", "E"}
    with pytest.raises(FitError, match="form"):
        fit_two_stage(factors, form="cubic")


def test_bootstrap_intervals_cover_truth():
    y = noisy(MultiplicativeLaw, MULT, seed=5)
    res = bootstrap(
        MultiplicativeLaw(),
        GRID,
        y,
        n_resamples=200,
        seed=0,
        derived={"loss_at_1e6": lambda law: float(law.predict(np.array([[4e9, 1e6]]))[0])},
    )
    assert res.n_failed <= 10
    assert len(res.samples) == 200 - res.n_failed
    ci = res.ci(0.95)
    assert list(ci.columns) == ["estimate", "low", "high", "se"]
    for name in ("alpha", "beta", "E"):
        assert ci.loc[name, "low"] <= MULT[name] <= ci.loc[name, "high"], name
        assert ci.loc[name, "se"] > 0
    truth = float(MultiplicativeLaw.from_params(**MULT).predict(np.array([[4e9, 1e6]]))[0])
    assert ci.loc["loss_at_1e6", "low"] <= truth <= ci.loc["loss_at_1e6", "high"]
    # same seed, same samples
    again = bootstrap(MultiplicativeLaw(), GRID, y, n_resamples=20, seed=0)
    first = bootstrap(MultiplicativeLaw(), GRID, y, n_resamples=20, seed=0)
    np.testing.assert_allclose(again.samples.to_numpy(), first.samples.to_numpy())


@pytest.mark.slow
def test_bootstrap_two_stage_columns():
    factors, _, _ = make_factors(seed=2)
    res = bootstrap_two_stage(factors, n_resamples=3, seed=0)
    assert {"beta", "E", "model_size.alpha", "pet_size.A"} <= set(res.samples.columns)
    assert len(res.samples) + res.n_failed == 3
