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
LOG_PARAMS: dict[str, str] = {"A": "a", "B": "b", "E": "e", "D_l": "l"}
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
}

VJP = Callable[[np.ndarray], np.ndarray]


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
    n_inputs: ClassVar[int] = 1
    input_names: ClassVar[tuple[str, ...]] = ("d",)
    formula: ClassVar[str] = ""

    def __init__(
        self,
        residual: str = "linear",
        huber_delta: float = 1e-3,
        reduction: str = "sum",
        grid: str | Mapping[str, Any] | np.ndarray = "hoffmann",
        fixed: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        seed: int = 0,
        max_iter: int = 15000,
    ) -> None:
        if residual not in ("linear", "log"):
            raise FitError(f"residual must be 'linear' or 'log', got {residual!r}")
        if reduction not in ("sum", "mean"):
            raise FitError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if not (np.isfinite(huber_delta) and huber_delta > 0):
            raise FitError(f"huber_delta must be a positive number, got {huber_delta!r}")
        self.residual = residual
        self.huber_delta = float(huber_delta)
        self.reduction = reduction
        self.grid = grid
        self.fixed = dict(fixed) if fixed else None
        self.bounds = dict(bounds) if bounds else None
        self.seed = seed
        self.max_iter = int(max_iter)
        self._fixed_raw = self._resolve_fixed(self.fixed or {})
        self.raw_params_: np.ndarray | None = None
        self.warnings_: list[str] = []

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
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise FitError(
                f"{type(self).__name__}: inputs ({', '.join(self.input_names)}) must be finite and > 0 "
                "(drop zero-shot / zero-size points before fitting)"
            )
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

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        return _lse_linear_terms(raw, [{0: None, 1: -log_inputs[:, 0]}, {2: None}])


class MultiplicativeLaw(ScalingLaw):
    """Joint law L(X, D) = A·X^-α·D^-β + E (paper Eq. 1)."""

    raw_param_names = ("a", "alpha", "beta", "e")
    param_names = ("A", "alpha", "beta", "E")
    n_inputs = 2
    input_names = ("x", "d")
    formula = "L(X, D) = A·X^-alpha·D^-beta + E"

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

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_x, log_d = log_inputs[:, 0], log_inputs[:, 1]
        return _lse_linear_terms(raw, [{0: None, 1: -log_x}, {2: None, 3: -log_d}, {4: None}])


class RectifiedLaw(ScalingLaw):
    """Lin et al. (2024) rectified law L(D) = B / (D_l + D^β) + E, raw (b, l, beta, e) with D_l = exp(l).

    log L̂ = LSE(b − LSE(l, β·log D), e), so every piece stays finite for any raw values.
    """

    raw_param_names = ("b", "l", "beta", "e")
    param_names = ("B", "D_l", "beta", "E")
    formula = "L(D) = B / (D_l + D^beta) + E"

    def default_grid(self) -> dict[str, tuple[float, ...]]:
        # D_l is compared with D^beta, so its log spans the range of beta·log D for the usual data sizes.
        return {
            "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
            "l": (0.0, 5.0, 10.0, 15.0, 20.0),
            "beta": (0.25, 0.5, 1.0, 1.5, 2.0),
            "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        }

    def log_prediction(self, raw: np.ndarray, log_inputs: np.ndarray) -> tuple[np.ndarray, VJP]:
        log_d = log_inputs[:, 0]
        b, l_, beta, e = (raw[:, i : i + 1] for i in range(4))
        power = beta * log_d  # (S, n)
        denom = np.logaddexp(l_, power)
        w_l = np.exp(l_ - denom)
        first = b - denom
        log_pred = np.logaddexp(first, e)
        s_first = np.exp(first - log_pred)

        def vjp(coef: np.ndarray) -> np.ndarray:
            c1 = coef * s_first
            return np.stack(
                [
                    c1.sum(1),
                    -(c1 * w_l).sum(1),
                    -(c1 * (1.0 - w_l)) @ log_d,
                    (coef * (1.0 - s_first)).sum(1),
                ],
                axis=1,
            )

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


# The one registry of law forms: joint forms take (x, d) columns (``n_inputs == 2``), single-factor forms d alone.
JOINT_LAWS = ("multiplicative", "additive")
SINGLE_FACTOR_LAWS = ("power", "rectified", "vanilla")
LAW_NAMES = JOINT_LAWS + SINGLE_FACTOR_LAWS
LAW_FORMS: dict[str, type[ScalingLaw]] = {
    "power": PowerLaw,
    "multiplicative": MultiplicativeLaw,
    "additive": AdditiveLaw,
    "rectified": RectifiedLaw,
    "vanilla": VanillaLaw,
}


def law_class(name: str) -> type[ScalingLaw]:
    """The law class for a form name (``multiplicative``, ``additive``, ``power``, ``rectified``, ``vanilla``)."""
    key = name.strip().lower()
    if key not in LAW_FORMS:
        raise FitError(f"unknown law {name!r}: choose one of {', '.join(LAW_NAMES)}")
    return LAW_FORMS[key]
