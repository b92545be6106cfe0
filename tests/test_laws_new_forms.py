"""The M3 / M4 (Alabdulmohsin et al. 2022), broken (Caballero et al. 2022) and rectified-joint forms: formulas,
analytic gradients (M4's through the implicit-function theorem) against finite differences, numerical safety over
the whole default box, recovery of known parameters, and the registry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import assert_from_params_predicts, assert_objective_gradient
from ftscale.errors import FitError
from ftscale.laws.forms import (
    JOINT_LAWS,
    M4_ALPHA_MIN,
    SINGLE_FACTOR_LAWS,
    BrokenLaw,
    M3Law,
    M4Law,
    PowerLaw,
    RectifiedJointLaw,
    RectifiedLaw,
    ScalingLaw,
    _m4_logit,
    law_class,
)

RNG = np.random.default_rng(0)
D_SINGLE = np.geomspace(200, 1.6e6, 14)
# joint points include zero-shot (D = 0) cells: the rectified-joint law is defined there
X_JOINT = np.c_[np.repeat([1e6, 4e6, 1.6e7, 6.4e7], 6), np.tile(np.r_[0.0, np.geomspace(1e2, 1e6, 5)], 4)]

TRUE = {
    M3Law: {"B": 30.0, "c": 0.4, "gamma": 1e-4},
    M4Law: {"B": 40.0, "c": 0.5, "alpha": 0.7, "E": 0.8, "Delta": 2.0},
    BrokenLaw: {"B": 20.0, "c0": 0.1, "c1": 0.5, "d1": 5e3, "f1": 0.5, "E": 0.9},
    RectifiedJointLaw: {"A": 300.0, "alpha": 0.3, "D_l": 15.0, "beta": 0.5, "E": 0.8},
}
NAMES = {M3Law: "m3", M4Law: "m4", BrokenLaw: "broken", RectifiedJointLaw: "rectified-joint"}


def formula(cls: type[ScalingLaw], p: dict[str, float], X: np.ndarray) -> np.ndarray:
    """Explicit formulas (M4: the root of its equation by plain bisection on (E, E + Delta))."""
    if cls is M3Law:
        return p["B"] * (1 / X + p["gamma"]) ** p["c"]
    if cls is BrokenLaw:
        return p["E"] + p["B"] * X ** -p["c0"] * (1 + (X / p["d1"]) ** (1 / p["f1"])) ** (-p["c1"] * p["f1"])
    if cls is RectifiedJointLaw:
        return p["A"] * X[:, 0] ** -p["alpha"] / (p["D_l"] + X[:, 1] ** p["beta"]) + p["E"]
    lo, hi = np.full(len(X), p["E"]), np.full(len(X), p["E"] + p["Delta"])
    rhs = p["B"] * X ** -p["c"]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = (mid - p["E"]) / (p["E"] + p["Delta"] - mid) ** p["alpha"] > rhs
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def inputs_for(cls: type[ScalingLaw]) -> np.ndarray:
    return X_JOINT if cls.n_inputs == 2 else D_SINGLE


@pytest.mark.parametrize("cls", list(TRUE))
def test_from_params_predicts_the_formula(cls):
    X = inputs_for(cls)
    assert_from_params_predicts(cls, TRUE[cls], X, formula(cls, TRUE[cls], X))
    assert cls.formula
    assert ("Lin et al." if cls is RectifiedJointLaw else "arXiv:") in cls.__doc__  # formula and source


def test_m4_solves_its_equation_and_limits():
    p = TRUE[M4Law]
    pred = M4Law.from_params(**p).predict(D_SINGLE)
    assert np.all((pred > p["E"]) & (pred < p["E"] + p["Delta"]))
    lhs = (pred - p["E"]) / (p["E"] + p["Delta"] - pred) ** p["alpha"]
    np.testing.assert_allclose(lhs, p["B"] * D_SINGLE ** -p["c"], rtol=1e-12)
    # alpha -> 0 is M2 (B·D^-c + E) wherever that stays below epsilon_0
    m4 = M4Law.from_params(**{**p, "alpha": M4_ALPHA_MIN, "Delta": 1e3}).predict(D_SINGLE)
    m2 = PowerLaw.from_params(A=p["B"], beta=p["c"], E=p["E"]).predict(D_SINGLE)
    np.testing.assert_allclose(m4, m2, rtol=2e-2)
    # alpha = 1: (L - E) / (E0 - L) = f has the closed form L = (E + E0·f) / (1 + f)
    f = p["B"] * D_SINGLE ** -p["c"]
    closed = (p["E"] + (p["E"] + p["Delta"]) * f) / (1 + f)
    np.testing.assert_allclose(M4Law.from_params(**{**p, "alpha": 1.0}).predict(D_SINGLE), closed, rtol=1e-13)


def test_m4_root_finder_over_extreme_inputs():
    t = np.r_[-500.0, -60.0, -1.0, 0.0, 1e-9, 3.0, 60.0, 500.0][None, :] * np.ones((5, 1))
    alpha = np.array([[M4_ALPHA_MIN], [0.1], [1.0], [3.0], [10.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = _m4_logit(t, alpha)
    h = s + (alpha - 1) * np.logaddexp(0, s)
    np.testing.assert_allclose(h, t, rtol=1e-13, atol=1e-13)


def test_m3_limits():
    p = TRUE[M3Law]
    law = M3Law.from_params(**p)
    assert law.predict(np.array([1e30]))[0] == pytest.approx(p["B"] * p["gamma"] ** p["c"], rel=1e-12)
    assert law.predict(np.array([1.0]))[0] == pytest.approx(p["B"] * (1 + p["gamma"]) ** p["c"], rel=1e-12)


def test_broken_law_slopes_before_and_after_the_break():
    p = {**TRUE[BrokenLaw], "E": 1e-12, "f1": 0.05}
    law = BrokenLaw.from_params(**p)
    d = np.array([1.0, 2.0, 1e7, 2e7])
    log_l = np.log(law.predict(d))
    assert (log_l[0] - log_l[1]) / np.log(2) == pytest.approx(p["c0"], abs=1e-6)
    assert (log_l[2] - log_l[3]) / np.log(2) == pytest.approx(p["c0"] + p["c1"], abs=1e-6)


def test_rectified_joint_at_zero_data_and_limits():
    p = TRUE[RectifiedJointLaw]
    law = RectifiedJointLaw.from_params(**p)
    X = np.array([[1e6, 0.0], [1e6, 1e12]])
    pred = law.predict(X)
    assert pred[0] == pytest.approx(p["A"] * 1e6 ** -p["alpha"] / p["D_l"] + p["E"], rel=1e-12)
    multiplicative = p["A"] * 1e6 ** -p["alpha"] * 1e12 ** -p["beta"] + p["E"]
    assert pred[1] == pytest.approx(multiplicative, rel=1e-6)
    with pytest.raises(FitError, match="> 0"):  # the single-factor forms are not defined at D = 0
        M4Law().fit(np.r_[0.0, D_SINGLE], np.ones(15))


@pytest.mark.parametrize("cls", list(TRUE))
@pytest.mark.parametrize("residual", ["linear", "log"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_analytic_gradient_matches_finite_differences(cls, residual, reduction):
    X = inputs_for(cls)
    y = formula(cls, TRUE[cls], X) * np.exp(RNG.normal(0, 0.01, len(X)))
    # delta between the residual sizes so both Huber branches are exercised
    law = cls(residual=residual, reduction=reduction, huber_delta=3e-3)
    assert_objective_gradient(law, cls.raw_from_natural(**TRUE[cls]), X, y, RNG)


@pytest.mark.parametrize("cls", list(TRUE))
def test_log_prediction_vjp_matches_finite_differences_across_the_grid(cls):
    """Every grid start (M4 far from its root's easy region, broken with sharp and smooth breaks)."""
    law = cls()
    log_inputs = law._check_X(inputs_for(cls))
    raw = law.starting_points()[RNG.choice(len(law.starting_points()), 64, replace=False)]
    log_pred, vjp = law.log_prediction(raw, log_inputs)
    coef = RNG.normal(size=log_pred.shape)
    analytic = vjp(coef)
    h = 1e-6
    for j in range(raw.shape[1]):
        step = np.zeros(raw.shape[1])
        step[j] = h
        diff = law.log_prediction(raw + step, log_inputs)[0] - law.log_prediction(raw - step, log_inputs)[0]
        numeric = (diff * coef).sum(axis=1) / (2 * h)
        np.testing.assert_allclose(analytic[:, j], numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", list(TRUE))
def test_no_overflow_or_invalid_values_anywhere_in_the_default_box(cls):
    law = cls()
    lo, hi = law.raw_bounds()
    corners = np.array(np.meshgrid(*np.c_[lo, hi])).reshape(len(lo), -1).T
    raw = np.vstack([corners, RNG.uniform(lo, hi, (500, len(lo)))])
    if cls.n_inputs == 2:
        X = np.c_[np.geomspace(1.0, 1e12, 16), np.r_[0.0, np.geomspace(1e-3, 1e13, 15)]]
    else:
        X = np.geomspace(1e-3, 1e13, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        log_pred, vjp = law.log_prediction(raw, law._check_X(X))
        grad = vjp(np.ones_like(log_pred))
    assert np.isfinite(log_pred).all() and np.isfinite(grad).all()


@pytest.mark.parametrize("cls", list(TRUE))
@pytest.mark.parametrize("residual", ["linear", "log"])
def test_recovers_known_parameters_from_noise_free_data(cls, residual):
    X = inputs_for(cls)
    y = formula(cls, TRUE[cls], X)
    law = cls(residual=residual).fit(X, y)
    assert law.converged_
    np.testing.assert_allclose(law.predict(X), y, rtol=1e-6)
    for name, value in TRUE[cls].items():
        assert law.params_[name] == pytest.approx(value, rel=1e-3), name
    # the curve beyond the fitted range too
    far = np.c_[np.full(3, 2e8), [1e7, 1e8, 1e9]] if cls.n_inputs == 2 else np.array([1e7, 1e8, 1e9])
    np.testing.assert_allclose(law.predict(far), formula(cls, TRUE[cls], far), rtol=1e-4)


def test_m4_alpha_is_kept_positive():
    lo, hi = M4Law().raw_bounds()
    assert lo[M4Law.raw_param_names.index("alpha")] == M4_ALPHA_MIN
    lo, _ = M4Law(bounds={"alpha": (-1.0, 2.0)}).raw_bounds()
    assert lo[2] == M4_ALPHA_MIN
    with pytest.raises(FitError, match="alpha must be >= "):
        M4Law(bounds={"alpha": (-1.0, 0.0)}).raw_bounds()
    with pytest.raises(FitError, match="fixed alpha must be >= "):
        M4Law(fixed={"alpha": 0.0}).fit(D_SINGLE, np.linspace(2, 1, len(D_SINGLE)))
    # natural bounds on the log-parameterised constants are taken in natural units
    lo, hi = M4Law(bounds={"Delta": (0.5, 2.0)}).raw_bounds()
    np.testing.assert_allclose([lo[4], hi[4]], np.log([0.5, 2.0]))


def test_grids_stay_small():
    for cls in TRUE:
        assert len(cls().starting_points()) <= 5000, cls.__name__


@pytest.mark.parametrize("cls", list(TRUE))
def test_registry_finds_the_new_forms(cls):
    name = NAMES[cls]
    assert law_class(name) is cls
    assert law_class(f" {name.upper()} ") is cls
    assert (name in JOINT_LAWS) == (cls.n_inputs == 2)
    assert (name in SINGLE_FACTOR_LAWS) == (cls.n_inputs == 1)
    assert cls.zero_d_ok == (cls is RectifiedJointLaw)
    assert RectifiedLaw.zero_d_ok
