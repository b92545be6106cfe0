"""Law forms: predictions match their formulas, analytic gradients match finite differences, inputs validated."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_from_params_predicts, assert_objective_gradient
from ftscale.errors import FitError
from ftscale.laws.forms import (
    AdditiveLaw,
    MultiplicativeLaw,
    PowerLaw,
    RectifiedLaw,
    ScalingLaw,
    VanillaLaw,
)

RNG = np.random.default_rng(0)
X_JOINT = np.c_[np.repeat([1e6, 4e6, 1.6e7, 6.4e7], 6), np.tile(np.geomspace(1e3, 1e6, 6), 4)]
D_SINGLE = np.geomspace(200, 1.6e6, 14)

TRUE = {
    PowerLaw: {"A": 30.0, "beta": 0.4, "E": 1.2},
    MultiplicativeLaw: {"A": 300.0, "alpha": 0.3, "beta": 0.2, "E": 0.8},
    AdditiveLaw: {"A": 200.0, "alpha": 0.35, "B": 50.0, "beta": 0.3, "E": 1.1},
    RectifiedLaw: {"B": 40.0, "D_l": 15.0, "beta": 0.5, "E": 0.9},
    VanillaLaw: {"B": 20.0, "beta": 0.3, "E": 1.5, "alpha": 0.8},
}


def formula(cls: type[ScalingLaw], p: dict[str, float], X: np.ndarray) -> np.ndarray:
    if cls is PowerLaw:
        return p["A"] * X ** -p["beta"] + p["E"]
    if cls is MultiplicativeLaw:
        return p["A"] * X[:, 0] ** -p["alpha"] * X[:, 1] ** -p["beta"] + p["E"]
    if cls is AdditiveLaw:
        return p["A"] * X[:, 0] ** -p["alpha"] + p["B"] * X[:, 1] ** -p["beta"] + p["E"]
    if cls is RectifiedLaw:
        return p["B"] / (p["D_l"] + X ** p["beta"]) + p["E"]
    return (p["B"] * X ** -p["beta"] + p["E"]) ** p["alpha"]


def inputs_for(cls: type[ScalingLaw]) -> np.ndarray:
    return X_JOINT if cls.n_inputs == 2 else D_SINGLE


@pytest.mark.parametrize("cls", list(TRUE))
def test_from_params_predicts_the_formula(cls):
    X = inputs_for(cls)
    assert_from_params_predicts(cls, TRUE[cls], X, formula(cls, TRUE[cls], X))


@pytest.mark.parametrize("cls", list(TRUE))
@pytest.mark.parametrize("residual", ["linear", "log"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_analytic_gradient_matches_finite_differences(cls, residual, reduction):
    X = inputs_for(cls)
    y = formula(cls, TRUE[cls], X) * np.exp(RNG.normal(0, 0.01, len(X)))
    # delta between the residual sizes so both Huber branches are exercised
    law = cls(residual=residual, reduction=reduction, huber_delta=3e-3)
    assert_objective_gradient(law, cls.raw_from_natural(**TRUE[cls]), X, y, RNG)


def test_log_residual_objective_is_summed_huber_of_log_ratio():
    X = X_JOINT
    y = formula(AdditiveLaw, TRUE[AdditiveLaw], X) * np.exp(RNG.normal(0, 0.01, len(X)))
    law = AdditiveLaw(residual="log")
    raw = AdditiveLaw.raw_from_natural(**TRUE[AdditiveLaw])
    r = np.log(formula(AdditiveLaw, TRUE[AdditiveLaw], X)) - np.log(y)
    from scipy.special import huber

    assert law.objective(raw, X, y) == pytest.approx(huber(1e-3, r).sum(), rel=1e-10)
    assert AdditiveLaw(residual="log", reduction="mean").objective(raw, X, y) == pytest.approx(
        huber(1e-3, r).mean(), rel=1e-10
    )


def test_fixed_params_accept_natural_and_raw_names():
    law = MultiplicativeLaw(fixed={"beta": 0.1, "E": 0.5})
    assert law.n_params == 2
    assert law.free_param_names == ("a", "alpha")
    full = law.full_raw(np.array([3.0, 0.2]))
    np.testing.assert_allclose(full, [3.0, 0.2, 0.1, np.log(0.5)])
    assert MultiplicativeLaw(fixed={"e": 0.0}).full_raw(np.zeros(3))[3] == 0.0
    with pytest.raises(FitError, match="no parameter 'gamma'"):
        MultiplicativeLaw(fixed={"gamma": 1.0})
    with pytest.raises(FitError, match="must be > 0"):
        MultiplicativeLaw(fixed={"E": -1.0})
    with pytest.raises(FitError, match="must be a number"):
        MultiplicativeLaw(fixed={"beta": "x"})


def test_user_bounds_natural_and_raw_and_invalid():
    lo, hi = MultiplicativeLaw(bounds={"E": (1.0, np.e), "alpha": (0.0, None)}).raw_bounds()
    np.testing.assert_allclose([lo[3], hi[3]], [0.0, 1.0])
    assert lo[1] == 0.0 and hi[1] == np.inf
    with pytest.raises(FitError, match="low <= high"):
        MultiplicativeLaw(bounds={"alpha": (1.0, 0.0)}).raw_bounds()
    with pytest.raises(FitError, match="upper bound must be > 0"):
        MultiplicativeLaw(bounds={"E": (None, 0.0)}).raw_bounds()
    with pytest.raises(FitError, match="pair of numbers"):
        MultiplicativeLaw(bounds={"beta": ("a", 1.0)}).raw_bounds()


def test_hoffmann_grid_sizes():
    assert len(AdditiveLaw().starting_points()) == 4500
    assert len(MultiplicativeLaw().starting_points()) == 6 * 5 * 5 * 5
    assert len(MultiplicativeLaw(fixed={"beta": 0.1, "E": 0.5}).starting_points()) == 30
    custom = MultiplicativeLaw(grid={"E": [0.5, 1.0], "alpha": [0.1]})
    points = custom.starting_points()
    assert len(points) == 6 * 1 * 5 * 2
    np.testing.assert_allclose(np.unique(points[:, 3]), np.log([0.5, 1.0]))


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones((5, 3)), np.ones(5), "shape"),
        (np.c_[np.ones(5), -np.ones(5)], np.ones(5), "> 0"),
        (np.c_[np.ones(5), np.ones(5)], np.r_[np.ones(4), np.nan], "finite"),
        (np.c_[np.ones(5), np.ones(5)], np.r_[np.ones(4), 0.0], "> 0"),
        (np.c_[np.ones(5), np.ones(5)], np.ones(4), "shape"),
        (np.c_[np.ones(3), np.ones(3)], np.ones(3), "3 points cannot determine 4"),
    ],
)
def test_fit_validates_inputs(X, y, message):
    with pytest.raises(FitError, match=message):
        MultiplicativeLaw().fit(X, y)


def test_single_factor_law_rejects_two_columns_and_bad_config():
    with pytest.raises(FitError, match=r"shape \(n,\)"):
        PowerLaw().fit(np.ones((5, 2)), np.ones(5))
    with pytest.raises(FitError, match="residual"):
        PowerLaw(residual="square")
    with pytest.raises(FitError, match="reduction"):
        PowerLaw(reduction="max")
    with pytest.raises(FitError, match="not fitted"):
        PowerLaw().predict(D_SINGLE)


def test_one_registry_of_law_forms() -> None:
    from ftscale.errors import FitError
    from ftscale.laws.forms import JOINT_LAWS, LAW_FORMS, LAW_NAMES, SINGLE_FACTOR_LAWS, law_class

    assert sorted(LAW_NAMES) == sorted(LAW_FORMS)
    assert set(JOINT_LAWS) == {name for name, cls in LAW_FORMS.items() if cls.n_inputs == 2}
    assert set(SINGLE_FACTOR_LAWS) == {name for name, cls in LAW_FORMS.items() if cls.n_inputs == 1}
    assert law_class(" Multiplicative ") is LAW_FORMS["multiplicative"]
    with pytest.raises(FitError, match="unknown law 'cubic': choose one of multiplicative, additive, power"):
        law_class("cubic")
