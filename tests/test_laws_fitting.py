"""Fitting: recovery of known laws, convergence and warnings, fixed parameters, two-stage fit, bootstrap."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from ftscale.errors import FitError
from ftscale.laws.bootstrap import bootstrap, bootstrap_two_stage
from ftscale.laws.fitting import fit_two_stage
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


@pytest.mark.parametrize("solver", ["multistart", "vp"])
def test_multiplicative_recovery_linear_residual(solver):
    y = noisy(MultiplicativeLaw, MULT)
    law = MultiplicativeLaw(solver=solver).fit(GRID, y)
    # the Hoffmann grid's 750 starts, or the variable-projection grid of (alpha, beta) pairs
    assert law.converged_ and law.n_starts_ == (750 if solver == "multistart" else 36**2)
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


# ----- warm-started two-stage bootstrap and pairing by resample number -------------------------------------------

SMALL_GRID = {
    "a": [5.0, 10.0],
    "alpha": [0.0, 0.5],
}  # fewer starts keep the cold (full refit) path affordable


def _compare_warm_cold(factors, n_resamples, seed):
    cold = bootstrap_two_stage(factors, n_resamples=n_resamples, seed=seed, warm_start=False, grid=SMALL_GRID)
    warm = bootstrap_two_stage(factors, n_resamples=n_resamples, seed=seed, grid=SMALL_GRID)
    assert list(warm.samples.columns) == list(cold.samples.columns)
    assert warm.estimate == cold.estimate
    a, b = warm.paired_with(cold)
    assert len(a) >= n_resamples - 1  # both converge on (nearly) every resample
    # same resample -> same optimum: the local refit from the full-data optimum finds the grid fit's minimum
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-4)


def test_bootstrap_two_stage_warm_matches_cold():
    factors, _, _ = make_factors(seed=3)
    _compare_warm_cold({k: factors[k] for k in ("model_size", "pet_size")}, n_resamples=5, seed=1)


@pytest.mark.slow
def test_bootstrap_two_stage_warm_matches_cold_20_resamples():
    factors, _, _ = make_factors(seed=3)
    _compare_warm_cold(factors, n_resamples=20, seed=1)


def test_bootstrap_two_stage_covers_truth_and_is_seeded():
    factors, truths, shared = make_factors(seed=4)
    factors = {k: factors[k] for k in ("model_size", "pretrain_tokens")}
    res = bootstrap_two_stage(factors, n_resamples=200, seed=0)
    assert res.n_failed <= 10
    assert res.samples.index.name == "resample" and len(res.samples) == 200 - res.n_failed
    assert list(res.samples.columns) == [
        "beta",
        "E",
        "model_size.A",
        "model_size.alpha",
        "pretrain_tokens.A",
        "pretrain_tokens.alpha",
    ]
    ci = res.ci(0.99)
    for name, value in [
        ("beta", shared["beta"]),
        ("E", shared["E"]),
        ("model_size.alpha", truths["model_size"]["alpha"]),
        ("pretrain_tokens.alpha", truths["pretrain_tokens"]["alpha"]),
    ]:
        assert ci.loc[name, "low"] <= value <= ci.loc[name, "high"], name
        assert ci.loc[name, "low"] < ci.loc[name, "estimate"] < ci.loc[name, "high"], name
    # seeded: same draws again, in one process or two
    again = bootstrap_two_stage(factors, n_resamples=6, seed=0, n_jobs=2)
    np.testing.assert_allclose(again.samples.to_numpy(), res.samples.loc[again.samples.index].to_numpy())
    with pytest.raises(FitError, match="weights"):
        bootstrap_two_stage(factors, n_resamples=2, weights={})


@pytest.mark.slow
def test_bootstrap_two_stage_coverage_over_replicate_data_sets():
    hits = {"beta": 0, "E": 0, "model_size.alpha": 0}
    n_sets = 10
    for rep in range(n_sets):
        factors, truths, shared = make_factors(seed=100 + rep)
        factors = {k: factors[k] for k in ("model_size", "pretrain_tokens")}
        ci = bootstrap_two_stage(factors, n_resamples=150, seed=rep).ci(0.95)
        truth = {"beta": shared["beta"], "E": shared["E"], "model_size.alpha": truths["model_size"]["alpha"]}
        for name in hits:
            hits[name] += ci.loc[name, "low"] <= truth[name] <= ci.loc[name, "high"]
    for name, count in hits.items():
        assert count >= 7, (name, count)  # nominal 95 %: 7 of 10 is far in the binomial tail


def test_bootstrap_samples_pair_by_resample_number():
    from ftscale.laws.critical import critical_data_size_ci

    D = np.geomspace(1e3, 1e6, 10)
    rng = np.random.default_rng(7)
    y_a = PowerLaw.from_params(A=40.0, beta=0.3, E=1.0).predict(D) + rng.normal(0, 0.002, len(D))
    y_b = PowerLaw.from_params(A=10.0, beta=0.2, E=1.0).predict(D) + rng.normal(0, 0.002, len(D))
    a = bootstrap(PowerLaw(), D, y_a, n_resamples=40, seed=3)
    b = bootstrap(PowerLaw(), D, y_b, n_resamples=40, seed=3)
    for res in (a, b):
        assert res.samples.index.name == "resample"
        assert res.samples.index.is_monotonic_increasing and res.samples.index.max() < 40
        assert len(res.samples) + res.n_failed == 40
    # drop one resample from a: pairing keeps the common resample numbers, in order
    a.samples = a.samples.drop(index=a.samples.index[0])
    pa, pb = a.paired_with(b)
    assert list(pa.index) == list(pb.index) == sorted(set(a.samples.index) & set(b.samples.index))
    ci = critical_data_size_ci(pa, pb, form_a="power")
    assert ci.n_resamples == len(pa)
    assert ci.low <= ci.estimate <= ci.high


def test_bootstrap_two_stage_additive_refits_improve_on_the_estimate():
    from ftscale.laws.bootstrap import _factor_counts
    from ftscale.laws.fitting import _stage1_problem

    factors, _, _ = make_factors(seed=1)
    factors = {k: factors[k] for k in ("model_size", "pretrain_tokens")}
    grid = {"a": [0.0, 5.0], "b": [0.0, 5.0], "alpha": [0.0, 0.5]}
    res = bootstrap_two_stage(factors, n_resamples=8, seed=5, form="additive", residual="log", grid=grid)
    assert res.n_failed == 0
    assert list(res.samples.columns) == [
        "beta",
        "E",
        *(f"{f}.{p}" for f in factors for p in ("A", "alpha", "B")),
    ]
    # each resample's refit (started at the full-data estimate) lowers that resample's stage-1 objective
    config = {"residual": "log", "huber_delta": 1e-3, "reduction": "sum", "grid": grid}
    counts = _factor_counts(factors, 8, 5)
    joint, _, _, _ = _stage1_problem(factors, tuple(factors), AdditiveLaw, config, counts)

    def raw(row):
        vec = [row["beta"], np.log(row["E"])]
        for f in factors:
            vec += [np.log(row[f"{f}.A"]), row[f"{f}.alpha"], np.log(row[f"{f}.B"])]
        return np.array(vec)

    start = raw(res.estimate)
    improved = 0
    for r, row in res.samples.iterrows():
        refit, _ = joint(raw(row)[None], np.array([r]))
        at_estimate, _ = joint(start[None], np.array([r]))
        assert refit[0] <= at_estimate[0] * (1 + 1e-12)
        improved += refit[0] < at_estimate[0] * (1 - 1e-6)
    assert improved >= 6  # resampled data move the optimum


def test_bootstrap_prefit_reuses_the_fitted_optimum() -> None:
    rng = np.random.default_rng(0)
    X = np.array([[x, d] for x in (1e6, 2e6, 4e6, 8e6) for d in (100, 200, 400, 800, 1600)], float)
    y = 50 * X[:, 0] ** -0.3 * X[:, 1] ** -0.1 + 1 + rng.normal(0, 0.01, len(X))
    law = MultiplicativeLaw().fit(X, y)
    refit = bootstrap(law, X, y, n_resamples=20, seed=1)

    class NoRefit(MultiplicativeLaw):
        def fit(self, *args, **kwargs):  # the prefit path must not fit the full data again
            raise AssertionError("full-data fit repeated")

    prefitted = NoRefit()
    prefitted.__dict__.update(copy.deepcopy(law.__dict__))
    reused = bootstrap(prefitted, X, y, n_resamples=20, seed=1, prefit=True)
    np.testing.assert_allclose(reused.samples.to_numpy(), refit.samples.to_numpy(), rtol=1e-6)
