"""Benchmark: the Chinchilla fit by variable projection and by multi-start L-BFGS (ftscale's two solvers) vs a
plain scipy L-BFGS-B loop over the 4,500 Hoffmann starts, all on the same objective in one run.

Run from the repository root:
``python bench/fit_speed.py [--starts N] [--reference-tol default|tight] [--bootstrap 4000] [--jobs 2]``.
The reference is what a straightforward implementation does (Epoch's notebook): ``scipy.optimize.minimize(
method="L-BFGS-B", jac=True)`` from every grid start in a Python loop, with an analytic gradient of the log-space
Huber objective written directly in numpy (log-sum-exp over the three terms), keeping the best objective; with
scipy's default tolerances (``--reference-tol default``) or ours (``tight``: ftol 1e-15, gtol 1e-12).
``--starts N`` runs the reference on an evenly spaced subset of N starts and extrapolates its time linearly
(stated in the output); the default runs all 4,500. Each ftscale solver is timed in-process, best of
``--repeats`` calls (the first call of a process also pays for imports and caches).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ftscale.laws.bootstrap import bootstrap  # noqa: E402
from ftscale.laws.fitting import POLISH_OPTIONS  # noqa: E402
from ftscale.laws.forms import AdditiveLaw  # noqa: E402

DELTA = 1e-3


def load_chinchilla(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(data_dir / "chinchilla" / "svg_extracted_data.csv")
    frame = frame.sort_values("loss").iloc[:-5]  # drop the 5 highest-loss points, as Besiroglu et al.
    n = frame["Model Size"].to_numpy()
    d = frame["Training FLOP"].to_numpy() / (6 * n)
    return np.c_[n, d], frame["loss"].to_numpy()


def reference_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_y: np.ndarray):
    """Summed Huber of LSE(a - alpha log N, b - beta log D, e) - log L, with its analytic gradient."""
    a, alpha, b, beta, e = theta
    t1, t2 = a - alpha * log_n, b - beta * log_d
    top = np.maximum(np.maximum(t1, t2), e)
    w1, w2, w3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
    total = w1 + w2 + w3
    r = top + np.log(total) - log_y
    abs_r = np.abs(r)
    loss = np.where(abs_r <= DELTA, 0.5 * r * r, DELTA * (abs_r - 0.5 * DELTA)).sum()
    c = np.clip(r, -DELTA, DELTA) / total
    c1, c2 = c * w1, c * w2
    grad = np.array([c1.sum(), -(c1 @ log_n), c2.sum(), -(c2 @ log_d), (c * w3).sum()])
    return loss, grad


def reference_fit(
    X: np.ndarray, y: np.ndarray, starts: np.ndarray, lo: np.ndarray, hi: np.ndarray, tight: bool = True
):
    log_n, log_d, log_y = np.log(X[:, 0]), np.log(X[:, 1]), np.log(y)
    best = (np.inf, None)
    bounds = list(zip(lo, hi, strict=True))
    for start in starts:
        res = minimize(
            reference_objective,
            start,
            args=(log_n, log_d, log_y),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={**POLISH_OPTIONS, "maxiter": 15000, "maxfun": 60000} if tight else {},
        )
        if res.fun < best[0]:
            best = (float(res.fun), res.x)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--starts", type=int, default=0, help="reference on N evenly spaced starts (0 = all)")
    parser.add_argument("--bootstrap", type=int, default=4000, help="bootstrap resamples to time (0 = skip)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="calls of each ftscale solver (best is kept)")
    parser.add_argument("--reference-tol", choices=("default", "tight"), default="default")
    args = parser.parse_args()

    X, y = load_chinchilla(args.data)
    results = {}
    for solver in ("vp", "multistart"):
        times = []
        for _ in range(args.repeats):
            law = AdditiveLaw(residual="log", solver=solver)
            t0 = time.perf_counter()
            law.fit(X, y)
            times.append(time.perf_counter() - t0)
        results[solver] = (law, min(times))
        print(
            f"ftscale {solver}: {law.n_starts_} starts/grid points, best of {args.repeats}: {min(times):.2f} s "
            f"(all: {', '.join(f'{t:.2f}' for t in times)}), objective {law.loss_:.13g}, converged {law.converged_}"
        )
        print("  params:", {k: round(v, 5) for k, v in law.params_.items()})
    law, _ours = results["multistart"]
    vp_law, _vp_time = results["vp"]
    print(f"vp vs multistart: objective difference {(vp_law.loss_ - law.loss_) / law.loss_:.3e} (relative)")

    starts = np.clip(law.starting_points(), *law.raw_bounds())
    subset = starts if args.starts <= 0 else starts[np.linspace(0, len(starts) - 1, args.starts).astype(int)]
    t0 = time.perf_counter()
    ref_loss, _ = reference_fit(X, y, subset, *law.raw_bounds(), tight=args.reference_tol == "tight")
    ref_time = time.perf_counter() - t0
    scale = len(starts) / len(subset)
    print(
        f"reference scipy L-BFGS-B loop ({args.reference_tol} tolerances, analytic gradient): {len(subset)} "
        f"starts, {ref_time:.2f} s"
        + (f" -> {ref_time * scale:.1f} s extrapolated to {len(starts)}" if scale > 1 else "")
        + f", best objective {ref_loss:.13g}"
    )
    for name, (fitted, seconds) in results.items():
        rel = (fitted.loss_ - ref_loss) / ref_loss
        print(
            f"{name}: relative objective difference (ftscale - reference) / reference {rel:.3e}; "
            f"speed ratio (reference / ftscale) {ref_time * scale / seconds:.1f}x"
        )

    if args.bootstrap:
        t0 = time.perf_counter()
        res = bootstrap(law, X, y, n_resamples=args.bootstrap, seed=42, n_jobs=args.jobs)
        boot = time.perf_counter() - t0
        print(
            f"bootstrap: {args.bootstrap} resamples, n_jobs={args.jobs}, {boot:.1f} s, failed {res.n_failed}"
        )
        print(res.ci().round(4).to_string())


if __name__ == "__main__":
    main()
