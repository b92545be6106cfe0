"""Fitting scaling laws: multi-start L-BFGS on the Huber objective (``objective.py``) and the two-stage shared
β/E fit (Eq. 2); bootstrap intervals are in ``bootstrap.py``.

Protocol (PAPER.md §2.4, Hoffmann et al. App. D.2): Huber loss (δ = 1e-3) of the residual L̂ − L (default, as the
paper prints) or log L̂ − log L (Hoffmann), summed over points by default; L-BFGS from every point of a grid of
starts, keep the best. Speed comes from running all starts together in a batched numpy L-BFGS, then polishing
the best distinct candidates with scipy's L-BFGS-B at tight tolerances (ftol 1e-15, gtol 1e-12): the reported
optimum is always a scipy-polished one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from ftscale.errors import FitError
from ftscale.laws._lbfgs import batched_lbfgs, projected_gradient
from ftscale.laws.forms import (
    LAW_FORMS,
    SOLVERS,
    FitWarning,
    MultiplicativeLaw,
    ScalingLaw,
)
from ftscale.laws.objective import (
    _PER_FACTOR,
    JointObjective,
    Objective,
    _blas_single_threaded,
    _single,
    check_targets,
)

POLISH_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxcor": 20, "maxls": 50}


_N_POLISH = 4  # distinct best candidates of the batched phase polished with scipy


_SCREEN_ITER = 30  # batched iterations every start gets before pruning


_SCREEN_KEEP = 64  # at least this many starts survive screening ...


_SCREEN_FRACTION = 0.02  # ... or this fraction of them, whichever is larger


_FLAT_RATIO = 1e-10  # J^T J eigenvalue ratio below which a direction counts as flat (non-identifiable)


# Stage 2 of the two-stage fit (beta, E held) has 2-3 free parameters: a few batched iterations find the basin and
# the scipy polish does the rest; the full 400 mostly went to slow crawls along the a/alpha valley (same optimum
# to ~1e-11 in raw parameters, 3-4x faster, checked on the synthetic two-stage problems of the tests).
_STAGE2_BATCH_ITER = 60


_CONVERGED_GRAD = 1e-6  # projected gradient, relative to the objective's gradient scale, that counts as zero

# When L-BFGS-B stops because f no longer decreases at machine precision (relative reduction ≤ ftol = 1e-15), a
# projected gradient up to this share of the scale still counts as converged: in the ill-conditioned a/α/β valley
# of a law whose E vanished (log L̂ nearly linear in a, α, β, with log inputs of 10-20), rounding in f leaves
# gradients of ~1e-6-3e-6 of the scale that no step can reduce (16 of 200 two-stage bootstrap refits of the demo
# study's FMT law stopped so, each at the objective a cold multi-start refit reaches to 1e-10).
_CONVERGED_GRAD_AT_PRECISION = 1e-4


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
    message = str(res.message).upper()
    at_precision = "RELATIVE REDUCTION OF F" in message
    tolerance = _CONVERGED_GRAD_AT_PRECISION if at_precision else _CONVERGED_GRAD
    stopped_normally = bool(res.success) or "ABNORMAL" in message
    return bool(np.isfinite(f) and stopped_normally and pg <= tolerance * scale)


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
    return polish_best(fun, batch.x, batch.fun, lo, hi, max_iter, n_starts, n_polish=n_polish)


def polish_best(
    fun: Callable,
    candidates: np.ndarray,
    values: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_iter: int,
    n_starts: int,
    *,
    n_polish: int = _N_POLISH,
    distinct: float = 1e-4,
    columns: Sequence[int] | None = None,
) -> OptimumReport:
    """scipy-polish the ``n_polish`` best distinct candidates and keep the lowest objective.

    Candidates closer than ``distinct`` (max norm over ``columns``, all by default) to a better one already picked
    sit in its basin and are skipped. ``n_starts`` is what the report counts (starts or grid points)."""
    cols = slice(None) if columns is None else list(columns)
    picked: list[int] = []
    for i in np.argsort(values, kind="stable"):
        if not np.isfinite(values[i]):
            break
        if any(
            np.max(np.abs(candidates[i, cols] - candidates[j, cols]), initial=0.0) < distinct for j in picked
        ):
            continue
        picked.append(int(i))
        if len(picked) >= n_polish:
            break
    if not picked:
        raise FitError("the objective is not finite at any starting point; check the data's scale")
    best: tuple[np.ndarray, float, bool, str] | None = None
    for i in picked:
        x, f, conv, msg = polish(fun, candidates[i], lo, hi, max_iter)
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
    law: ScalingLaw,
    X: Any,
    y: Any,
    sample_weight: Any = None,
    *,
    batch_iter: int = 400,
    solver: str | None = None,
) -> ScalingLaw:
    """Fit ``law`` to (X, y); sets params_, loss_, converged_, warnings_, n_starts_.

    ``solver``: ``multistart`` (L-BFGS from the law's grid of starts, the reference), ``vp`` (variable
    projection, ``vp.py``; only for forms with ``linear_terms`` and free constants) or ``auto`` (vp where it
    applies); default: the law's ``solver`` attribute. ``batch_iter`` caps the batched L-BFGS iterations per
    start before the best candidates are scipy-polished.
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
    solver = solver or getattr(law, "solver", "multistart")
    if solver not in SOLVERS:
        raise FitError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    from ftscale.laws.vp import vp_applicable, vp_minimize

    if solver == "vp" and not vp_applicable(law):
        raise FitError(
            f"{who}: variable projection needs a sum of power-law terms with free constants "
            "(power, multiplicative, additive); use solver='multistart'"
        )
    if solver in ("vp", "auto") and vp_applicable(law):
        report = vp_minimize(law, fun, lo, hi)
    else:
        starts = np.clip(law.starting_points(), lo, hi)
        report = multistart_minimize(fun, starts, lo, hi, max_iter=law.max_iter, batch_iter=batch_iter)
    law._set_fitted(law.full_raw(report.x), report.fun, report.converged, report.n_starts)
    law.warnings_ = diagnose(fun, report.x, lo, hi, law.free_param_names, report.converged)
    _emit(law.warnings_, who)
    return law


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
    loss: str = "huber",
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
    config = {
        "residual": residual,
        "huber_delta": huber_delta,
        "loss": loss,
        "reduction": reduction,
        "grid": grid,
    }
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
