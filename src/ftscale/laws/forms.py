"""Scaling-law forms as scikit-learn-style estimators: the prediction, its analytic gradient, grids and bounds.

Every positive constant is parameterised through its logarithm (A = exp(a), B = exp(b), E = exp(e),
D_l = exp(l)), so the optimiser works on unconstrained-looking "raw" parameters while ``params_`` reports the
natural ones. Each form computes ``log L̂`` for a whole batch of raw parameter vectors at once (shape (S, p)),
together with a vector-Jacobian product, which is what the batched multi-start fitter in ``fitting.py`` needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from ftscale.errors import FitError

#: Natural name of a positive constant -> its raw (log) name.
LOG_PARAMS: dict[str, str] = {
    "A": "a",
    "B": "b",
    "E": "e",
    "D_l": "l",
    "gamma": "g",
    "Delta": "delta",
    "d1": "ld1",
    "f1": "lf1",
}
_RAW_TO_NATURAL: dict[str, str] = {raw: nat for nat, raw in LOG_PARAMS.items()}

#: Hoffmann et al. (2022, App. D.2) grid of starting points, by raw parameter name.
HOFFMANN_GRID: dict[str, tuple[float, ...]] = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
}

# Default box for the raw parameters. Exponents may be slightly negative (the paper reports an inverse-scaling
# PET exponent, alpha_t = -0.0017); log-constants get wide boxes whose lower end means "this term vanished".
_DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "a": (-30.0, 60.0),
    "b": (-30.0, 60.0),
    "e": (-30.0, 10.0),
    "l": (-30.0, 60.0),
    "alpha": (-2.0, 10.0),
    "beta": (-2.0, 10.0),
    # M3 / M4 (Alabdulmohsin et al.): decreasing curves, c >= 0; log gamma reaches far below -log D.
    "c": (0.0, 10.0),
    "g": (-60.0, 20.0),
    "delta": (-30.0, 10.0),
    # broken power law: c1 < 0 flattens the curve after the break; f1 from very sharp to very smooth.
    "c0": (-2.0, 10.0),
    "c1": (-10.0, 10.0),
    "ld1": (-30.0, 60.0),
    "lf1": (-10.0, 3.0),
}

VJP = Callable[[np.ndarray], np.ndarray]

#: Losses of the residuals: the Huber loss with ``huber_delta`` (the paper's and Hoffmann et al.'s) or plain
#: least squares (½ r², the maximum-likelihood choice under Gaussian noise).
LOSSES = ("huber", "lsq")

#: Solvers of a fit: ``multistart`` (batched L-BFGS from a grid of starts, the reference), ``vp`` (variable
#: projection over the exponents, ``vp.py``; forms with ``linear_terms`` only) or ``auto`` (vp where it applies).
SOLVERS = ("auto", "vp", "multistart")


class FitWarning(UserWarning):
    """A fit finished but its optimum is suspicious (on a bound, flat direction, not converged)."""


#: One term of a log-sum-exp law: {raw parameter index: its coefficient column (n,) or None for a constant 1}.
Term = dict[int, np.ndarray | None]


def _lse_linear_terms(raw: np.ndarray, terms: list[Term]) -> tuple[np.ndarray, VJP]:
    """log L̂ = LSE_k(Σ_j raw_j·col_kj) for sparse linear terms; returns log L̂ (S, n) and its VJP.

    The terms are written out sparsely (each touches two parameters at most) because dense matmuls with an
    inner dimension of 4-5 are slow; this runs on arrays of (starts × points).
    """
    n_params = raw.shape[1]
    n_points = next(col.shape[0] for term in terms for col in term.values() if col is not None)
    values = np.empty((len(terms), raw.shape[0], n_points))
    for k, term in enumerate(terms):
        out = values[k]
        out[...] = 0.0
        for j, col in term.items():
            out += raw[:, j : j + 1] if col is None else raw[:, j : j + 1] * col
    # hand-rolled log-sum-exp: one exp pass, several times faster than scipy's general-purpose version
    top = values.max(axis=0)
    weights = np.exp(values - top)
    total = weights.sum(axis=0)
    log_pred = top + np.log(total)
    weights /= total  # softmax over terms, (K, S, n)

    def vjp(coef: np.ndarray) -> np.ndarray:
        grad = np.zeros((coef.shape[0], n_params))
        for w, term in zip(weights, terms, strict=True):
            cw = coef * w
            for j, col in term.items():
                grad[:, j] += cw.sum(axis=1) if col is None else cw @ col
        return grad

    return log_pred, vjp


class ScalingLaw:
    """Base class: configuration in ``__init__``, ``fit(X, y)`` returns self, fitted values end in ``_``."""

    raw_param_names: ClassVar[tuple[str, ...]] = ()
    param_names: ClassVar[tuple[str, ...]] = ()
    #: True for forms defined at D = 0 (a zero-shot point): the rectified law's B / (D_l + D^β) + E is B / D_l + E
    #: there (β > 0); power-law terms D^-β are not.
    zero_d_ok: ClassVar[bool] = False
    #: Forms that are a sum of terms exp(coef)·Π_j input_j^-exponent_j declare them here as
    #: ``((coef raw name, ((exponent raw name, input column), ...)), ...)``: with the exponents fixed, the constants
    #: enter linearly, which variable projection (``vp.py``) exploits. Empty for other forms.
    linear_terms: ClassVar[tuple[tuple[str, tuple[tuple[str, int], ...]], ...]] = ()
    n_inputs: ClassVar[int] = 1
    input_names: ClassVar[tuple[str, ...]] = ("d",)
    formula: ClassVar[str] = ""

    def __init__(
        self,
        residual: str = "linear",
        huber_delta: float = 1e-3,
        loss: str = "huber",
        reduction: str = "sum",
        grid: str | Mapping[str, Any] | np.ndarray = "hoffmann",
        fixed: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        seed: int = 0,
        max_iter: int = 15000,
        solver: str = "auto",
    ) -> None:
        if residual not in ("linear", "log"):
            raise FitError(f"residual must be 'linear' or 'log', got {residual!r}")
        if reduction not in ("sum", "mean"):
            raise FitError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if loss not in LOSSES:
            raise FitError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if not (np.isfinite(huber_delta) and huber_delta > 0):
            raise FitError(f"huber_delta must be a positive number, got {huber_delta!r}")
        self.residual = residual
        self.huber_delta = float(huber_delta)
        self.loss = loss
        self.reduction = reduction
        self.grid = grid
        self.fixed = dict(fixed) if fixed else None
        self.bounds = dict(bounds) if bounds else None
        self.seed = seed
        self.max_iter = int(max_iter)
        if solver not in SOLVERS:
            raise FitError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        self.solver = solver
        self._fixed_raw = self._resolve_fixed(self.fixed or {})
        self.raw_params_: np.ndarray | None = None
        self.warnings_: list[str] = []

    #: The objective settings, as ``__init__`` takes them: :meth:`config` returns them so a fresh estimator (a
    #: bootstrap refit, a stage-2 law) is built with exactly the settings of the one it copies.
    OBJECTIVE_SETTINGS: ClassVar[tuple[str, ...]] = (
        "residual",
        "huber_delta",
        "loss",
        "reduction",
        "grid",
        "solver",
    )

    def config(self, full: bool = False) -> dict[str, Any]:
        """The objective settings (``full``: also fixed parameters, bounds, seed and max_iter)."""
        names = self.OBJECTIVE_SETTINGS + (("fixed", "bounds", "seed", "max_iter") if full else ())
        return {name: getattr(self, name) for name in names}

    # ----- parameter bookkeeping -------------------------------------------------------------------------
    def _raw_name(self, name: str) -> str:
        if name in self.raw_param_names:
            return name
        if name in LOG_PARAMS and LOG_PARAMS[name] in self.raw_param_names:
            return LOG_PARAMS[name]
        raise FitError(
            f"{type(self).__name__} has no parameter {name!r}; use one of "
            f"{', '.join(self.param_names)} (natural) or {', '.join(self.raw_param_names)} (raw)"
        )

    def _resolve_fixed(self, fixed: Mapping[str, float]) -> dict[int, float]:
        resolved: dict[int, float] = {}
        for name, value in fixed.items():
            raw_name = self._raw_name(name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise FitError(f"fixed {name} must be a number, got {value!r}") from None
            if name in LOG_PARAMS:  # natural positive constant: store its log
                if not value > 0:
                    raise FitError(f"fixed {name} must be > 0 (it is exp of {raw_name}), got {value}")
                value = float(np.log(value))
            if not np.isfinite(value):
                raise FitError(f"fixed {name} must be finite, got {value}")
            resolved[self.raw_param_names.index(raw_name)] = value
        return resolved

    @property
    def free_index(self) -> np.ndarray:
        return np.array([i for i in range(len(self.raw_param_names)) if i not in self._fixed_raw], dtype=int)

    @property
    def free_param_names(self) -> tuple[str, ...]:
        return tuple(self.raw_param_names[i] for i in self.free_index)

    @property
    def n_params(self) -> int:
        """Number of free (fitted) raw parameters."""
        return len(self.raw_param_names) - len(self._fixed_raw)

    def full_raw(self, theta_free: np.ndarray) -> np.ndarray:
        """Insert the fixed raw values into free-parameter vectors; works on (p_free,) or (S, p_free)."""
        theta_free = np.asarray(theta_free, dtype=float)
        batch = np.atleast_2d(theta_free)
        raw = np.empty((batch.shape[0], len(self.raw_param_names)))
        raw[:, self.free_index] = batch
        for i, value in self._fixed_raw.items():
            raw[:, i] = value
        return raw if theta_free.ndim == 2 else raw[0]

    @classmethod
    def natural_from_raw(cls, raw: np.ndarray) -> dict[str, float]:
        out = {}
        for name, value in zip(cls.raw_param_names, np.asarray(raw, dtype=float), strict=True):
            if name in _RAW_TO_NATURAL:
                out[_RAW_TO_NATURAL[name]] = float(np.exp(value))
            else:
                out[name] = float(value)
        return {name: out[name] for name in cls.param_names}

    @classmethod
    def raw_from_natural(cls, **params: float) -> np.ndarray:
        raw = []
        for name in cls.raw_param_names:
            natural = _RAW_TO_NATURAL.get(name, name)
            if natural not in params:
                raise FitError(
                    f"{cls.__name__}.from_params needs {', '.join(cls.param_names)}; missing {natural}"
                )
            value = float(params[natural])
            if natural in LOG_PARAMS:
                if not value > 0:
                    raise FitError(f"{natural} must be > 0, got {value}")
                value = float(np.log(value))
            raw.append(value)
        extra = set(params) - set(cls.param_names)
        if extra:
            raise FitError(f"{cls.__name__} has no parameter(s) {sorted(extra)}; expected {cls.param_names}")
        return np.array(raw)

    @classmethod
    def from_params(cls, **params: float) -> ScalingLaw:
        """A law with known natural parameters (no fit), usable for ``predict``."""
        law = cls()
        law._set_fitted(cls.raw_from_natural(**params), loss=float("nan"), converged=True, n_starts=0)
        return law

    def _set_fitted(self, raw: np.ndarray, loss: float, converged: bool, n_starts: int) -> None:
        self.raw_params_ = np.asarray(raw, dtype=float).copy()
        self.params_ = self.natural_from_raw(self.raw_params_)
        self.loss_ = float(loss)
        self.converged_ = bool(converged)
        self.n_starts_ = int(n_starts)

    def raw_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper box of the FREE raw parameters (user ``bounds`` may use natural or raw names)."""
        box = {name: _DEFAULT_BOUNDS[name] for name in self.raw_param_names}
        for name, pair in (self.bounds or {}).items():
            raw_name = self._raw_name(name)
            try:
                low, high = (None if v is None else float(v) for v in pair)
            except (TypeError, ValueError):
                raise FitError(
                    f"bounds[{name!r}] must be a (low, high) pair of numbers or None, got {pair!r}"
                ) from None
            if name in LOG_PARAMS:
                if high is not None and not high > 0:
                    raise FitError(
                        f"bounds[{name!r}]: upper bound must be > 0 (it is exp of {raw_name}), got {high:g}"
                    )
                low = np.log(low) if low is not None and low > 0 else None
                high = None if high is None else np.log(high)
            low = -np.inf if low is None else low
            high = np.inf if high is None else high
            if np.isnan(low) or np.isnan(high) or low > high:
                raise FitError(f"bounds[{name!r}] must satisfy low <= high, got {pair!r}")
            box[raw_name] = (float(low), float(high))
        names = self.free_param_names
        return np.array([box[n][0] for n in names]), np.array([box[n][1] for n in names])

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        return {name: HOFFMANN_GRID[name] for name in self.raw_param_names}

    def starting_points(self) -> np.ndarray:
        """Starting points (S, p_free) from ``grid``: 'hoffmann', a dict name -> values, or an array."""
        grid = self.grid
        free = self.free_param_names
        if isinstance(grid, str):
            if grid != "hoffmann":
                raise FitError(
                    f"grid must be 'hoffmann', a dict of values per parameter or an array, got {grid!r}"
                )
            values = self.default_grid()
            axes = [values[name] for name in free]
        elif isinstance(grid, Mapping):
            defaults = self.default_grid()
            given = {self._raw_name(k): (k, v) for k, v in grid.items()}
            axes = []
            for name in free:
                if name in given:
                    key, vals = given[name]
                    vals = np.atleast_1d(np.asarray(vals, dtype=float))
                    axes.append(tuple(np.log(vals)) if key in LOG_PARAMS else tuple(vals))
                else:
                    axes.append(defaults[name])
        else:
            starts = np.atleast_2d(np.asarray(grid, dtype=float))
            if starts.shape[1] == len(self.raw_param_names) and starts.shape[1] != len(free):
                starts = starts[:, self.free_index]
            if starts.shape[1] != len(free):
                raise FitError(
                    f"grid array must have {len(free)} columns ({', '.join(free)}), got {starts.shape[1]}"
                )
            return starts
        return np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, len(free))

    # ----- inputs and prediction -------------------------------------------------------------------------
    def _check_X(self, X: Any) -> np.ndarray:
        """Validate inputs and return their logs, shape (n, n_inputs)."""
        try:
            arr = np.asarray(X, dtype=float)
        except (TypeError, ValueError) as exc:
            raise FitError(f"{type(self).__name__}: X must be numeric ({exc})") from None
        if self.n_inputs == 1:
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise FitError(
                    f"{type(self).__name__} takes one input ({self.input_names[0]}): X must have shape (n,) "
                    f"or (n, 1), got {arr.shape}"
                )
            arr = arr[:, None]
        elif arr.ndim != 2 or arr.shape[1] != self.n_inputs:
            raise FitError(
                f"{type(self).__name__} takes X of shape (n, {self.n_inputs}) with columns "
                f"({', '.join(self.input_names)}), got {arr.shape}"
            )
        positive = arr > 0
        if self.zero_d_ok:  # the data size (last column) may be 0: a zero-shot point
            positive[:, -1] |= arr[:, -1] == 0
        if not np.all(np.isfinite(arr)) or not positive.all():
            zeros = np.any(arr == 0) and np.all(np.isfinite(arr)) and not np.any(arr < 0)
            hint = ""
            if zeros:
                only_d = not np.any(arr[:, :-1] == 0)
                hint = (
                    " (a zero-shot D = 0 point needs a form defined there, such as rectified)"
                    if only_d
                    else " (drop zero-size points before fitting)"
                )
            raise FitError(
                f"{type(self).__name__}: inputs ({', '.join(self.input_names)}) must be finite and > 0{hint}"
            )
        with np.errstate(divide="ignore"):  # log 0 = -inf marks a zero-shot point
            return np.log(arr)

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        """log L̂ for raw parameters (S, p) at log inputs (n, k): returns (S, n) and a VJP (S, n) -> (S, p)."""
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        if self.raw_params_ is None:
            raise FitError(f"{type(self).__name__} is not fitted: call fit() or from_params() first")
        log_pred, _ = self.log_prediction(self.raw_params_[None, :], self._check_X(X))
        return np.exp(log_pred[0])

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ScalingLaw:
        from ftscale.laws.fitting import fit_law

        return fit_law(self, X, y, sample_weight=sample_weight)

    def objective(self, raw_free: np.ndarray, X: Any, y: Any) -> float:
        """The fitting objective at free raw parameters (for checks and tests)."""
        return self.objective_and_gradient(raw_free, X, y)[0]

    def gradient(self, raw_free: np.ndarray, X: Any, y: Any) -> np.ndarray:
        return self.objective_and_gradient(raw_free, X, y)[1]

    def objective_and_gradient(self, raw_free: np.ndarray, X: Any, y: Any) -> tuple[float, np.ndarray]:
        from ftscale.laws.objective import Objective, check_targets

        log_inputs = self._check_X(X)
        objective = Objective(self, log_inputs, check_targets(y, len(log_inputs), type(self).__name__))
        f, g = objective(np.atleast_2d(np.asarray(raw_free, dtype=float)))
        return float(f[0]), g[0]

    def __repr__(self) -> str:
        if self.raw_params_ is None:
            return f"{type(self).__name__}(residual={self.residual!r}, reduction={self.reduction!r})"
        inner = ", ".join(f"{k}={v:.6g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({inner})"


class PowerLaw(ScalingLaw):
    """Single-factor law L(D) = A·D^-β + E (PAPER §2.1)."""

    raw_param_names = ("a", "beta", "e")
    param_names = ("A", "beta", "E")
    formula = "L(D) = A·D^-beta + E"
    linear_terms = (("a", (("beta", 0),)), ("e", ()))

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        return _lse_linear_terms(raw, [{0: None, 1: -log_inputs[:, 0]}, {2: None}])


class MultiplicativeLaw(ScalingLaw):
    """Joint law L(X, D) = A·X^-α·D^-β + E (paper Eq. 1)."""

    raw_param_names = ("a", "alpha", "beta", "e")
    param_names = ("A", "alpha", "beta", "E")
    n_inputs = 2
    input_names = ("x", "d")
    formula = "L(X, D) = A·X^-alpha·D^-beta + E"
    linear_terms = (("a", (("alpha", 0), ("beta", 1))), ("e", ()))

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_x, log_d = log_inputs[:, 0], log_inputs[:, 1]
        return _lse_linear_terms(raw, [{0: None, 1: -log_x, 2: -log_d}, {3: None}])


class AdditiveLaw(ScalingLaw):
    """Joint law L(X, D) = A·X^-α + B·D^-β + E (Hoffmann et al. / Chinchilla form)."""

    raw_param_names = ("a", "alpha", "b", "beta", "e")
    param_names = ("A", "alpha", "B", "beta", "E")
    n_inputs = 2
    input_names = ("x", "d")
    formula = "L(X, D) = A·X^-alpha + B·D^-beta + E"
    linear_terms = (("a", (("alpha", 0),)), ("b", (("beta", 1),)), ("e", ()))

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_x, log_d = log_inputs[:, 0], log_inputs[:, 1]
        return _lse_linear_terms(raw, [{0: None, 1: -log_x}, {2: None, 3: -log_d}, {4: None}])


#: Starts of the rectified data term B / (D_l + D^beta): D_l is compared with D^beta, so its log spans the range of
#: beta·log D for the usual data sizes. Shared by the rectified law and the rectified joint law.
_RECTIFIED_GRID: dict[str, tuple[float, ...]] = {
    "l": (0.0, 5.0, 10.0, 15.0, 20.0),
    "beta": (0.25, 0.5, 1.0, 1.5, 2.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
}


def _rectified_denominator(
    l_: np.ndarray, beta: np.ndarray, log_d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log(D_l + D^beta) (S, n), the share w_l = D_l / (D_l + D^beta), and log D with zero-shot points (log D =
    -inf, D = 0: D^beta = 0, the limit for beta > 0) replaced by a finite stand-in that keeps 0·(-inf) out of VJPs
    (their weight 1 - w_l is exactly 0 there)."""
    zero = np.isneginf(log_d)
    log_d = np.where(zero, 0.0, log_d)
    denom = np.logaddexp(l_, np.where(zero, -np.inf, beta * log_d))
    return denom, np.exp(l_ - denom), log_d


def _rectified_prediction(
    first_base: np.ndarray, l_: np.ndarray, beta: np.ndarray, e: np.ndarray, log_d: np.ndarray
) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, list[np.ndarray]]]]:
    """log L̂ = LSE(first_base − log(D_l + D^β), e), shared by the rectified forms (``first_base`` = b, or
    a − α·log X), and its backward pass: coef (S, n) → (coef × ∂log L̂/∂first_base, [∂/∂l, ∂/∂β, ∂/∂e] columns)."""
    denom, w_l, log_d = _rectified_denominator(l_, beta, log_d)
    first = first_base - denom
    log_pred = np.logaddexp(first, e)
    s_first = np.exp(first - log_pred)

    def backward(coef: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        c1 = coef * s_first
        return c1, [-(c1 * w_l).sum(1), -(c1 * (1.0 - w_l)) @ log_d, (coef - c1).sum(1)]

    return log_pred, backward


class RectifiedLaw(ScalingLaw):
    """Lin et al. (2024) rectified law L(D) = B / (D_l + D^β) + E, raw (b, l, beta, e) with D_l = exp(l).

    log L̂ = LSE(b − LSE(l, β·log D), e), so every piece stays finite for any raw values.
    """

    raw_param_names = ("b", "l", "beta", "e")
    param_names = ("B", "D_l", "beta", "E")
    formula = "L(D) = B / (D_l + D^beta) + E"
    zero_d_ok = True

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        return {"b": HOFFMANN_GRID["b"], **_RECTIFIED_GRID}

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        b, l_, beta, e = (raw[:, i : i + 1] for i in range(4))
        log_pred, backward = _rectified_prediction(b, l_, beta, e, log_inputs[:, 0])

        def vjp(coef: np.ndarray) -> np.ndarray:
            c1, rest = backward(coef)
            return np.stack([c1.sum(1), *rest], axis=1)

        return log_pred, vjp


class VanillaLaw(ScalingLaw):
    """Lin et al. (2024) vanilla law L(D) = (B·D^-β + E)^α, raw (b, beta, e, alpha).

    Lin et al. write (1/(B'·D^β) + E)^α; this is the same law with B = 1/B'. log L̂ = α·LSE(b − β·log D, e).
    """

    raw_param_names = ("b", "beta", "e", "alpha")
    param_names = ("B", "beta", "E", "alpha")
    formula = "L(D) = (B·D^-beta + E)^alpha"

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        return {
            "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
            "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
            "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
            "alpha": (0.5, 1.0, 1.5, 2.0),
        }

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_d = log_inputs[:, 0]
        b, beta, e, alpha = (raw[:, i : i + 1] for i in range(4))
        first = b - beta * log_d
        inner = np.logaddexp(first, e)
        s_first = np.exp(first - inner)

        def vjp(coef: np.ndarray) -> np.ndarray:
            ca = coef * alpha
            c1 = ca * s_first
            return np.stack(
                [c1.sum(1), -c1 @ log_d, (ca * (1.0 - s_first)).sum(1), (coef * inner).sum(1)], axis=1
            )

        return alpha * inner, vjp


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


class M3Law(ScalingLaw):
    """Alabdulmohsin, Neyshabur & Zhai (2022, arXiv:2209.06640) estimator M3: L(D) = B·(D^-1 + gamma)^c.

    The paper's ε_x = β·(x^-1 + γ)^c with c >= 0 and γ >= 0 (as in its official code), raw (b, c, g) with
    B = exp(b), gamma = exp(g). No separate E: the infinite-data limit is B·gamma^c, the small-data regime
    B·D^-c. log L̂ = b + c·LSE(-log D, g).
    """

    raw_param_names = ("b", "c", "g")
    param_names = ("B", "c", "gamma")
    formula = "L(D) = B·(D^-1 + gamma)^c"

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        # gamma is compared with 1/D: its log spans -log D of the usual data sizes.
        return {
            "b": (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0),
            "c": (0.1, 0.25, 0.5, 1.0, 2.0),
            "g": (-30.0, -25.0, -20.0, -15.0, -10.0, -5.0, 0.0),
        }

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_d = log_inputs[:, 0]
        b, c, g = (raw[:, i : i + 1] for i in range(3))
        inner = np.logaddexp(-log_d, g)  # log(1/D + gamma), (S, n)
        w_g = np.exp(g - inner)

        def vjp(coef: np.ndarray) -> np.ndarray:
            return np.stack([coef.sum(1), (coef * inner).sum(1), (coef * c * w_g).sum(1)], axis=1)

        return b + c * inner, vjp


#: Smallest alpha of M4: its equation has a root in (E, E + Delta) for every D only when alpha > 0.
M4_ALPHA_MIN = 1e-3


def _m4_logit(t: np.ndarray, alpha: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """The root s of h(s) = s + (alpha - 1)·softplus(s) = t, elementwise (alpha > 0): safeguarded Newton.

    With u = sigmoid(s), h(s) = log u - alpha·log(1 - u) rises with slope h' = 1 + (alpha - 1)·sigmoid(s) between
    min(1, alpha) and max(1, alpha), so the root lies in [min(r, r/alpha), max(r, r/alpha)], r = t - h(0). Newton
    steps that leave the shrinking bracket are replaced by bisection; h is convex or concave, so Newton converges
    in a few steps from the asymptote s = r (left) or r/alpha (right). Converged elements leave the iteration.
    """
    shape = np.broadcast_shapes(np.shape(t), np.shape(alpha))
    t, alpha = (np.array(v, dtype=float).ravel() for v in np.broadcast_arrays(t, alpha))
    am1 = alpha - 1.0
    r = t - am1 * np.log(2.0)
    lo = np.minimum(r, r / alpha)
    hi = np.maximum(r, r / alpha)
    s = np.where(r > 0, r / alpha, r)
    out = s.copy()
    active = np.arange(s.size)
    for _ in range(max_iter):
        q = np.exp(-np.abs(s))  # one exp gives softplus(s) and sigmoid(s)
        # h(s) = alpha·s + (alpha - 1)·log1p(q) for s >= 0 (no cancellation when alpha is small), s + ... below
        h = np.where(s >= 0, alpha * s, s) + am1 * np.log1p(q)
        f = h - t
        lo = np.where(f < 0, s, lo)
        hi = np.where(f > 0, s, hi)
        new = s - f / (1.0 + am1 * np.where(s >= 0, 1.0, q) / (1.0 + q))
        new = np.where((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
        new = np.where(f == 0, s, new)
        out[active] = new
        # done: a step at rounding level, or h(s) = t to the rounding of its terms
        going = (np.abs(new - s) > 1e-14 * (1.0 + np.abs(s))) & (np.abs(f) > 4e-16 * (np.abs(h) + np.abs(t)))
        if not going.any():
            break
        active, s, t, alpha, am1, lo, hi = (v[going] for v in (active, new, t, alpha, am1, lo, hi))
    return out.reshape(shape)


class M4Law(ScalingLaw):
    """Alabdulmohsin, Neyshabur & Zhai (2022, arXiv:2209.06640) estimator M4, implicit in L:
    (L - E) / (E + Delta - L)^alpha = B·D^-c, raw (b, c, alpha, e, delta).

    The paper's (ε_x - ε_∞) / (ε_0 - ε_x)^α = β·x^c with c < 0; here the exponent is written D^-c (c > 0 is a
    decreasing curve), ε_∞ = E = exp(e) and ε_0 = E + Delta with Delta = exp(delta), so E < L < ε_0 holds for any
    raw values; alpha > 0 (bounded below by ``M4_ALPHA_MIN``). alpha → 0 is M2, B·D^-c + E, capped at ε_0.

    Prediction: with u = (L - E)/Delta, log u - alpha·log(1 - u) = b - c·log D + (alpha - 1)·delta, solved for the
    logit s of u by :func:`_m4_logit`; log L̂ = LSE(e, delta + log sigmoid(s)). Gradient by the implicit-function
    theorem: ds/dθ = (dt/dθ - ∂h/∂θ) / h'(s).
    """

    raw_param_names = ("b", "c", "alpha", "e", "delta")
    param_names = ("B", "c", "alpha", "E", "Delta")
    formula = "(L - E) / (E + Delta - L)^alpha = B·D^-c"

    def raw_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The default box with alpha >= ``M4_ALPHA_MIN`` (M4 has no root for alpha <= 0)."""
        lo, hi = super().raw_bounds()
        names = self.free_param_names
        if "alpha" in names:
            i = names.index("alpha")
            lo[i] = max(lo[i], M4_ALPHA_MIN)
            if hi[i] < lo[i]:
                raise FitError(f"M4Law: alpha must be >= {M4_ALPHA_MIN:g}, got upper bound {hi[i]:g}")
        if self._fixed_raw.get(self.raw_param_names.index("alpha"), M4_ALPHA_MIN) < M4_ALPHA_MIN:
            raise FitError(f"M4Law: fixed alpha must be >= {M4_ALPHA_MIN:g}")
        return lo, hi

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        return {
            "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
            "c": (0.25, 0.5, 1.0, 2.0),
            "alpha": (0.25, 0.5, 1.0, 2.0),
            "e": (-2.0, -1.0, 0.0, 1.0),
            "delta": (-1.0, 0.0, 1.0),
        }

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_d = log_inputs[:, 0]
        b, c, alpha, e, delta = (raw[:, i : i + 1] for i in range(5))
        s = _m4_logit(b - c * log_d + (alpha - 1.0) * delta, alpha)  # (S, n)
        second = delta - _softplus(-s)  # log(L - E)
        log_pred = np.logaddexp(e, second)
        w = np.exp(second - log_pred)  # (L - E) / L
        # d log L / dt through s: w·sigmoid(-s) / h'(s)
        k_t = w * _sigmoid(-s) / (1.0 + (alpha - 1.0) * _sigmoid(s))
        d_alpha = delta - _softplus(s)  # dt/dalpha - dh/dalpha

        def vjp(coef: np.ndarray) -> np.ndarray:
            k = coef * k_t
            cw = coef * w
            return np.stack(
                [
                    k.sum(1),
                    -k @ log_d,
                    (k * d_alpha).sum(1),
                    (coef - cw).sum(1),
                    cw.sum(1) + (k * (alpha - 1.0)).sum(1),
                ],
                axis=1,
            )

        return log_pred, vjp


class BrokenLaw(ScalingLaw):
    """Caballero et al. (2022, arXiv:2210.14891) broken neural scaling law with one break:
    L(D) = E + B·D^-c0·(1 + (D/d1)^(1/f1))^(-c1·f1), raw (b, c0, c1, ld1, lf1, e).

    B = exp(b), d1 = exp(ld1) (the break), f1 = exp(lf1) (its smoothness: small f1 is a sharp break), E = exp(e);
    the slope is c0 below the break and c0 + c1 above it. With z = (log D - ld1)/f1,
    log L̂ = LSE(e, b - c0·log D - c1·f1·softplus(z)).
    """

    raw_param_names = ("b", "c0", "c1", "ld1", "lf1", "e")
    param_names = ("B", "c0", "c1", "d1", "f1", "E")
    formula = "L(D) = E + B·D^-c0·(1 + (D/d1)^(1/f1))^(-c1·f1)"

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        return {
            "b": (0.0, 5.0, 10.0, 15.0, 20.0),
            "c0": (0.0, 0.5, 1.0),
            "c1": (-0.25, 0.5, 1.5),
            "ld1": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
            "lf1": (-1.0, 1.0),
            "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        }

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_d = log_inputs[:, 0]
        b, c0, c1, ld1, lf1, e = (raw[:, i : i + 1] for i in range(6))
        f1 = np.exp(lf1)
        z = (log_d - ld1) * np.exp(-lf1)  # (S, n)
        sp = _softplus(z)
        sig = _sigmoid(z)
        first = b - c0 * log_d - c1 * f1 * sp
        log_pred = np.logaddexp(first, e)
        w = np.exp(first - log_pred)
        # d softplus(z)·f1 / d lf1 = f1·(softplus(z) - z·sigmoid(z)), written without cancellation for z > 0
        pos = z > 0
        zs = np.where(pos, z, 0.0)
        shape = np.where(pos, _softplus(-zs) + zs * _sigmoid(-zs), sp - np.where(pos, 0.0, z) * sig)

        def vjp(coef: np.ndarray) -> np.ndarray:
            cw = coef * w
            return np.stack(
                [
                    cw.sum(1),
                    -cw @ log_d,
                    -(cw * f1 * sp).sum(1),
                    (cw * c1 * sig).sum(1),
                    -(cw * c1 * f1 * shape).sum(1),
                    (coef - cw).sum(1),
                ],
                axis=1,
            )

        return log_pred, vjp


class RectifiedJointLaw(ScalingLaw):
    """Joint law L(X, D) = A·X^-alpha / (D_l + D^beta) + E, raw (a, alpha, l, beta, e) with D_l = exp(l).

    Lin et al.'s (2024) rectified data term inside the multiplicative law (paper Eq. 1): A·X^-alpha·D^-beta + E at
    large D, flattening to A·X^-alpha / D_l + E at small D and defined at D = 0 (beta > 0).
    log L̂ = LSE(a - alpha·log X - LSE(l, beta·log D), e).
    """

    raw_param_names = ("a", "alpha", "l", "beta", "e")
    param_names = ("A", "alpha", "D_l", "beta", "E")
    n_inputs = 2
    input_names = ("x", "d")
    formula = "L(X, D) = A·X^-alpha / (D_l + D^beta) + E"
    zero_d_ok = True

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        return {"a": HOFFMANN_GRID["a"], "alpha": HOFFMANN_GRID["alpha"], **_RECTIFIED_GRID}

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_x = log_inputs[:, 0]
        a, alpha, l_, beta, e = (raw[:, i : i + 1] for i in range(5))
        log_pred, backward = _rectified_prediction(a - alpha * log_x, l_, beta, e, log_inputs[:, 1])

        def vjp(coef: np.ndarray) -> np.ndarray:
            c1, rest = backward(coef)
            return np.stack([c1.sum(1), -c1 @ log_x, *rest], axis=1)

        return log_pred, vjp


# The one registry of law forms: joint forms take (x, d) columns (``n_inputs == 2``), single-factor forms d alone.
JOINT_LAWS = ("multiplicative", "additive", "rectified-joint")
SINGLE_FACTOR_LAWS = ("power", "rectified", "vanilla", "m3", "m4", "broken")
# Listed to users in this order: the paper's forms (joint, then single-factor), then the alternative forms.
LAW_NAMES = (
    "multiplicative",
    "additive",
    "power",
    "rectified",
    "vanilla",
    "rectified-joint",
    "m3",
    "m4",
    "broken",
)
LAW_FORMS: dict[str, type[ScalingLaw]] = {
    "power": PowerLaw,
    "multiplicative": MultiplicativeLaw,
    "additive": AdditiveLaw,
    "rectified": RectifiedLaw,
    "vanilla": VanillaLaw,
    "m3": M3Law,
    "m4": M4Law,
    "broken": BrokenLaw,
    "rectified-joint": RectifiedJointLaw,
}


def law_class(name: str) -> type[ScalingLaw]:
    """The law class for a form name (one of ``LAW_NAMES``: ``multiplicative``, ``power``, ``m4``, ...)."""
    key = name.strip().lower()
    if key not in LAW_FORMS:
        raise FitError(f"unknown law {name!r}: choose one of {', '.join(LAW_NAMES)}")
    return LAW_FORMS[key]


def zero_shot_law(name: str) -> type[ScalingLaw]:
    """The law class for ``--zero-shot`` fits: only forms defined at D_f = 0 (``zero_d_ok``) may take those points."""
    cls = law_class(name)
    if not cls.zero_d_ok:
        defined = ", ".join(key for key, form in LAW_FORMS.items() if form.zero_d_ok)
        raise FitError(
            f"--zero-shot: the {name.strip().lower()} law is not defined at D_f = 0; use one that is ({defined})"
        )
    return cls
