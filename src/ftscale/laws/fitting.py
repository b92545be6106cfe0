"""Fitting scaling laws: Huber objective, multi-start L-BFGS, two-stage shared β/E fit (Eq. 2), bootstrap.

Protocol (PAPER.md §2.4, Hoffmann et al. App. D.2): Huber loss (δ = 1e-3) of the residual L̂ − L (default, as the
paper prints) or log L̂ − log L (Hoffmann), summed over points by default; L-BFGS from every point of a grid of
starts, keep the best. Speed comes from running all starts together in a batched numpy L-BFGS, then polishing
the best distinct candidates with scipy's L-BFGS-B at tight tolerances (ftol 1e-15, gtol 1e-12): the reported
optimum is always a scipy-polished one.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from ftscale.errors import FitError

try:  # optional: the standard way to limit BLAS threads; a ctypes fallback below covers OpenBLAS without it
    from threadpoolctl import threadpool_limits  # type: ignore[import-not-found]
except ImportError:
    threadpool_limits = None
from ftscale.laws._lbfgs import batched_lbfgs, projected_gradient
from ftscale.laws.forms import (
    LAW_FORMS,
    FitWarning,
    MultiplicativeLaw,
    ScalingLaw,
)

POLISH_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxcor": 20, "maxls": 50}
_N_POLISH = 4  # distinct best candidates of the batched phase polished with scipy
_CHUNK = 256  # parameter vectors evaluated together
_SCREEN_ITER = 30  # batched iterations every start gets before pruning
_SCREEN_KEEP = 64  # at least this many starts survive screening ...
_SCREEN_FRACTION = 0.02  # ... or this fraction of them, whichever is larger
_FLAT_RATIO = 1e-10  # J^T J eigenvalue ratio below which a direction counts as flat (non-identifiable)
# Stage 2 of the two-stage fit (beta, E held) has 2-3 free parameters: a few batched iterations find the basin and
# the scipy polish does the rest; the full 400 mostly went to slow crawls along the a/alpha valley (same optimum
# to ~1e-11 in raw parameters, 3-4x faster, checked on the synthetic two-stage problems of the tests).
_STAGE2_BATCH_ITER = 60
_CONVERGED_GRAD = 1e-6  # projected gradient, relative to the objective's gradient scale, that counts as zero


# ----- BLAS threads ---------------------------------------------------------------------------------------------

# (get, set) symbol pairs of the OpenBLAS builds numpy and scipy wheels ship (scipy_openblas[64_]) and of plain ones.
_OPENBLAS_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)
_openblas_cache: dict[str, tuple[Callable[[], int], Callable[[int], None]] | None] = {}


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
            law.huber_delta
            * (n_eff if law.reduction == "sum" else 1.0)
            * max(1.0, float(np.max(np.abs(log_inputs))))
            * (float(np.max(y)) if law.residual == "linear" else 1.0)
        )

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

    def _evaluate(self, theta: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        law = self.law
        raw = law.full_raw(theta)
        log_pred, vjp = law.log_prediction(raw, self.log_inputs)
        if law.residual == "log":
            residual = log_pred - self.log_y
            loss, dloss = huber(residual, law.huber_delta)
        else:
            pred = np.exp(log_pred)
            residual = pred - self.y
            loss, dloss = huber(residual, law.huber_delta)
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


@dataclass
class OptimumReport:
    x: np.ndarray
    fun: float
    converged: bool
    n_starts: int
    message: str


def polish(
    fun: Callable, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int, row: int | None = None
) -> tuple[np.ndarray, float, bool, str]:
    """scipy L-BFGS-B at tight tolerance from x0; convergence = scipy's stop AND a small projected gradient."""
    single = _single(fun, row)
    bounds = list(zip(lo, hi, strict=True))
    res = minimize(
        single,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={**POLISH_OPTIONS, "maxiter": max_iter, "maxfun": 4 * max_iter},
    )
    f, g = single(res.x)
    scale = float(getattr(fun, "grad_scale", 1.0))
    return res.x, f, _is_converged(res, res.x, f, g, lo, hi, scale), str(res.message)


def _is_converged(
    res: Any, x: np.ndarray, f: float, g: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: float
) -> bool:
    # With ftol = 1e-15, L-BFGS-B often stops on "ABNORMAL" line-search termination at the optimum (the Huber
    # loss has a discontinuous second derivative); accept that when the projected gradient is tiny.
    pg = np.max(np.abs(projected_gradient(x, g, lo, hi))) if g.size else 0.0
    small_gradient = pg <= _CONVERGED_GRAD * scale
    stopped_normally = bool(res.success) or "ABNORMAL" in str(res.message).upper()
    return bool(np.isfinite(f) and stopped_normally and small_gradient)


def multistart_minimize(
    fun: Callable,
    starts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_iter: int = 15000,
    n_polish: int = _N_POLISH,
    batch_iter: int = 400,
) -> OptimumReport:
    """Minimise from every start: batched L-BFGS over all starts, then scipy-polish the best distinct ones."""
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    n_starts = len(starts)
    batch_iter = min(batch_iter, max_iter)
    if starts.shape[1] == 0:
        f, _ = fun(np.zeros((1, 0)), None)
        return OptimumReport(np.zeros(0), float(f[0]), True, 1, "no free parameters")
    if len(starts) > _SCREEN_KEEP:
        # Screening: a few batched iterations from every start, then only the most promising continue. Most
        # grid starts fall into the same few basins; the bench checks the result against a full scipy loop.
        screen = batched_lbfgs(fun, starts, lo, hi, max_iter=min(_SCREEN_ITER, max_iter))
        keep = np.argsort(screen.fun, kind="stable")[: max(_SCREEN_KEEP, int(_SCREEN_FRACTION * len(starts)))]
        starts = screen.x[keep]
    batch = batched_lbfgs(fun, starts, lo, hi, max_iter=batch_iter)
    order = np.argsort(batch.fun, kind="stable")
    picked: list[int] = []
    for i in order:
        if not np.isfinite(batch.fun[i]):
            break
        # skip candidates that sit on top of an already picked one (same basin)
        if any(np.max(np.abs(batch.x[i] - batch.x[j])) < 1e-4 for j in picked):
            continue
        picked.append(int(i))
        if len(picked) >= n_polish:
            break
    if not picked:
        raise FitError("the objective is not finite at any starting point; check the data's scale")
    best: tuple[np.ndarray, float, bool, str] | None = None
    for i in picked:
        x, f, conv, msg = polish(fun, batch.x[i], lo, hi, max_iter)
        if best is None or f < best[1]:
            best = (x, f, conv, msg)
    assert best is not None
    return OptimumReport(best[0], best[1], best[2], n_starts, best[3])


def diagnose(
    fun: Callable, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, names: Sequence[str], converged: bool
) -> list[str]:
    """Messages about a suspicious optimum: parameters on a bound, flat directions, no convergence."""
    messages = []
    if not converged:
        messages.append("not converged: the optimiser stopped before the gradient vanished")
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    for i, name in enumerate(names):
        if abs(x[i] - lo[i]) <= 1e-6 * span[i] or abs(x[i] - hi[i]) <= 1e-6 * span[i]:
            side = "lower" if abs(x[i] - lo[i]) <= 1e-6 * span[i] else "upper"
            natural = {"a": "A", "b": "B", "e": "E", "l": "D_l"}.get(name, name)
            messages.append(f"{natural} at {side} bound ({name} = {x[i]:.4g})")
    interior = np.array([not any(name in m and "bound" in m for m in messages) for name in names])
    if x.size and interior.any():
        # Gauss-Newton curvature J^T J of the residuals: a direction in which no prediction moves is flat for
        # any residual loss. (A finite-difference Hessian of the Huber objective is unreliable: in its linear
        # part the curvature is zero or jumps.)
        jac = fun.residual_jacobian(x)[:, interior]
        gauss_newton = jac.T @ jac
        eigval, eigvec = np.linalg.eigh(gauss_newton)
        top = max(abs(eigval[-1]), 1e-300)
        sub_names = [n for n, keep in zip(names, interior, strict=True) if keep]
        for k in range(len(eigval)):
            if eigval[k] <= _FLAT_RATIO * top:
                vec = eigvec[:, k]
                involved = [n for n, c in zip(sub_names, vec, strict=True) if abs(c) >= 0.05]
                messages.append(
                    "non-identifiable: objective flat along "
                    + "/".join(involved)
                    + f" (curvature ratio {eigval[k] / top:.1e})"
                )
    return messages


def _emit(messages: Sequence[str], who: str) -> None:
    for message in messages:
        warnings.warn(f"{who}: {message}", FitWarning, stacklevel=4)  # past the BLAS wrapper


@_blas_single_threaded
def fit_law(
    law: ScalingLaw, X: Any, y: Any, sample_weight: Any = None, *, batch_iter: int = 400
) -> ScalingLaw:
    """Fit ``law`` to (X, y) from its grid of starts; sets params_, loss_, converged_, warnings_, n_starts_.

    ``batch_iter`` caps the batched L-BFGS iterations per start before the best candidates are scipy-polished.
    """
    who = type(law).__name__
    log_inputs = law._check_X(X)
    targets = check_targets(y, len(log_inputs), who)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=float)
        if weights.shape != targets.shape or np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise FitError(f"{who}: sample_weight must be finite, >= 0 and of shape {targets.shape}")
    n_points = len(targets) if weights is None else int(np.count_nonzero(weights))
    if n_points < law.n_params:
        raise FitError(
            f"{who}: {n_points} points cannot determine {law.n_params} free parameters "
            f"({', '.join(law.free_param_names)}); add points or fix parameters"
        )
    fun = Objective(law, log_inputs, targets, weights)
    lo, hi = law.raw_bounds()
    starts = np.clip(law.starting_points(), lo, hi)
    report = multistart_minimize(fun, starts, lo, hi, max_iter=law.max_iter, batch_iter=batch_iter)
    law._set_fitted(law.full_raw(report.x), report.fun, report.converged, report.n_starts)
    law.warnings_ = diagnose(fun, report.x, lo, hi, law.free_param_names, report.converged)
    _emit(law.warnings_, who)
    return law


# ----- two-stage joint fit (PAPER.md §2.4, Eq. 2) -------------------------------------------------------------

_PER_FACTOR = {"multiplicative": ("a", "alpha"), "additive": ("a", "alpha", "b")}
_SHARED = ("beta", "e")


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


@dataclass
class TwoStageResult:
    shared: dict[str, float]  # {"beta": ..., "E": ...}
    laws: dict[str, ScalingLaw]  # per factor, stage-2 fits with beta and E fixed
    stage1_factors: tuple[str, ...]
    stage1_loss: float
    stage1_raw: np.ndarray
    converged: bool
    warnings: list[str] = field(default_factory=list)

    def params(self) -> pd.DataFrame:
        """One row per factor: the natural parameters of its stage-2 law."""
        return pd.DataFrame({name: law.params_ for name, law in self.laws.items()}).T


def _law_class(form: str) -> type[ScalingLaw]:
    if form not in _PER_FACTOR:
        raise FitError(f"form must be 'multiplicative' or 'additive', got {form!r}")
    return LAW_FORMS[form]


def _stage1_starts(
    objectives: list[Objective], form: str, grid_laws: list[ScalingLaw], lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Starts for the joint fit: each (beta, e) of the Hoffmann sub-grid, with every factor's own parameters set
    to that factor's best grid point given this (beta, e) (evaluated in one batched call per factor)."""
    per = _PER_FACTOR[form]
    shared_grid = np.array([(b, e) for b in (0.0, 0.5, 1.0, 1.5, 2.0) for e in (-1.0, -0.5, 0.0, 0.5, 1.0)])
    starts = np.zeros((len(shared_grid), 2 + len(per) * len(objectives)))
    starts[:, :2] = shared_grid
    for k, (objective, law) in enumerate(zip(objectives, grid_laws, strict=True)):
        full = law.starting_points()  # the law's full raw grid (no fixed params)
        names = law.raw_param_names
        per_cols = [names.index(n) for n in per]
        per_grid = np.unique(full[:, per_cols], axis=0)
        for s, (beta, e) in enumerate(shared_grid):
            cand = np.zeros((len(per_grid), len(names)))
            cand[:, per_cols] = per_grid
            cand[:, names.index("beta")] = beta
            cand[:, names.index("e")] = e
            values, _ = objective(cand, None)
            starts[s, 2 + len(per) * k : 2 + len(per) * (k + 1)] = per_grid[int(np.argmin(values))]
    return np.clip(starts, lo, hi)


def _stage1_problem(
    factors: Mapping[str, tuple[Any, Any]],
    stage1_names: Sequence[str],
    law_cls: type[ScalingLaw],
    config: Mapping[str, Any],
    weights: Mapping[str, np.ndarray] | None,
) -> tuple[JointObjective, list[ScalingLaw], np.ndarray, np.ndarray]:
    """The stage-1 joint objective (weights per factor: None, (n,) or (R, n) resample counts) and its box."""
    form = "multiplicative" if law_cls is MultiplicativeLaw else "additive"
    objectives = []
    grid_laws = []
    for name in stage1_names:
        X, y = factors[name]
        law = law_cls(**config)
        log_inputs = law._check_X(X)
        targets = check_targets(y, len(log_inputs), f"factor {name!r}")
        w = None if weights is None else weights.get(name)
        objectives.append(Objective(law, log_inputs, targets, w))
        grid_laws.append(law)
    joint = JointObjective(objectives, form)
    n_points = sum(len(o.y) for o in objectives)
    if n_points < joint.n_params:
        raise FitError(
            f"two-stage fit: stage 1 has {n_points} points over {', '.join(stage1_names)} for "
            f"{joint.n_params} parameters; add points"
        )
    base_lo, base_hi = grid_laws[0].raw_bounds()
    raw_names = law_cls.raw_param_names
    per = _PER_FACTOR[form]
    shared_lo = [base_lo[raw_names.index("beta")], base_lo[raw_names.index("e")]]
    shared_hi = [base_hi[raw_names.index("beta")], base_hi[raw_names.index("e")]]
    lo = np.concatenate([shared_lo, np.tile([base_lo[raw_names.index(n)] for n in per], len(objectives))])
    hi = np.concatenate([shared_hi, np.tile([base_hi[raw_names.index(n)] for n in per], len(objectives))])
    return joint, grid_laws, lo, hi


@_blas_single_threaded
def fit_two_stage(
    factors: Mapping[str, tuple[Any, Any]],
    stage1: Sequence[str] = ("model_size", "pretrain_tokens"),
    form: str = "multiplicative",
    residual: str = "linear",
    huber_delta: float = 1e-3,
    reduction: str = "sum",
    grid: str | Mapping[str, Any] | np.ndarray = "hoffmann",
    weights: Mapping[str, np.ndarray] | None = None,
) -> TwoStageResult:
    """Paper Eq. 2: fit shared (beta, E) jointly over the stage-1 factors, then refit (a, alpha[, b]) per factor.

    ``factors`` maps a factor name to (X (n, 2) with columns (x, d), y). Stage 1 uses the factors named in
    ``stage1`` that are present (all factors when none is). Stage 2 refits every factor with beta and E fixed.
    """
    law_cls = _law_class(form)
    if not factors:
        raise FitError("fit_two_stage needs at least one factor (name -> (X, y))")
    names = list(factors)
    stage1_names = tuple(n for n in stage1 if n in factors) or tuple(names)
    config = {"residual": residual, "huber_delta": huber_delta, "reduction": reduction, "grid": grid}
    joint, grid_laws, lo, hi = _stage1_problem(factors, stage1_names, law_cls, config, weights)
    objectives = joint.objectives
    per = _PER_FACTOR[form]
    starts = _stage1_starts(objectives, form, grid_laws, lo, hi)
    report = multistart_minimize(joint, starts, lo, hi)
    beta, e = report.x[0], report.x[1]
    joint_names = ["beta", "e"] + [f"{n}_{f}" for f in stage1_names for n in per]
    messages = [f"stage 1: {m}" for m in diagnose(joint, report.x, lo, hi, joint_names, report.converged)]
    _emit(messages, "fit_two_stage")

    laws: dict[str, ScalingLaw] = {}
    converged = report.converged
    for name in names:
        X, y = factors[name]
        law = law_cls(**config, fixed={"beta": beta, "e": e})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            fit_law(
                law,
                X,
                y,
                sample_weight=None if weights is None else weights.get(name),
                batch_iter=_STAGE2_BATCH_ITER,
            )
        _emit([f"stage 2 {name!r}: {m}" for m in law.warnings_], "fit_two_stage")
        messages += [f"stage 2 {name!r}: {m}" for m in law.warnings_]
        converged = converged and law.converged_
        laws[name] = law
    return TwoStageResult(
        shared={"beta": float(beta), "E": float(np.exp(e))},
        laws=laws,
        stage1_factors=stage1_names,
        stage1_loss=report.fun,
        stage1_raw=report.x,
        converged=converged,
        warnings=messages,
    )


# ----- bootstrap -----------------------------------------------------------------------------------------------


@dataclass
class BootstrapResult:
    """Bootstrap draws of a fit's parameters.

    ``samples`` has one row per converged resample, indexed by the resample's number (index name ``resample``,
    0 .. n_resamples-1; failed resamples are absent from the index). Resample i of two bootstraps run with the
    seed on data with the same points in the same order draws the same point indices (whatever n_resamples),
    so two methods' bootstraps pair by index: ``a.paired_with(b)`` keeps the resamples both have.
    """

    samples: pd.DataFrame  # one row per converged resample, index = resample number
    estimate: dict[str, float]  # full-data values
    n_failed: int

    def paired_with(self, other: BootstrapResult) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Both sample tables restricted to the resample numbers present in both, in the same order."""
        common = self.samples.index.intersection(other.samples.index).sort_values()
        return self.samples.loc[common], other.samples.loc[common]

    def ci(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals: index = parameter, columns [estimate, low, high, se]."""
        if not 0 < level < 1:
            raise FitError(f"level must be in (0, 1), got {level}")
        tail = 100 * (1 - level) / 2
        rows = {}
        for column in self.samples.columns:
            values = self.samples[column].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            low, high = np.percentile(values, [tail, 100 - tail]) if values.size else (np.nan, np.nan)
            se = float(np.std(values, ddof=1)) if values.size > 1 else np.nan
            rows[column] = {"estimate": self.estimate.get(column, np.nan), "low": low, "high": high, "se": se}
        return pd.DataFrame(rows).T[["estimate", "low", "high", "se"]]


def _resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """Bootstrap resamples as per-point counts (a weighted objective is the same as repeating points)."""
    picks = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], picks), 1.0)
    return counts


def _polish_rows(args: tuple) -> list[tuple[np.ndarray, float, bool]]:
    law, log_inputs, y, counts, x0, lo, hi, rows = args
    fun = Objective(law, log_inputs, y, counts)
    out = []
    with single_threaded_blas():  # also in worker processes
        for row in rows:
            x, f, conv, _ = polish(fun, x0[row], lo, hi, max_iter=law.max_iter, row=row)
            out.append((x, f, conv))
    return out


def _run_warm_started(
    law: ScalingLaw, log_inputs: np.ndarray, y: np.ndarray, counts: np.ndarray, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local fits of every resample from the full-data optimum: one batched L-BFGS, then scipy polish each."""
    lo, hi = law.raw_bounds()
    fun = Objective(law, log_inputs, y, counts)
    start = law.raw_params_[law.free_index]
    x0 = np.repeat(start[None, :], len(counts), axis=0)
    batch = batched_lbfgs(fun, x0, lo, hi, max_iter=300)
    rows = np.arange(len(counts))
    chunks = [rows[i::n_jobs] for i in range(n_jobs)] if n_jobs > 1 else [rows]
    tasks = [(law, log_inputs, y, counts, batch.x, lo, hi, chunk) for chunk in chunks]
    if n_jobs > 1:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            parts = list(pool.map(_polish_rows, tasks))
    else:
        parts = [_polish_rows(t) for t in tasks]
    xs = np.zeros_like(batch.x)
    ok = np.zeros(len(counts), dtype=bool)
    for chunk, part in zip(chunks, parts, strict=True):
        for row, (x, f, conv) in zip(chunk, part, strict=True):
            xs[row] = x
            ok[row] = conv and np.isfinite(f)
    return xs, ok


@_blas_single_threaded
def bootstrap(
    law_or_factory: ScalingLaw | Callable[[], ScalingLaw],
    X: Any,
    y: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    derived: Mapping[str, Callable[[ScalingLaw], float]] | None = None,
    n_jobs: int = 1,
    prefit: bool = False,
) -> BootstrapResult:
    """Bootstrap a law's parameters: resample points with replacement, refit each resample locally.

    Each resample is warm-started from the full-data optimum (as Epoch's replication did) rather than re-run
    from the whole grid. A resample whose refit does not converge counts in ``n_failed`` and is left out of
    ``samples``, whose index keeps the resample numbers (see ``BootstrapResult``). ``prefit=True`` says the law
    is already fitted on exactly ``(X, y)``: its optimum is reused instead of fitting the full data again.
    """
    law = (
        law_or_factory()
        if callable(law_or_factory) and not isinstance(law_or_factory, ScalingLaw)
        else law_or_factory
    )
    if prefit and getattr(law, "raw_params_", None) is not None:
        law = copy.deepcopy(law)
    else:
        law = _fresh_copy(law)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            law.fit(X, y)
    log_inputs = law._check_X(X)
    targets = check_targets(y, len(log_inputs), type(law).__name__)
    rng = np.random.default_rng(seed)
    counts = _resample_counts(rng, len(targets), n_resamples)
    xs, ok = _run_warm_started(law, log_inputs, targets, counts, max(1, int(n_jobs)))
    records = []
    probe = _fresh_copy(law)
    for x in xs[ok]:
        probe._set_fitted(law.full_raw(x), float("nan"), True, 1)
        record = dict(probe.params_)
        for name, func in (derived or {}).items():
            record[name] = float(func(probe))
        records.append(record)
    estimate = dict(law.params_)
    for name, func in (derived or {}).items():
        estimate[name] = float(func(law))
    columns = list(law.param_names) + list(derived or {})
    samples = pd.DataFrame(records, columns=columns, index=pd.Index(np.flatnonzero(ok), name="resample"))
    return BootstrapResult(samples, estimate, int((~ok).sum()))


def _fresh_copy(law: ScalingLaw) -> ScalingLaw:
    return type(law)(
        residual=law.residual,
        huber_delta=law.huber_delta,
        reduction=law.reduction,
        grid=law.grid,
        fixed=law.fixed,
        bounds=law.bounds,
        seed=law.seed,
        max_iter=law.max_iter,
    )


def _factor_counts(
    factors: Mapping[str, tuple[Any, Any]], n_resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Per factor, (n_resamples, n_points) resample counts: points resampled within each factor, seeded.

    One row of draws per resample covers every factor, so resample i is the same whatever n_resamples is.
    """
    sizes = [len(np.asarray(y)) for _X, y in factors.values()]
    highs = np.repeat(sizes, sizes)  # a draw in factor f's block picks one of its n_f points
    picks = np.random.default_rng(seed).integers(0, highs, size=(n_resamples, len(highs)))
    counts = {}
    offset = 0
    for name, n in zip(factors, sizes, strict=True):
        block = np.zeros((n_resamples, n))
        np.add.at(block, (np.arange(n_resamples)[:, None], picks[:, offset : offset + n]), 1.0)
        counts[name] = block
        offset += n
    return counts


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


def _local_fits(
    fun: Callable, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local fits of the given resample rows from x0 (one start per row): one batched L-BFGS, then scipy polish
    of each (the polish certifies convergence, as in a full fit)."""
    batch = batched_lbfgs(fun, x0, lo, hi, max_iter=300, active_rows=rows)
    xs = np.empty_like(batch.x)
    ok = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        x, f, conv, _ = polish(fun, batch.x[i], lo, hi, max_iter, row=int(row))
        xs[i] = x
        ok[i] = conv and np.isfinite(f)
    return xs, ok


def _warm_two_stage_rows(args: tuple) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Warm-started two-stage refits of some resamples: stage 1 from the full-data stage-1 optimum, then each
    factor's stage 2 from its full-data parameters with that resample's beta and e held."""
    factors, counts, full, config, form, rows = args
    with single_threaded_blas():
        law_cls = _law_class(form)
        joint, grid_laws, lo, hi = _stage1_problem(factors, full.stage1_factors, law_cls, config, counts)
        max_iter = grid_laws[0].max_iter
        x0 = np.repeat(full.stage1_raw[None, :], len(rows), axis=0)
        stage1_x, ok = _local_fits(joint, x0, lo, hi, rows, max_iter)
        raw_names = law_cls.raw_param_names
        fixed = np.array([raw_names.index("beta"), raw_names.index("e")])
        free = np.array([i for i in range(len(raw_names)) if i not in fixed])
        shared = np.zeros((len(counts[next(iter(counts))]), 2))
        shared[rows] = stage1_x[:, :2]
        per_factor = {}
        for name, law in full.laws.items():
            X, y = factors[name]
            open_law = law_cls(**config)
            objective = Objective(open_law, open_law._check_X(X), np.asarray(y, dtype=float), counts[name])
            fun = _RowFixedObjective(objective, free, fixed, shared)
            box_lo, box_hi = open_law.raw_bounds()
            x0 = np.repeat(law.raw_params_[free][None, :], len(rows), axis=0)
            xs, ok_factor = _local_fits(fun, x0, box_lo[free], box_hi[free], rows, max_iter)
            raw = np.empty((len(rows), len(raw_names)))
            raw[:, free], raw[:, fixed] = xs, stage1_x[:, :2]
            per_factor[name] = raw
            ok &= ok_factor
    return stage1_x, ok, per_factor


@_blas_single_threaded
def bootstrap_two_stage(
    factors: Mapping[str, tuple[Any, Any]],
    n_resamples: int = 200,
    seed: int = 0,
    *,
    warm_start: bool = True,
    n_jobs: int = 1,
    **fit_kwargs: Any,
) -> BootstrapResult:
    """Bootstrap the two-stage fit, resampling points with replacement within each factor (seeded).

    Columns are ``beta``, ``E`` and ``<factor>.<param>`` for every per-factor parameter; the index is the
    resample number (see ``BootstrapResult``). With ``warm_start`` (default) each resample is a local refit from
    the full-data optimum: stage 1 from the full-data stage-1 parameters, then stage 2 per factor from its
    full-data (a, alpha[, b]) with the resample's beta, E held (Epoch's approach for Chinchilla); all resamples
    run batched, then each is scipy-polished, optionally in ``n_jobs`` processes. ``warm_start=False`` reruns
    the whole two-stage fit from its grid of starts for every resample (same resamples, much slower).
    A resample whose refit does not converge counts in ``n_failed`` and is left out of ``samples``.
    """
    if "weights" in fit_kwargs:
        raise FitError("bootstrap_two_stage sets the point weights itself (resample counts); drop 'weights'")
    if n_resamples < 1:
        raise FitError(f"n_resamples must be >= 1, got {n_resamples}")
    full = fit_two_stage(factors, **fit_kwargs)
    counts = _factor_counts(factors, n_resamples, seed)
    records: dict[int, dict[str, float]] = {}
    if warm_start:
        template = next(iter(full.laws.values()))  # the full fit's objective settings, as fit_two_stage used
        config = {
            "residual": template.residual,
            "huber_delta": template.huber_delta,
            "reduction": template.reduction,
            "grid": template.grid,
        }
        law_cls = type(template)
        form = "multiplicative" if law_cls is MultiplicativeLaw else "additive"
        rows = np.arange(n_resamples)
        n_jobs = max(1, min(int(n_jobs), n_resamples))
        chunks = [rows[i::n_jobs] for i in range(n_jobs)]
        tasks = [(dict(factors), counts, full, config, form, chunk) for chunk in chunks]
        if n_jobs > 1:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                parts = list(pool.map(_warm_two_stage_rows, tasks))
        else:
            parts = [_warm_two_stage_rows(t) for t in tasks]
        for chunk, (stage1_x, ok, per_factor) in zip(chunks, parts, strict=True):
            for i, row in enumerate(chunk):
                if not ok[i]:
                    continue
                record = {"beta": float(stage1_x[i, 0]), "E": float(np.exp(stage1_x[i, 1]))}
                for name, raw in per_factor.items():
                    for param, value in law_cls.natural_from_raw(raw[i]).items():
                        if param not in ("beta", "E"):
                            record[f"{name}.{param}"] = value
                records[int(row)] = record
    else:
        for row in range(n_resamples):
            weights = {name: c[row] for name, c in counts.items()}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FitWarning)
                    res = fit_two_stage(factors, weights=weights, **fit_kwargs)
            except FitError:
                continue
            if res.converged:
                records[row] = _two_stage_record(res)
    estimate = _two_stage_record(full)
    order = sorted(records)
    samples = pd.DataFrame(
        [records[r] for r in order], columns=list(estimate), index=pd.Index(order, name="resample", dtype=int)
    )
    return BootstrapResult(samples, estimate, n_resamples - len(records))


def _two_stage_record(result: TwoStageResult) -> dict[str, float]:
    record = dict(result.shared)
    for name, law in result.laws.items():
        for param, value in law.params_.items():
            if param not in ("beta", "E"):
                record[f"{name}.{param}"] = value
    return record
