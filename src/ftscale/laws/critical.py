"""Critical finetuning data sizes: where the fitted laws of two methods cross (PAPER §5, Eq. 3).

``critical_data_size`` finds *every* crossing of L̂_a(D) and L̂_b(D) in a range by bracketing sign changes of
their difference on a log-spaced grid and refining each bracket with Brent's method in log D. This is sturdier
than the paper's ``fsolve`` from one start: it reports "none" when the curves do not cross and all roots when they
cross several times (different irreducible losses E make a second crossing common). ``constant_gap_critical`` is
the paper's closed-form approximation D^c = H · X^γ that ignores E.

Laws are duck-typed: anything with ``predict`` and ``params_`` (natural parameters ``A, alpha, beta, E``) works.
Joint laws (multiplicative, additive) take ``predict`` input of shape (n, 2) with columns (x, d); single-factor laws
take shape (n,).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from ftscale.errors import FitError
from ftscale.laws.forms import LAW_FORMS, law_class

# Natural parameter names a law may carry; bootstrap sample tables also hold derived columns that must not be
# passed back to ``from_params``.
# every natural parameter name of the law forms (bootstrap sample columns that belong to a law)
LAW_PARAM_NAMES = tuple(dict.fromkeys(name for law in LAW_FORMS.values() for name in law.param_names))


def is_joint_law(law: Any) -> bool:
    """True when ``law.predict`` expects (x, d) columns rather than d alone (``n_inputs == 2``)."""
    return int(getattr(law, "n_inputs", 1)) == 2


def predict_at(law: Any, x: float | np.ndarray | None, d: np.ndarray) -> np.ndarray:
    """The law's loss at finetuning data sizes ``d`` with the other factor at ``x`` (one value, or one per
    point of ``d``); a single-factor law ignores ``x``. The one "predict along D_f" helper of the package."""
    d = np.asarray(d, dtype=float)
    if is_joint_law(law):
        if x is None:
            raise FitError(
                f"{type(law).__name__} is a joint law: give the other factor's value x to compare it along D_f"
            )
        x_col = np.broadcast_to(np.asarray(x, dtype=float), d.shape)
        return np.asarray(law.predict(np.column_stack([x_col, d])), dtype=float)
    return np.asarray(law.predict(d), dtype=float)


def equivalent_data_size(
    law: Any, x: float | None, loss: float, d_min: float = 1e-6, d_max: float = 1e15
) -> float:
    """The D_f at which ``law`` (at ``x``; None for a single-factor law) reaches ``loss``.

    inf when the law stays above ``loss`` up to ``d_max`` (its floor is higher), ``d_min`` when it is already
    below at ``d_min``. The laws decrease in D_f; the root is found on log D_f by Brent's method.
    """

    def gap(log_d: float) -> float:
        return float(predict_at(law, x, np.array([math.exp(log_d)]))[0]) - loss

    lo, hi = math.log(d_min), math.log(d_max)
    if gap(hi) > 0:
        return math.inf
    if gap(lo) <= 0:
        return d_min
    return math.exp(brentq(gap, lo, hi, xtol=1e-12))


def draw_predictions(draws: Sequence[Any], x: float | None, d: Any) -> np.ndarray:
    """Every bootstrap law's loss at data sizes ``d`` (other factor at ``x``): shape (len(draws), len(d))."""
    d = np.atleast_1d(np.asarray(d, dtype=float))
    return np.array([predict_at(law, x, d) for law in draws]).reshape(len(draws), len(d))


def prob_better(
    draws_a: Sequence[Any], draws_b: Sequence[Any], x_a: float, x_b: float, d: float
) -> tuple[float, int]:
    """Share of paired bootstrap draws in which law a (at x_a) predicts a lower loss at ``d`` than law b (at x_b).

    Draw i of a is paired with draw i of b: the methods' bootstraps resample independent experiments, so each
    pair is one draw from the joint sampling distribution. Returns (probability, number of pairs)."""
    n = min(len(draws_a), len(draws_b))
    if n == 0:
        return math.nan, 0
    pa, pb = draw_predictions(draws_a[:n], x_a, d), draw_predictions(draws_b[:n], x_b, d)
    return float(np.mean(pa[:, 0] < pb[:, 0])), n


def data_multiplier(law: Any, other: Any, x: float, d: float) -> float:
    """k such that ``other`` at k·d examples reaches ``law``'s loss at d (same base size x); inf if it never
    does (its floor lies above that loss), below 1 when ``other`` is the more data-efficient one there."""
    target = float(predict_at(law, x, np.array([d]))[0])
    return equivalent_data_size(other, x, target) / d


@dataclass(frozen=True)
class Regime:
    """A data-size interval in which one method is predicted better (lower loss) than the other."""

    d_low: float
    d_high: float
    better: str


@dataclass(frozen=True)
class CriticalPoints:
    """All crossings of two laws' loss curves over D_f in ``[d_min, d_max]`` at a fixed other factor ``x``.

    ``roots`` are ascending; ``regimes`` are the intervals between ``d_min``, the roots and ``d_max`` with the
    method predicted better in each (``label_a`` / ``label_b``; ``"tie"`` where the curves coincide).
    """

    roots: list[float]
    status: str
    regimes: list[Regime]
    x: float | None
    d_min: float
    d_max: float
    label_a: str = "a"
    label_b: str = "b"

    @property
    def first(self) -> float:
        """The smallest crossing, NaN when there is none."""
        return self.roots[0] if self.roots else math.nan

    def better_at(self, d: float) -> str:
        """Label of the method predicted better at data size ``d`` (within the searched range)."""
        for regime in self.regimes:
            if regime.d_low <= d <= regime.d_high:
                return regime.better
        raise ValueError(f"D_f={d:g} lies outside the searched range [{self.d_min:g}, {self.d_max:g}]")

    def describe(self) -> str:
        """One line: the crossings and which method wins on each side."""
        if not self.roots:
            return f"no crossing in [{self.d_min:.3g}, {self.d_max:.3g}]; {self.regimes[0].better} better throughout"
        parts = [f"{self.regimes[0].better} better below {self.roots[0]:.3g}"]
        for root, regime in zip(self.roots, self.regimes[1:], strict=True):
            parts.append(f"{regime.better} better above {root:.3g}")
        return "; ".join(parts)


def _status(n_roots: int) -> str:
    return "none" if n_roots == 0 else "one" if n_roots == 1 else "several"


def critical_data_size(
    law_a: Any,
    law_b: Any,
    x: float | None = None,
    d_min: float = 1.0,
    d_max: float = 1e12,
    n_grid: int = 2000,
    *,
    label_a: str = "a",
    label_b: str = "b",
) -> CriticalPoints:
    """Every finetuning data size in ``[d_min, d_max]`` where L̂_a(x, D) = L̂_b(x, D).

    Crossings are bracketed by sign changes of L̂_a − L̂_b on ``n_grid`` log-spaced points and refined with
    ``scipy.optimize.brentq`` in log D (to ~1e-12 relative). A tangential touch without a sign change between
    grid points is not reported; a finer grid narrows that blind spot.
    """
    if not (0 < d_min < d_max and math.isfinite(d_max)):
        raise FitError(f"critical data size search needs 0 < d_min < d_max < inf, got [{d_min}, {d_max}]")
    if n_grid < 2:
        raise FitError(f"n_grid must be at least 2, got {n_grid}")

    def gap_log(log_d: float) -> float:
        d = np.array([math.exp(log_d)])
        return float(predict_at(law_a, x, d)[0] - predict_at(law_b, x, d)[0])

    log_grid = np.linspace(math.log(d_min), math.log(d_max), n_grid)
    d_grid = np.exp(log_grid)
    gap = predict_at(law_a, x, d_grid) - predict_at(law_b, x, d_grid)
    # Differences at round-off level of the losses count as equality, so identical laws give "tie", not noise.
    scale = np.maximum(np.abs(predict_at(law_a, x, d_grid)), 1.0)
    sign = np.where(np.abs(gap) <= 1e-13 * scale, 0.0, np.sign(gap))
    sign[~np.isfinite(gap)] = np.nan

    roots: list[float] = []
    if np.all(sign == 0):
        regimes = [Regime(d_min, d_max, "tie")]
        return CriticalPoints([], "none", regimes, x, d_min, d_max, label_a, label_b)

    previous: int | None = None  # last grid index with a definite, finite sign
    for j in range(n_grid):
        if np.isnan(sign[j]):
            previous = None  # a law is undefined here: do not bracket across the gap
            continue
        if sign[j] == 0:
            continue
        if previous is not None and sign[previous] != sign[j]:
            if j == previous + 1:
                log_root = brentq(
                    gap_log, log_grid[previous], log_grid[j], xtol=1e-14, rtol=1e-14, maxiter=200
                )
                roots.append(math.exp(log_root))
            else:
                # The curves meet exactly on grid points between the two signs: take the middle of that run.
                roots.append(float(d_grid[(previous + 1 + j - 1) // 2]))
        previous = j

    edges = [d_min, *roots, d_max]
    regimes = []
    for low, high in itertools.pairwise(edges):
        mid = math.sqrt(low * high)
        diff = float(gap_log(math.log(mid)))
        scale_mid = max(abs(float(predict_at(law_a, x, np.array([mid]))[0])), 1.0)
        better = "tie" if abs(diff) <= 1e-13 * scale_mid else (label_a if diff < 0 else label_b)
        regimes.append(Regime(low, high, better))
    return CriticalPoints(roots, _status(len(roots)), regimes, x, d_min, d_max, label_a, label_b)


def _natural_params(law_or_params: Any) -> Mapping[str, float]:
    if isinstance(law_or_params, Mapping):
        return law_or_params
    params = getattr(law_or_params, "params_", None)
    if params is None:
        raise FitError(
            f"{type(law_or_params).__name__} has no fitted parameters: fit it or use from_params first"
        )
    return params


def constant_gap_critical(law_a: Any, law_b: Any) -> tuple[float, float]:
    """PAPER Eq. 3: D^c ≈ H · X^γ with H = (A_a/A_b)^(1/(β_a−β_b)), γ = (α_b−α_a)/(β_a−β_b).

    Exact for multiplicative (or single-factor power) laws whose gap stays E_a − E_b, i.e. where the reducible
    terms are equal. Single-factor laws have no α (taken as 0, so γ = 0). Raises ``FitError`` when β_a = β_b: the
    reducible terms then keep a constant ratio in D_f and never become equal (or are always equal).
    """
    pa, pb = _natural_params(law_a), _natural_params(law_b)
    for name, params in (("law_a", pa), ("law_b", pb)):
        missing = [k for k in ("A", "beta") if k not in params]
        if missing or "B" in params:
            raise FitError(
                f"{name}: constant-gap critical size needs a multiplicative or power law (A·X^-α·D^-β + E); "
                f"got parameters {sorted(params)}"
            )
    beta_gap = float(pa["beta"]) - float(pb["beta"])
    if beta_gap == 0.0 or abs(beta_gap) <= 1e-12 * max(
        abs(float(pa["beta"])), abs(float(pb["beta"])), 1e-300
    ):
        raise FitError(
            f"constant-gap critical size is undefined: both laws have β={float(pa['beta']):g}, so their reducible "
            "terms keep a fixed ratio in D_f and never cross"
        )
    ratio = float(pa["A"]) / float(pb["A"])
    if ratio <= 0:
        raise FitError(f"constant-gap critical size needs positive A values, got A_a/A_b={ratio:g}")
    h = _exp(math.log(ratio) / beta_gap)  # far-apart laws give H beyond float range: inf / 0, not an error
    gamma = (float(pb.get("alpha", 0.0)) - float(pa.get("alpha", 0.0))) / beta_gap
    return h, gamma


def _exp(value: float) -> float:
    return math.inf if value > 709.0 else math.exp(value)


def constant_gap_size(h: float, gamma: float, x: float) -> float:
    """Eq. 3's D^c = H · x^γ, computed in log space: inf (or 0) where it leaves the float range instead of raising
    ``OverflowError``; NaN where Eq. 3 does not apply (``h`` NaN)."""
    if math.isnan(h) or math.isnan(gamma):
        return math.nan
    if h == 0.0 or math.isinf(h):
        return h
    return _exp(math.log(h) + gamma * math.log(float(x)))


def critical_curve(
    law_a: Any,
    law_b: Any,
    xs: Sequence[float],
    d_min: float = 1.0,
    d_max: float = 1e12,
    n_grid: int = 2000,
    *,
    label_a: str = "a",
    label_b: str = "b",
) -> pd.DataFrame:
    """Critical data sizes at each value of the other factor (PAPER Fig. 5), with the Eq. 3 approximation.

    Columns: ``x``, ``status``, ``n_roots``, ``roots`` (list), ``first_root``, ``constant_gap`` (H·x^γ, NaN when
    Eq. 3 does not apply), ``below`` / ``above`` (method better below the first / above the last root).
    """
    try:
        h, gamma = constant_gap_critical(law_a, law_b)
    except FitError:
        h, gamma = math.nan, math.nan
    rows = []
    for x in xs:
        cp = critical_data_size(
            law_a, law_b, x, d_min=d_min, d_max=d_max, n_grid=n_grid, label_a=label_a, label_b=label_b
        )
        rows.append(
            {
                "x": float(x),
                "status": cp.status,
                "n_roots": len(cp.roots),
                "roots": cp.roots,
                "first_root": cp.first,
                "constant_gap": constant_gap_size(h, gamma, x),
                "below": cp.regimes[0].better,
                "above": cp.regimes[-1].better,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CriticalCI:
    """Bootstrap distribution of the first critical data size over paired resamples of two laws.

    ``estimate`` is the median first root over resamples that cross; ``low``/``high`` the percentile interval at
    ``level`` over those resamples. ``frac_none`` / ``frac_several`` say how often the paired resample laws did not
    cross / crossed more than once in the range (a large ``frac_none`` means the crossing itself is uncertain).
    """

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    frac_none: float
    frac_several: float
    first_roots: np.ndarray = field(repr=False)


def _laws_from_samples(samples: Any, form: Any) -> list[Any]:
    """Law objects from a bootstrap result/sample table (one row of natural params per resample) or a list."""
    if hasattr(samples, "samples") and isinstance(samples.samples, pd.DataFrame):
        samples = samples.samples
    if not isinstance(samples, pd.DataFrame):
        return list(samples)
    factory: Callable[..., Any] = _law_factory(form)
    names = [c for c in samples.columns if c in LAW_PARAM_NAMES]
    if not names:
        raise FitError(
            f"bootstrap samples have no law parameter columns; columns are {list(samples.columns)}"
        )
    return [factory(**{k: float(row[k]) for k in names}) for _, row in samples.iterrows()]


def _law_factory(form: Any) -> Callable[..., Any]:
    if isinstance(form, str):
        form = law_class(form)
    if hasattr(form, "from_params"):
        # A class or a fitted template law: build new laws of the same form.
        cls = form if isinstance(form, type) else type(form)
        return cls.from_params
    if callable(form):
        return form
    raise FitError(f"cannot build laws of form {form!r}: give a law name, a law class or a factory")


def critical_data_size_ci(
    bootstrap_samples_a: Any,
    bootstrap_samples_b: Any,
    x: float | None = None,
    level: float = 0.95,
    *,
    form_a: Any = "multiplicative",
    form_b: Any = None,
    d_min: float = 1.0,
    d_max: float = 1e12,
    n_grid: int = 400,
) -> CriticalCI:
    """Percentile CI of the first critical data size, solving the crossing for each paired resample.

    Samples are bootstrap results (``.samples``), sample tables (rows of natural parameters) or lists of laws;
    resample i of ``a`` is paired with resample i of ``b`` (the shorter length is used).
    """
    if not 0 < level < 1:
        raise FitError(f"confidence level must lie in (0, 1), got {level}")
    laws_a = _laws_from_samples(bootstrap_samples_a, form_a)
    laws_b = _laws_from_samples(bootstrap_samples_b, form_b if form_b is not None else form_a)
    n = min(len(laws_a), len(laws_b))
    if n == 0:
        raise FitError("critical data size CI needs at least one bootstrap resample of each law")
    first = np.full(n, np.nan)
    n_several = 0
    for i in range(n):
        cp = critical_data_size(laws_a[i], laws_b[i], x, d_min=d_min, d_max=d_max, n_grid=n_grid)
        first[i] = cp.first
        n_several += cp.status == "several"
    crossed = first[np.isfinite(first)]
    tail = (1 - level) / 2
    if crossed.size:
        # Quantiles in log space: critical sizes spread over decades.
        logs = np.log(crossed)
        estimate = float(np.exp(np.median(logs)))
        low, high = (float(v) for v in np.exp(np.quantile(logs, [tail, 1 - tail])))
    else:
        estimate = low = high = math.nan
    return CriticalCI(
        estimate=estimate,
        low=low,
        high=high,
        level=level,
        n_resamples=n,
        frac_none=float(1 - crossed.size / n),
        frac_several=float(n_several / n),
        first_roots=first,
    )
