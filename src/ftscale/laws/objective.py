"""The objective of a scaling-law fit: Huber loss of the residuals (PAPER.md §2.4, Eq. 2), batched over
parameter vectors with an analytic gradient, its joint (shared β/E) form, and the BLAS thread control that keeps
many small evaluations fast.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ftscale.errors import FitError

try:  # optional: the standard way to limit BLAS threads; a ctypes fallback below covers OpenBLAS without it
    from threadpoolctl import threadpool_limits  # type: ignore[import-not-found]
except ImportError:
    threadpool_limits = None
from ftscale.laws.forms import (
    ScalingLaw,
)

_openblas_cache: dict[str, tuple[Callable[[], int], Callable[[int], None]] | None] = {}


_CHUNK = 256  # parameter vectors evaluated together


_PER_FACTOR = {"multiplicative": ("a", "alpha"), "additive": ("a", "alpha", "b")}


_SHARED = ("beta", "e")


# (get, set) symbol pairs of the OpenBLAS builds numpy and scipy wheels ship (scipy_openblas[64_]) and of plain ones.
_OPENBLAS_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def _loaded_openblas() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    """Thread-count getters/setters of every OpenBLAS loaded in this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return []
    found = []
    for path in sorted(paths):
        if path not in _openblas_cache:
            _openblas_cache[path] = None
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for get_name, set_name in _OPENBLAS_SYMBOLS:
                if hasattr(lib, get_name) and hasattr(lib, set_name):
                    getter, setter = getattr(lib, get_name), getattr(lib, set_name)
                    getter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
                    _openblas_cache[path] = (getter, setter)
                    break
        if _openblas_cache[path] is not None:
            found.append(_openblas_cache[path])
    return found


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS single-threaded inside the block (thread counts restored after).

    The fits make thousands of tiny BLAS calls (scipy's L-BFGS-B, small mat-vecs); a multi-threaded OpenBLAS
    wakes and syncs its threads on every one, which on a busy machine made one scipy polish ~100x slower
    (measured: 99 ms vs 1.1 ms for a 2-parameter problem). Uses threadpoolctl when installed.
    """
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    handles = _loaded_openblas()
    previous = [(setter, getter()) for getter, setter in handles]
    for _, setter in handles:
        setter(1)
    try:
        yield
    finally:
        for setter, count in previous:
            setter(count)


def _blas_single_threaded(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with single_threaded_blas():
            return func(*args, **kwargs)

    return wrapper


def huber(residual: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss (same as scipy.special.huber) and its derivative, elementwise."""
    abs_r = np.abs(residual)
    quad = abs_r <= delta
    loss = np.where(quad, 0.5 * residual * residual, delta * (abs_r - 0.5 * delta))
    return loss, np.clip(residual, -delta, delta)


def residual_scale(law: ScalingLaw, y: np.ndarray) -> float:
    """Largest derivative of one point's loss that counts as "far from the optimum": δ for the Huber loss (its
    linear part), the spread of the targets on the residual's scale for least squares (whose derivative is the
    residual itself). Convergence tolerances are relative to it."""
    if law.loss == "huber":
        return law.huber_delta
    values = np.log(y) if law.residual == "log" else np.asarray(y, dtype=float)
    return max(float(np.std(values)), 1e-3 * float(np.max(np.abs(values))), 1e-12)


def check_targets(y: Any, n: int, who: str) -> np.ndarray:
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{who}: y must be numeric losses ({exc})") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise FitError(f"{who}: y must have shape ({n},) to match X, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise FitError(f"{who}: losses y must be finite and > 0 (check for NaN/inf or zero losses)")
    return arr


class Objective:
    """Huber objective of one law on one data set, batched over parameter vectors (and bootstrap weights)."""

    def __init__(
        self,
        law: ScalingLaw,
        log_inputs: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        self.law = law
        self.log_inputs = log_inputs
        self.y = y
        self.log_y = np.log(y)
        # weights: None, (n,) for all starts, or (R, n) indexed by the ``rows`` argument (bootstrap counts)
        self.weights = weights
        self.free = law.free_index
        # Largest gradient magnitude the data allow (every Huber term in its linear part): convergence is
        # judged relative to it, since the absolute size of a gradient depends on n, delta and the units.
        n_eff = len(y) if weights is None else float(np.max(np.sum(np.atleast_2d(weights), axis=1)))
        self.grad_scale = (
            residual_scale(law, y)
            * (n_eff if law.reduction == "sum" else 1.0)
            * max(1.0, float(np.max(np.abs(log_inputs), where=np.isfinite(log_inputs), initial=0.0)))
            * (float(np.max(y)) if law.residual == "linear" else 1.0)
        )

    def _loss(self, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.law.loss == "lsq":
            return 0.5 * residual * residual, residual
        return huber(residual, self.law.huber_delta)

    def _weights_for(self, rows: np.ndarray | None, size: int) -> np.ndarray | None:
        if self.weights is None:
            return None
        if self.weights.ndim == 1:
            return self.weights[None, :]
        return self.weights[rows] if rows is not None else np.broadcast_to(self.weights, (size, len(self.y)))

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if theta.shape[0] <= _CHUNK:
            return self._evaluate(theta, rows)
        # chunks keep the (starts x points x terms) temporaries in cache: ~3x faster than one big batch
        parts = [
            self._evaluate(theta[i : i + _CHUNK], None if rows is None else rows[i : i + _CHUNK])
            for i in range(0, theta.shape[0], _CHUNK)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def residual_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d residual_i / d theta (n_used, p_free) at one parameter vector, for points with non-zero weight."""
        n = len(self.y)
        raw = np.repeat(self.law.full_raw(theta)[None, :], n, axis=0)
        log_pred, vjp = self.law.log_prediction(raw, self.log_inputs)
        scale = np.exp(log_pred[0]) if self.law.residual == "linear" else np.ones(n)
        coef = np.eye(n) * scale[None, :]
        jac = vjp(coef)[:, self.free]
        if self.weights is not None and self.weights.ndim == 1:
            jac = jac[self.weights > 0] * np.sqrt(self.weights[self.weights > 0])[:, None]
        return jac

    # Far from the data (a start or a trial step of the line search) a prediction can overflow: the objective is
    # then +inf there, which the optimisers treat as "not a descent", so numpy's warnings are noise.
    @np.errstate(over="ignore", invalid="ignore")
    def _evaluate(self, theta: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        law = self.law
        raw = law.full_raw(theta)
        log_pred, vjp = law.log_prediction(raw, self.log_inputs)
        if law.residual == "log":
            loss, dloss = self._loss(log_pred - self.log_y)
        else:
            pred = np.exp(log_pred)
            loss, dloss = self._loss(pred - self.y)
            dloss = dloss * pred
        w = self._weights_for(rows, theta.shape[0])
        if w is not None:
            loss, dloss = loss * w, dloss * w
        values = loss.sum(axis=1)
        grads = vjp(dloss)[:, self.free]
        if law.reduction == "mean":
            total = len(self.y) if w is None else w.sum(axis=1)
            total = np.asarray(total, dtype=float).reshape(-1)
            values = values / total
            grads = grads / total[:, None]
        values = np.where(np.isfinite(values), values, np.inf)
        return values, grads


def _single(fun: Callable, row: int | None = None) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    rows = None if row is None else np.array([row])

    def wrapped(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fun(theta[None, :], rows)
        return float(f[0]), g[0]

    return wrapped


class JointObjective:
    """Sum of per-factor objectives with shared (beta, e) and per-factor raw parameters.

    Parameter vector layout: [beta, e, <per-factor params of factor 1>, <factor 2>, ...].
    """

    def __init__(self, objectives: list[Objective], form: str) -> None:
        self.objectives = objectives
        per = _PER_FACTOR[form]
        self.index = []
        for k, objective in enumerate(objectives):
            names = objective.law.raw_param_names
            layout = {"beta": 0, "e": 1} | {name: 2 + len(per) * k + j for j, name in enumerate(per)}
            self.index.append(np.array([layout[name] for name in names]))
        self.n_params = 2 + len(per) * len(objectives)
        self.grad_scale = sum(o.grad_scale for o in objectives)

    def residual_jacobian(self, theta: np.ndarray) -> np.ndarray:
        blocks = []
        for objective, index in zip(self.objectives, self.index, strict=True):
            part = objective.residual_jacobian(theta[index])
            block = np.zeros((part.shape[0], self.n_params))
            block[:, index] = part
            blocks.append(block)
        return np.vstack(blocks)

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        total = np.zeros(theta.shape[0])
        grad = np.zeros_like(theta)
        for objective, index in zip(self.objectives, self.index, strict=True):
            f, g = objective(theta[:, index], rows)
            total += f
            grad[:, index] += g
        return total, grad


class _RowFixedObjective:
    """An objective with some raw parameters held at per-row values (stage 2 of a bootstrap: every resample has
    its own stage-1 beta and e); the optimiser sees only the remaining parameters."""

    def __init__(self, objective: Objective, free: np.ndarray, fixed: np.ndarray, values: np.ndarray) -> None:
        self.objective = objective
        self.free, self.fixed, self.values = free, fixed, values  # values: (R, len(fixed)) by row
        self.grad_scale = objective.grad_scale

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        assert rows is not None, "per-row fixed values need the rows of the batch"
        full = np.empty((theta.shape[0], len(self.free) + len(self.fixed)))
        full[:, self.free] = theta
        full[:, self.fixed] = self.values[rows]
        f, g = self.objective(full, rows)
        return f, g[:, self.free]
