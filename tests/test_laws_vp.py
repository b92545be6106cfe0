"""Variable projection: the exact small NNLS, and the same optimum as the multi-start reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import nnls

from ftscale.errors import FitError
from ftscale.laws.forms import LAW_FORMS, AdditiveLaw, FitWarning, MultiplicativeLaw, PowerLaw, RectifiedLaw
from ftscale.laws.io import read_lin2024
from ftscale.laws.vp import nnls_small, vp_applicable


def test_nnls_small_is_exact_against_scipy():
    rng = np.random.default_rng(0)
    phi = rng.lognormal(size=(200, 12, 3)) * np.array([1e-3, 1.0, 1e3])  # columns spanning decades
    z = rng.normal(size=(200, 12)) + phi @ np.array([2e2, -1.0, 1e-3])  # some optima on the boundary
    w = rng.uniform(0.2, 2.0, size=(200, 12))
    ours = nnls_small(phi, z, w)
    on_boundary = 0
    for g in range(len(phi)):
        root = np.sqrt(w[g])
        ref, _ = nnls(phi[g] * root[:, None], z[g] * root)
        assert np.all(ours[g] >= 0)
        rss = lambda c, g=g: float(np.sum(w[g] * (phi[g] @ c - z[g]) ** 2))  # noqa: E731
        assert rss(ours[g]) <= rss(ref) * (1 + 1e-9) + 1e-12
        on_boundary += int(np.any(ref == 0))
    assert on_boundary > 20  # the test exercises the active-set enumeration, not only interior optima


def test_which_forms_variable_projection_applies_to():
    assert {name for name, cls in LAW_FORMS.items() if vp_applicable(cls())} == {
        "power",
        "multiplicative",
        "additive",
    }
    assert not vp_applicable(MultiplicativeLaw(fixed={"E": 1.0}))  # a fixed constant: multi-start only
    assert vp_applicable(MultiplicativeLaw(fixed={"beta": 0.2}))  # a fixed exponent is fine
    with pytest.raises(FitError, match="variable projection needs"):
        RectifiedLaw(solver="vp").fit([1, 2, 4, 8, 16], [3, 2.5, 2.2, 2.0, 1.9])


@pytest.mark.parametrize(
    ("law_cls", "params", "residual", "loss"),
    [
        (MultiplicativeLaw, {"A": 3.3e3, "alpha": 0.34, "beta": 0.14, "E": 1.0}, "linear", "huber"),
        (MultiplicativeLaw, {"A": 3.3e3, "alpha": 0.34, "beta": 0.14, "E": 1.0}, "log", "lsq"),
        (AdditiveLaw, {"A": 2.0e3, "alpha": 0.35, "B": 60.0, "beta": 0.3, "E": 1.0}, "log", "huber"),
        (AdditiveLaw, {"A": 2.0e3, "alpha": 0.35, "B": 60.0, "beta": 0.3, "E": 1.0}, "linear", "lsq"),
    ],
)
def test_vp_reaches_the_multistart_optimum(law_cls, params, residual, loss):
    rng = np.random.default_rng(3)
    X = np.array([(x, d) for x in np.geomspace(1e9, 1.6e10, 5) for d in np.geomspace(8e3, 2e6, 9)])
    y = law_cls.from_params(**params).predict(X) + rng.normal(0, 0.002, len(X))
    weights = rng.integers(0, 3, len(X)).astype(float)  # bootstrap-like counts, some points dropped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        vp = law_cls(residual=residual, loss=loss, solver="vp").fit(X, y, sample_weight=weights)
        ms = law_cls(residual=residual, loss=loss, solver="multistart").fit(X, y, sample_weight=weights)
    assert vp.converged_
    assert vp.loss_ <= ms.loss_ * (1 + 1e-8)


@pytest.mark.shared_data
def test_vp_matches_multistart_on_every_lin2024_curve(shared_data):
    """Per model power laws of all three Lin et al. tables (log residual, Huber): same optimum, never worse."""
    worst = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        for table in ("flan", "gigaword", "wmt19"):
            long = read_lin2024(shared_data / "finetuning_scaling_law_lin2024" / f"{table}.csv")
            for _, curve in long.groupby("model"):
                d, y = curve["ft_examples"].to_numpy(), curve["loss"].to_numpy()
                vp = PowerLaw(residual="log", solver="vp").fit(d, y)
                ms = PowerLaw(residual="log", solver="multistart").fit(d, y)
                worst = max(worst, (vp.loss_ - ms.loss_) / ms.loss_)
    assert worst <= 1e-8
