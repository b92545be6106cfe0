"""Critical data sizes: analytic crossings, none / several roots, Eq. 3 and the paper's Table 4 / §5 numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ftscale.errors import FitError
from ftscale.laws.critical import (
    constant_gap_critical,
    constant_gap_size,
    critical_curve,
    critical_data_size,
    critical_data_size_ci,
    predict_at,
)
from ftscale.laws.forms import MultiplicativeLaw, PowerLaw

# PAPER §4.1 Table 4: model-size law (A_m, α_m) and shared (β, E) per task and method.
TABLE4_MODEL = {
    ("en-de", "fmt"): dict(A=1.2e5, alpha=0.52, beta=0.15, E=0.75),
    ("en-de", "prompt"): dict(A=3.9e3, alpha=0.40, beta=0.051, E=0.62),
    ("en-de", "lora"): dict(A=2.1e3, alpha=0.36, beta=0.081, E=0.62),
    ("en-zh", "fmt"): dict(A=3.3e3, alpha=0.34, beta=0.14, E=1.0),
    ("en-zh", "prompt"): dict(A=8.5e2, alpha=0.33, beta=0.015, E=0.77),
    ("en-zh", "lora"): dict(A=6.6e2, alpha=0.31, beta=0.025, E=0.73),
}
SIZES = [1e9, 2e9, 4e9, 8e9, 16e9]


def table4(task: str, method: str) -> MultiplicativeLaw:
    return MultiplicativeLaw.from_params(**TABLE4_MODEL[(task, method)])


def test_equal_e_crossing_matches_closed_form():
    law_a = MultiplicativeLaw.from_params(A=300.0, alpha=0.3, beta=0.05, E=0.8)
    law_b = MultiplicativeLaw.from_params(A=3000.0, alpha=0.35, beta=0.2, E=0.8)
    for x in (1e8, 3e9):
        expected = (300.0 * x**-0.3 / (3000.0 * x**-0.35)) ** (1 / (0.05 - 0.2))
        cp = critical_data_size(law_a, law_b, x, label_a="A", label_b="B")
        assert cp.status == "one"
        assert cp.roots[0] == pytest.approx(expected, rel=1e-8)
        # b decays faster in D: a is better (lower loss) below the crossing, b above it.
        assert [r.better for r in cp.regimes] == ["A", "B"]
        assert cp.better_at(expected / 10) == "A" and cp.better_at(expected * 10) == "B"
        # Eq. 3 is exact when E is equal.
        h, gamma = constant_gap_critical(law_a, law_b)
        assert h * x**gamma == pytest.approx(expected, rel=1e-10)


def test_no_crossing_reports_none_and_the_better_law():
    worse = MultiplicativeLaw.from_params(A=50.0, alpha=0.2, beta=0.1, E=1.0)
    better = MultiplicativeLaw.from_params(A=40.0, alpha=0.2, beta=0.1, E=0.9)
    cp = critical_data_size(worse, better, 1e9, label_a="worse", label_b="better")
    assert cp.status == "none" and cp.roots == [] and math.isnan(cp.first)
    assert [r.better for r in cp.regimes] == ["better"]
    assert "no crossing" in cp.describe()


def test_identical_laws_are_a_tie_not_a_crossing():
    law = MultiplicativeLaw.from_params(A=50.0, alpha=0.2, beta=0.1, E=1.0)
    cp = critical_data_size(law, MultiplicativeLaw.from_params(**law.params_), 1e9)
    assert cp.status == "none" and cp.regimes[0].better == "tie"


def test_different_e_gives_two_crossings():
    # En-De FMT vs Prompt at 1B: FMT starts worse, wins in the middle, and loses again as D → ∞ since E_F > E_P.
    fmt, prompt = table4("en-de", "fmt"), table4("en-de", "prompt")
    cp = critical_data_size(fmt, prompt, 1e9, d_max=1e30, label_a="fmt", label_b="prompt")
    assert cp.status == "several" and len(cp.roots) == 2
    assert [r.better for r in cp.regimes] == ["prompt", "fmt", "prompt"]
    for root in cp.roots:
        gap = predict_at(fmt, 1e9, np.array([root])) - predict_at(prompt, 1e9, np.array([root]))
        assert abs(gap[0]) < 1e-10
    # The default range (up to 1e12 examples) sees only the practical first crossing.
    assert critical_data_size(fmt, prompt, 1e9).status == "one"


def test_single_factor_laws_ignore_x_and_joint_laws_need_it():
    a = PowerLaw.from_params(A=10.0, beta=0.1, E=1.0)
    b = PowerLaw.from_params(A=30.0, beta=0.3, E=1.0)
    expected = (10.0 / 30.0) ** (1 / (0.1 - 0.3))
    assert critical_data_size(a, b).roots[0] == pytest.approx(expected, rel=1e-8)
    assert critical_data_size(a, b, x=123.0).roots[0] == pytest.approx(expected, rel=1e-8)
    h, gamma = constant_gap_critical(a, b)
    assert h == pytest.approx(expected, rel=1e-10) and gamma == 0.0
    with pytest.raises(FitError, match="joint law"):
        critical_data_size(table4("en-de", "prompt"), table4("en-de", "lora"))


def test_bad_search_range_is_a_fit_error():
    with pytest.raises(FitError):
        critical_data_size(table4("en-de", "prompt"), table4("en-de", "lora"), 1e9, d_min=10.0, d_max=1.0)


def test_constant_gap_undefined_for_equal_beta():
    a = MultiplicativeLaw.from_params(A=10.0, alpha=0.1, beta=0.2, E=1.0)
    b = MultiplicativeLaw.from_params(A=20.0, alpha=0.3, beta=0.2, E=1.0)
    with pytest.raises(FitError, match="undefined"):
        constant_gap_critical(a, b)


def test_constant_gap_leaves_the_float_range_as_inf_not_an_error():
    # nearly equal β and very different A (a flat PET law against FMT): H = ratio^(1/Δβ) is far beyond 1e308
    a = MultiplicativeLaw.from_params(A=1e4, alpha=0.7, beta=0.0100, E=3.5)
    b = MultiplicativeLaw.from_params(A=2.0, alpha=0.09, beta=0.0118, E=3.6)
    h, gamma = constant_gap_critical(a, b)
    assert (h == 0.0 or math.isinf(h)) and gamma > 300
    assert constant_gap_size(1e300, 30.0, 1e6) == math.inf and constant_gap_size(1e-300, -30.0, 1e6) == 0.0
    assert constant_gap_size(2.0, 0.5, 16.0) == pytest.approx(8.0, rel=1e-12)
    assert math.isnan(constant_gap_size(math.nan, 1.0, 10.0))
    curve = critical_curve(a, b, [1e5, 1e6], d_min=1.0, d_max=1e6)
    assert len(curve) == 2  # no OverflowError


@pytest.mark.parametrize(
    ("task", "pair", "gamma"),
    [
        ("en-de", ("fmt", "prompt"), -1.21),
        ("en-de", ("fmt", "lora"), -2.32),
        ("en-de", ("prompt", "lora"), 1.33),
        ("en-zh", ("fmt", "prompt"), -0.08),
        ("en-zh", ("fmt", "lora"), -0.26),
        ("en-zh", ("prompt", "lora"), 2.0),
    ],
)
def test_gamma_from_table4_matches_paper(task, pair, gamma):
    _, got = constant_gap_critical(table4(task, pair[0]), table4(task, pair[1]))
    assert got == pytest.approx(gamma, abs=0.006)


def test_h_from_table4_has_papers_order_of_magnitude():
    # PAPER §5: H from rounded Table 4 matches Table 5 only to an order of magnitude (1.1e15 vs 3.7e14).
    h, _ = constant_gap_critical(table4("en-de", "fmt"), table4("en-de", "prompt"))
    assert h == pytest.approx(1.1e15, rel=0.05)
    h, _ = constant_gap_critical(table4("en-de", "prompt"), table4("en-de", "lora"))
    assert abs(math.log10(h) - math.log10(1.6e-9)) < 0.5


@pytest.mark.parametrize(
    ("task", "pair", "expected"),
    [
        ("en-de", ("prompt", "lora"), [1.1e3, 2.8e3, 6.9e3, 1.7e4, 4.4e4]),
        ("en-de", ("fmt", "prompt"), [2.4e5, 3.6e5, 2.0e6, None, None]),
        ("en-de", ("fmt", "lora"), [None] * 5),
        ("en-zh", ("fmt", "prompt"), [1.8e5, 4.6e5, 2.1e6, 3.9e7, None]),
        ("en-zh", ("fmt", "lora"), [2.1e5, 6.6e5, 6.1e6, None, None]),
        ("en-zh", ("prompt", "lora"), [6.6e4, 7.4e4, 6.3e4, 3.9e4, 1.7e4]),
    ],
)
def test_full_law_critical_points_match_paper_section5(task, pair, expected):
    curve = critical_curve(table4(task, pair[0]), table4(task, pair[1]), SIZES, d_max=1e9)
    for (_, row), want in zip(curve.iterrows(), expected, strict=True):
        if want is None:
            assert row["status"] == "none", (row["x"], row["roots"])
        else:
            # §5 lists values rounded to two significant figures.
            assert row["first_root"] == pytest.approx(want, rel=0.05), row["x"]


def test_critical_curve_reports_constant_gap_and_sides():
    prompt, lora = table4("en-de", "prompt"), table4("en-de", "lora")
    curve = critical_curve(prompt, lora, SIZES, label_a="prompt", label_b="lora")
    assert list(curve["below"]) == ["prompt"] * 5 and list(curve["above"]) == ["lora"] * 5
    # Equal E: Eq. 3 is exact.
    np.testing.assert_allclose(curve["constant_gap"], curve["first_root"], rtol=1e-8)
    assert curve["first_root"].is_monotonic_increasing


def _perturbed_samples(params: dict, n: int, rng: np.random.Generator, rel: float) -> pd.DataFrame:
    rows = [{k: v * (1 + rel * rng.standard_normal()) for k, v in params.items()} for _ in range(n)]
    frame = pd.DataFrame(rows)
    frame["delta_h"] = 0.0  # derived columns must be ignored when laws are rebuilt
    return frame


def test_critical_ci_covers_the_point_estimate():
    rng = np.random.default_rng(0)
    pa, pb = TABLE4_MODEL[("en-de", "prompt")], TABLE4_MODEL[("en-de", "lora")]
    ci = critical_data_size_ci(
        _perturbed_samples(pa, 60, rng, 0.001), _perturbed_samples(pb, 60, rng, 0.001), 1e9
    )
    assert ci.n_resamples == 60 and ci.frac_none == 0.0
    assert ci.low < 1.09e3 < ci.high
    assert ci.estimate == pytest.approx(1.09e3, rel=0.3)
    # Lists of laws are accepted too, paired by position.
    laws = [table4("en-de", "prompt")] * 3, [table4("en-de", "lora")] * 3
    exact = critical_data_size_ci(*laws, x=1e9)
    assert exact.low == pytest.approx(exact.high, rel=1e-9)


def test_critical_ci_reports_resamples_without_crossing():
    # En-De F vs P at 8B barely misses a crossing: perturbed resamples sometimes cross, sometimes not.
    rng = np.random.default_rng(1)
    pf, pp = TABLE4_MODEL[("en-de", "fmt")], TABLE4_MODEL[("en-de", "prompt")]
    ci = critical_data_size_ci(
        _perturbed_samples(pf, 80, rng, 0.03), _perturbed_samples(pp, 80, rng, 0.03), 8e9
    )
    assert 0.0 < ci.frac_none < 1.0
    assert np.isnan(ci.first_roots).sum() == round(ci.frac_none * 80)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_critical_ci_from_real_bootstrap_of_fitted_laws():
    from ftscale.laws.bootstrap import bootstrap

    rng = np.random.default_rng(2)
    d = np.geomspace(1e2, 1e7, 12)
    coarse = {"a": (0.0, 5.0), "beta": (0.0, 0.5), "e": (-1.0, 0.0)}
    truths = (dict(A=10.0, beta=0.1, E=1.0), dict(A=30.0, beta=0.3, E=1.0))
    samples = []
    for truth in truths:
        y = PowerLaw.from_params(**truth).predict(d) * (1 + 0.002 * rng.standard_normal(d.size))
        law = PowerLaw(grid=coarse).fit(d, y)
        samples.append(bootstrap(law, d, y, n_resamples=40, seed=0))
    ci = critical_data_size_ci(samples[0], samples[1], form_a="power")
    expected = (10.0 / 30.0) ** (1 / (0.1 - 0.3))  # ≈ 243 examples
    # Resamples whose refit did not converge are dropped by the bootstrap; the shorter table sets the pairs.
    assert ci.frac_none == 0.0 and 20 <= ci.n_resamples <= 40
    assert ci.low < expected < ci.high and ci.high / ci.low < 3
