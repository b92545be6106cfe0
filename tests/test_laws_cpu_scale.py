"""The joint laws at CPU scale (X ≈ 1e5-1e6 parameters or tokens, D_f ≈ 1e2-1e3): the two-stage fit (Eq. 2)
converges and recovers both forms' parameters, and the additive law's error on multiplicative data is the form's,
not the fitter's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linprog

from ftscale.analysis import PAPER_EN_DE, SyntheticStudy, analyse, truth_at_scale
from ftscale.laws.fitting import fit_two_stage
from ftscale.laws.forms import AdditiveLaw, FitWarning, MultiplicativeLaw

MODEL_SIZES = (1.7e5, 4e5, 8e5, 1.4e6, 2.6e6)  # non-embedding parameters of a CPU model ladder
PRETRAIN_TOKENS = (2e5, 4e5, 6e5, 8e5, 1e6)
FT_EXAMPLES = (100, 200, 400, 800, 1600, 3200)
NOISE = 0.005


def _factors(law_cls, per_factor: dict[str, dict[str, float]], seed: int = 0):
    rng = np.random.default_rng(seed)
    factors = {}
    for name, xs in (("model_size", MODEL_SIZES), ("pretrain_tokens", PRETRAIN_TOKENS)):
        X = np.array([(x, d) for x in xs for d in FT_EXAMPLES], dtype=float)
        y = law_cls.from_params(**per_factor[name]).predict(X)
        factors[name] = (X, y + rng.normal(0.0, NOISE, len(y)))
    return factors


def _fit_quietly(factors, form):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        result = fit_two_stage(factors, form=form)
    return result, [str(w.message) for w in caught if issubclass(w.category, FitWarning)]


def test_additive_two_stage_recovers_its_own_laws_at_cpu_scale():
    shared = {"beta": 0.3, "E": 1.5}
    truth = {
        "model_size": {"A": 60.0, "alpha": 0.3, "B": 8.0, **shared},
        "pretrain_tokens": {"A": 8.0, "alpha": 0.15, "B": 8.0, **shared},
    }
    factors = _factors(AdditiveLaw, truth)
    assert min(y.min() for _, y in factors.values()) > 2.5 and max(y.max() for _, y in factors.values()) < 5.5
    result, messages = _fit_quietly(factors, "additive")
    assert result.converged and messages == []
    assert result.shared["beta"] == pytest.approx(0.3, abs=0.02)
    assert result.shared["E"] == pytest.approx(1.5, abs=0.1)
    for name, law in result.laws.items():
        X, y = factors[name]
        assert law.converged_ and law.warnings_ == []
        assert law.params_["alpha"] == pytest.approx(truth[name]["alpha"], abs=0.02), name
        assert law.params_["B"] == pytest.approx(8.0, rel=0.1), name
        assert np.mean(np.abs(law.predict(X) - y)) < 1.2 * NOISE  # fits to the noise level


@pytest.mark.parametrize(
    "per_factor",
    [
        # A·X^-α ≈ 2 nats with A ≈ 4: log A ≈ 1.4 lies below the grid's second a value (5)
        {"model_size": (4.0, 0.05), "pretrain_tokens": (3.0, 0.03)},
        # A < 1 (log A < 0, outside the grid) with inverse scaling in X
        {"model_size": (0.5, -0.1), "pretrain_tokens": (0.3, -0.12)},
    ],
    ids=["small-A", "A-below-1"],
)
def test_multiplicative_two_stage_start_grid_covers_small_A_at_cpu_scale(per_factor):
    truth = {name: {"A": a, "alpha": alpha, "beta": 0.1, "E": 2.0} for name, (a, alpha) in per_factor.items()}
    factors = _factors(MultiplicativeLaw, truth, seed=1)
    result, messages = _fit_quietly(factors, "multiplicative")
    assert result.converged and messages == []
    assert result.shared["beta"] == pytest.approx(0.1, abs=0.01)
    assert result.shared["E"] == pytest.approx(2.0, abs=0.1)
    # stage 1 reaches at least the truth's objective (the joint objective is the sum of the factors' own)
    at_truth = sum(
        MultiplicativeLaw().objective(MultiplicativeLaw.raw_from_natural(**truth[name]), X, y)
        for name, (X, y) in factors.items()
    )
    assert result.stage1_loss <= at_truth + 1e-12
    for name, law in result.laws.items():
        assert law.converged_
        # a 5x range of X pins α to about ±0.02 at this noise
        assert law.params_["alpha"] == pytest.approx(truth[name]["alpha"], abs=0.02), name
        X, y = factors[name]
        assert np.mean(np.abs(law.predict(X) - y)) < 1.2 * NOISE


def _additive_mad_lower_bound(X: np.ndarray, y: np.ndarray) -> float:
    """Smallest mean absolute deviation ANY additive function u(x) + v(d) reaches on a full (x, d) grid (an LP).

    Every additive law A·x^-α + B·d^-β + E is such a function, so its MAD on these points cannot be lower.
    """
    xs, x_index = np.unique(X[:, 0], return_inverse=True)
    ds, d_index = np.unique(X[:, 1], return_inverse=True)
    n, nu, nv = len(y), len(xs), len(ds)
    rows = np.arange(n)
    a_ub = np.zeros((2 * n, nu + nv + n))  # variables u, v, then t_k >= |u + v - y_k|
    for sign, block in ((1.0, slice(0, n)), (-1.0, slice(n, 2 * n))):
        part = a_ub[block]
        part[rows, x_index] = sign
        part[rows, nu + d_index] = sign
        part[rows, nu + nv + rows] = -1.0
    b_ub = np.concatenate([y, -y])
    cost = np.concatenate([np.zeros(nu + nv), np.ones(n)])
    bounds = [(None, None)] * (nu + nv) + [(0, None)] * n
    return float(linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds).fun / n)


def test_additive_misfit_on_strongly_multiplicative_data_is_the_forms_not_the_fitters():
    # The paper's A_m = 1.2e5 (α_m = 0.52) at CPU-scale X: losses of 7-140 nats whose X×D_f interaction no
    # additive law represents. The fit must still reach (nearly) the best any additive function can do.
    truth = {"A": 1.2e5, "beta": 0.15, "E": 0.75}
    per_factor = {
        "model_size": {**truth, "alpha": 0.52},
        "pretrain_tokens": {**truth, "A": 1.2e5 * 1.7e5**-0.52 * 1e6**0.21, "alpha": 0.21},
    }
    factors = _factors(MultiplicativeLaw, per_factor, seed=2)
    additive, _ = _fit_quietly(factors, "additive")
    multiplicative, _ = _fit_quietly(factors, "multiplicative")
    assert additive.converged and multiplicative.converged
    for name, (X, y) in factors.items():
        bound = _additive_mad_lower_bound(X, y)
        got = np.mean(np.abs(additive.laws[name].predict(X) - y))
        assert bound > 0.5, name  # the data really are out of the additive form's reach ...
        assert got < 1.25 * bound, (name, got, bound)  # ... and the fit gets close to that reach
        assert np.mean(np.abs(multiplicative.laws[name].predict(X) - y)) < 1.2 * NOISE


def test_additive_heldout_error_is_a_few_hundredths_on_paper_like_cpu_scale_study():
    # The paper's laws with A_m moved to CPU scale (losses ≈ 1-2.5 nats, the paper's level): the additive law's
    # held-out error stays within a few hundredths, as in the paper's Table 6, and every fit converges.
    study = SyntheticStudy(
        truth=truth_at_scale({m: PAPER_EN_DE[m] for m in ("fmt", "lora")}, x_base=MODEL_SIZES[0]),
        task="cpu-scale",
        model_params=dict(zip(("xs", "s", "m", "l", "xl"), MODEL_SIZES, strict=True)),
        pretrain_tokens=PRETRAIN_TOKENS,
        pet_sizes={"lora": (1, 2, 4, 8)},
        examples={m: FT_EXAMPLES[:5] for m in ("fmt", "lora")},
        seeds=1,
        noise=NOISE,
    )
    fits = analyse(study.results(), n_bootstrap=0, single_factor=False).fits
    assert fits["converged"].all()
    delta_h = fits.pivot_table(index=["method", "factor"], columns="form", values="delta_h")
    assert (delta_h["multiplicative"] < 2 * NOISE).all()
    assert (delta_h["additive"] < 0.08).all(), delta_h
    # where the interaction is weak (LoRA) the two forms are close, as in the paper
    lora = delta_h.loc["lora"]
    assert (lora["additive"] < 4 * lora["multiplicative"]).all(), lora


def test_truth_at_scale_keeps_the_base_loss_and_exponents():
    moved = truth_at_scale(PAPER_EN_DE, x_base=2e5)
    for method, paper in PAPER_EN_DE.items():
        assert moved[method].alpha_m == paper.alpha_m and moved[method].E == paper.E
        assert moved[method].A_m * 2e5**-paper.alpha_m == pytest.approx(paper.A_m * 1e9**-paper.alpha_m)
