"""Variable projection: search only the exponents, solve the constants inside.

For the forms that are a sum of terms exp(coef)·Π input^-exponent (``linear_terms`` of power, multiplicative and
additive laws), the constants c = (A, B, E) enter the prediction linearly once the exponents are fixed. So the
fit becomes: for every exponent vector on a grid, solve the small inner problem for c ≥ 0 (exactly, by
enumerating the active sets of a non-negative least-squares problem with at most three columns), score it with
the real objective, and polish the best few exponent vectors together with their constants with scipy's L-BFGS-B
at the tolerances of the multi-start fitter (``fitting.polish``), which certifies the optimum as it does there.

The inner problem matches the objective's scale: on the L scale (``residual="linear"``) it is a weighted least
squares problem, exact for ``loss="lsq"``; on the log scale it is solved by Gauss-Newton steps (log L̂ − log L
linearised around the current prediction); the Huber loss by iteratively reweighted least squares (weights
min(1, δ/|r|)). Those inner solutions only rank the grid: the polish works on the true objective. The idea is
that of Open-Athena's ``vpnls``; the multi-start L-BFGS fitter stays the reference, and the tests check that both
reach the same optimum on every golden.
"""

from __future__ import annotations

import itertools

import numpy as np

from ftscale.laws.fitting import OptimumReport, polish_best
from ftscale.laws.forms import ScalingLaw
from ftscale.laws.objective import Objective

#: Exponent grid of the outer search (per free exponent, clipped to its bounds): 36 values, 1,296 points for two
#: exponents. Steps of 0.05 and 0.2 (with 6 or 3 inner rounds) reached the same optima on Chinchilla and on all
#: 402 power / multiplicative fits of Lin et al.'s tables as 0.1 does (``bench/fit_speed.py``, tests); 0.1 keeps
#: a margin at a fifth of the cost of 0.05.
EXPONENT_GRID = np.round(np.arange(-0.5, 3.0 + 1e-9, 0.1), 10)

#: IRLS / Gauss-Newton rounds of the inner problem (they only rank the grid; the polish is exact).
_INNER_ITER = 3
_DISTINCT = 0.15  # exponent vectors closer than this (max norm) count as one basin


def vp_applicable(law: ScalingLaw) -> bool:
    """True when ``law`` declares linear terms and none of its constants is held fixed."""
    if not law.linear_terms:
        return False
    names = law.raw_param_names
    return all(names.index(coef) not in law._fixed_raw for coef, _ in law.linear_terms)


def _subsets(k: int) -> list[tuple[int, ...]]:
    return [s for r in range(1, k + 1) for s in itertools.combinations(range(k), r)]


def nnls_small(phi: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin_{c ≥ 0} Σ_i w_i (Φ_i·c − z_i)² for a batch: Φ (G, n, K) with K ≤ 3, z and w (G, n) or (n,).

    Exact: the optimum is the least-squares solution on its support, so the best feasible solution over all
    2^K − 1 supports (and c = 0) is it. Columns are scaled to unit weighted norm first (they span decades).
    """
    g, _, k = phi.shape
    z = np.broadcast_to(z, phi.shape[:2])
    w = np.broadcast_to(w, phi.shape[:2])
    weighted = phi * w[:, :, None]
    norms = np.sqrt(np.sum(weighted * phi, axis=1))
    norms = np.where(norms > 0, norms, 1.0)
    scaled = phi / norms[:, None, :]
    wscaled = weighted / norms[:, None, :]
    gram = np.matmul(wscaled.transpose(0, 2, 1), scaled)  # (G, K, K)
    rhs = np.matmul(wscaled.transpose(0, 2, 1), z[:, :, None])[..., 0]
    zz = np.sum(w * z * z, axis=1)
    best_rss = zz.copy()  # c = 0
    best = np.zeros((g, k))
    for subset in _subsets(k):
        idx = np.array(subset)
        sub = gram[:, idx[:, None], idx[None, :]] + 1e-13 * np.eye(len(idx))
        coef = np.linalg.solve(sub, rhs[:, idx][..., None])[..., 0]
        feasible = np.all(coef >= 0, axis=1)
        rss = zz - np.einsum("gk,gk->g", coef, rhs[:, idx])  # at the LS solution: zᵀWz − cᵀ(ΦᵀWz)
        better = feasible & (rss < best_rss)
        if better.any():
            full = np.zeros((g, k))
            full[:, idx] = coef
            best[better] = full[better]
            best_rss[better] = rss[better]
    return best / norms


def _basis(
    law: ScalingLaw, exponents: np.ndarray, log_inputs: np.ndarray, exp_index: dict[str, int]
) -> np.ndarray:
    """Φ (G, n, K): term k at every point for every exponent vector (fixed exponents come from the law)."""
    names = law.raw_param_names
    columns = []
    for _, powers in law.linear_terms:
        log_term = np.zeros((len(exponents), len(log_inputs)))
        for exponent, column in powers:
            if exponent in exp_index:
                value = exponents[:, exp_index[exponent]][:, None]
            else:
                value = law._fixed_raw[names.index(exponent)]
            log_term = log_term - value * log_inputs[:, column][None, :]
        columns.append(np.exp(np.minimum(log_term, 700.0)))
    return np.stack(columns, axis=2)


def _inner(law: ScalingLaw, phi: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Constants c ≥ 0 (G, K) of the inner problem on the objective's scale and loss (see the module docstring)."""
    base = np.ones_like(y) if weights is None else weights
    pred = np.broadcast_to(y, phi.shape[:2]).copy()
    robust = np.ones(phi.shape[:2])
    coef = np.zeros((phi.shape[0], phi.shape[2]))
    rounds = 1 if (law.residual == "linear" and law.loss == "lsq") else _INNER_ITER
    for _ in range(rounds):
        if law.residual == "log":
            safe = np.where(pred > 0, pred, y)
            target = safe * (1.0 - np.log(safe / y))  # Gauss-Newton: log p ≈ log p0 + (p − p0)/p0
            w = base * robust / safe**2
        else:
            target, w = np.broadcast_to(y, pred.shape), base * robust
        coef = nnls_small(phi, target, w)
        pred = np.matmul(phi, coef[:, :, None])[..., 0]
        if law.loss == "huber":
            with np.errstate(divide="ignore", invalid="ignore"):
                resid = np.log(pred / y) if law.residual == "log" else pred - y
            resid = np.where(np.isfinite(resid), np.abs(resid), np.inf)
            robust = np.minimum(1.0, law.huber_delta / np.maximum(resid, 1e-300))
    return coef


def vp_minimize(law: ScalingLaw, fun: Objective, lo: np.ndarray, hi: np.ndarray) -> OptimumReport:
    """Minimise ``fun`` (the law's objective on its data) by variable projection; see the module docstring."""
    free = list(law.free_param_names)
    coef_names = [coef for coef, _ in law.linear_terms]
    exponent_names = [name for name in free if name not in coef_names]
    exp_index = {name: j for j, name in enumerate(exponent_names)}
    axes = []
    for name in exponent_names:
        i = free.index(name)
        values = EXPONENT_GRID[(lo[i] <= EXPONENT_GRID) & (hi[i] >= EXPONENT_GRID)]
        axes.append(values if values.size else np.array([np.clip(0.0, lo[i], hi[i])]))
    exponents = np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, len(exponent_names))
    y = fun.y
    weights = None if fun.weights is None else np.asarray(fun.weights, dtype=float)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        phi = _basis(law, exponents, fun.log_inputs, exp_index)
        coef = _inner(law, phi, y, weights)
        log_coef = np.log(np.maximum(coef, 1e-300))
    theta = np.empty((len(exponents), len(free)))
    for j, name in enumerate(exponent_names):
        theta[:, free.index(name)] = exponents[:, j]
    for k, name in enumerate(coef_names):
        theta[:, free.index(name)] = log_coef[:, k]
    theta = np.clip(theta, lo, hi)
    values, _ = fun(theta, None)
    exp_cols = [free.index(name) for name in exponent_names]
    return polish_best(
        fun, theta, values, lo, hi, law.max_iter, len(exponents), distinct=_DISTINCT, columns=exp_cols
    )
