"""A batched, box-projected L-BFGS in numpy: runs many starting points of one objective in lock-step.

It exists for speed, not for the final answer: one call of the objective evaluates every active start at once
(array work instead of a Python loop of thousands of scipy runs). The caller polishes the best candidates with
scipy's L-BFGS-B at tight tolerances, which is what certifies an optimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: fun(theta (S, p), rows (S,) indices of those starts in the batch) -> (values (S,), gradients (S, p))
BatchedFun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class BatchResult:
    x: np.ndarray  # (S, p) last iterate per start
    fun: np.ndarray  # (S,)
    grad: np.ndarray  # (S, p)
    n_iter: np.ndarray  # (S,) iterations run per start
    stalled: np.ndarray  # (S,) line search failed (no descent found)


def projected_gradient(x: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Gradient with the components that push out of the box at an active bound set to zero."""
    pg = g.copy()
    pg[(x <= lo) & (g > 0)] = 0.0
    pg[(x >= hi) & (g < 0)] = 0.0
    return pg


def batched_lbfgs(
    fun: BatchedFun,
    x0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_iter: int = 200,
    memory: int = 10,
    ftol: float = 1e-13,
    gtol: float = 1e-10,
    active_rows: np.ndarray | None = None,
) -> BatchResult:
    """Minimise ``fun`` from every row of ``x0`` at once; a start leaves the batch when it converges or stalls."""
    x = np.clip(np.asarray(x0, dtype=float), lo, hi)
    n_starts, n_params = x.shape
    rows_all = np.arange(n_starts) if active_rows is None else np.asarray(active_rows)
    f, g = fun(x, rows_all)
    s_hist = np.zeros((memory, n_starts, n_params))
    y_hist = np.zeros((memory, n_starts, n_params))
    rho = np.zeros((memory, n_starts))
    n_iter = np.zeros(n_starts, dtype=int)
    stalled = np.zeros(n_starts, dtype=bool)
    active = np.isfinite(f)
    stalled[~active] = True

    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        free = ~(((xa <= lo) & (ga > 0)) | ((xa >= hi) & (ga < 0)))
        # two-loop recursion on the free variables (bound-active ones held still)
        q = np.where(free, ga, 0.0)
        order = [(it - 1 - k) % memory for k in range(min(it, memory))]
        alphas = []
        for j in order:
            a_j = rho[j, idx] * np.einsum("ij,ij->i", s_hist[j, idx], q)
            q -= a_j[:, None] * y_hist[j, idx]
            alphas.append(a_j)
        if order:
            j = order[0]
            sy = np.einsum("ij,ij->i", s_hist[j, idx], y_hist[j, idx])
            yy = np.einsum("ij,ij->i", y_hist[j, idx], y_hist[j, idx])
            gamma = np.where((rho[j, idx] > 0) & (yy > 0), sy / np.where(yy > 0, yy, 1.0), 0.0)
        else:
            gamma = np.zeros(idx.size)
        gnorm = np.sqrt(np.einsum("ij,ij->i", q, q)) + 1e-300
        gamma = np.where(gamma > 0, gamma, 1.0 / np.maximum(gnorm, 1.0))
        r = gamma[:, None] * q
        for j, a_j in zip(reversed(order), reversed(alphas), strict=True):
            b_j = rho[j, idx] * np.einsum("ij,ij->i", y_hist[j, idx], r)
            r += s_hist[j, idx] * (a_j - b_j)[:, None]
        direction = -np.where(free, r, 0.0)
        slope = np.einsum("ij,ij->i", direction, ga)
        bad = ~(slope < 0)
        if np.any(bad):  # not a descent direction: fall back to scaled steepest descent
            steep = -np.where(free, ga, 0.0)
            direction[bad] = steep[bad] / np.maximum(np.linalg.norm(steep[bad], axis=1), 1.0)[:, None]

        # backtracking Armijo line search on the projected path, only re-evaluating starts that failed
        step = np.ones(idx.size)
        x_new = np.empty_like(xa)
        f_new = np.full(idx.size, np.inf)
        g_new = np.empty_like(ga)
        pending = np.arange(idx.size)
        for _ in range(40):
            trial = np.clip(xa[pending] + step[pending, None] * direction[pending], lo, hi)
            ft, gt = fun(trial, rows_all[idx[pending]])
            decrease = np.einsum("ij,ij->i", ga[pending], trial - xa[pending])
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * decrease)
            done = pending[ok]
            x_new[done], f_new[done], g_new[done] = trial[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5
        failed = np.zeros(idx.size, dtype=bool)
        failed[pending] = True
        x_new[failed], f_new[failed], g_new[failed] = xa[failed], fa[failed], ga[failed]

        s = x_new - xa
        yv = g_new - ga
        sy = np.einsum("ij,ij->i", s, yv)
        slot = it % memory
        s_hist[slot, idx], y_hist[slot, idx] = s, yv
        # a pair without usable curvature is skipped (rho = 0), including a denormal s·y whose inverse overflows
        curved = (sy > 1e-12 * np.einsum("ij,ij->i", yv, yv)) & (sy > 1e-200)
        rho[slot, idx] = np.where(curved, 1.0 / np.where(curved, sy, 1.0), 0.0)

        converged_f = (fa - f_new) <= ftol * np.maximum(np.maximum(np.abs(fa), np.abs(f_new)), 1e-300)
        pg = projected_gradient(x_new, g_new, lo, hi)
        converged_g = np.max(np.abs(pg), axis=1) <= gtol
        x[idx], f[idx], g[idx] = x_new, f_new, g_new
        n_iter[idx] += 1
        stalled[idx[failed]] = True
        active[idx[failed | converged_f | converged_g]] = False
    return BatchResult(x=x, fun=f, grad=g, n_iter=n_iter, stalled=stalled)
