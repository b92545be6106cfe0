"""Bootstrap confidence intervals of fitted laws: resample points (or each factor's cells), refit every resample
warm-started at the full-data optimum (all resamples as one batched L-BFGS, then a scipy polish of each), and
percentile intervals.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ftscale.errors import FitError
from ftscale.laws._lbfgs import batched_lbfgs
from ftscale.laws.fitting import TwoStageResult, _law_class, _stage1_problem, fit_two_stage, polish
from ftscale.laws.forms import (
    FitWarning,
    MultiplicativeLaw,
    ScalingLaw,
)
from ftscale.laws.objective import (
    Objective,
    _blas_single_threaded,
    _RowFixedObjective,
    check_targets,
    single_threaded_blas,
)


def percentile_ci(values: Any, level: float = 0.95, min_values: int = 2) -> tuple[float, float, float]:
    """The one percentile interval of the package: (low, high, standard error) of the finite ``values`` at
    ``level``; NaNs when fewer than ``min_values`` are finite (the standard error needs two)."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size < max(1, min_values):
        return np.nan, np.nan, np.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(array, [tail, 100 - tail])
    se = float(np.std(array, ddof=1)) if array.size > 1 else np.nan
    return float(low), float(high), se


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
    #: (len(samples), p) full raw parameter vectors of those resamples, same order
    raw: np.ndarray | None = None
    #: resamples whose warm-started refit did not converge and were refitted from the whole grid
    n_cold: int = 0

    def predict(self, law: ScalingLaw, X: Any) -> np.ndarray:
        """Predictions of every converged resample at ``X``: shape (len(samples), n), in one batched call.

        ``law`` is the fitted law the bootstrap resampled (it supplies the form and validates ``X``)."""
        if self.raw is None:
            raise FitError("these bootstrap samples carry no raw parameters; rerun bootstrap() to predict")
        if len(self.raw) == 0:
            return np.zeros((0, len(np.atleast_1d(np.asarray(X, dtype=float)))))
        log_pred, _ = law.log_prediction(self.raw, law._check_X(X))
        return np.exp(log_pred)

    def predict_ci(self, law: ScalingLaw, X: Any, level: float = 0.95) -> tuple[np.ndarray, ...]:
        """(low, high, se) of the resamples' predictions at every point of ``X``: percentile intervals."""
        draws = self.predict(law, X)
        bounds = [percentile_ci(draws[:, k], level) for k in range(draws.shape[1])]
        return tuple(np.array(column, dtype=float) for column in zip(*bounds, strict=True)) if bounds else ()

    def paired_with(self, other: BootstrapResult) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Both sample tables restricted to the resample numbers present in both, in the same order."""
        common = self.samples.index.intersection(other.samples.index).sort_values()
        return self.samples.loc[common], other.samples.loc[common]

    def ci(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals: index = parameter, columns [estimate, low, high, se]."""
        if not 0 < level < 1:
            raise FitError(f"level must be in (0, 1), got {level}")
        rows = {}
        for column in self.samples.columns:
            low, high, se = percentile_ci(self.samples[column].to_numpy(dtype=float), level, min_values=1)
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
    from the whole grid; only a warm refit that does not converge is redone from the grid. A resample whose
    refit still does not converge counts in ``n_failed`` and is left out of ``samples``, whose index keeps the resample numbers (see ``BootstrapResult``). ``prefit=True`` says the law
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
    n_cold = int((~ok).sum())
    for row in np.flatnonzero(~ok):  # a warm refit that left the full-data basin: redo it from the whole grid
        cold = _fresh_copy(law)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                cold.fit(X, y, sample_weight=counts[row])
        except FitError:
            continue
        if cold.converged_:
            xs[row], ok[row] = cold.raw_params_[law.free_index], True
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
    return BootstrapResult(samples, estimate, int((~ok).sum()), raw=law.full_raw(xs[ok]), n_cold=n_cold)


def _fresh_copy(law: ScalingLaw) -> ScalingLaw:
    return type(law)(**law.config(full=True))


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
    the whole two-stage fit from its grid of starts for every resample (same resamples, much slower); a warm
    refit that does not converge is redone so too. A resample whose refit still does not converge counts in
    ``n_failed`` and is left out of ``samples``.
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
        config = template.config()
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
    # A warm refit that did not converge (it left the full-data basin) is redone cold, from the whole grid; so is
    # every resample without ``warm_start``.
    n_cold = n_resamples - len(records) if warm_start else 0
    for row in range(n_resamples):
        if row in records:
            continue
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
    return BootstrapResult(samples, estimate, n_resamples - len(records), n_cold=n_cold)


def _two_stage_record(result: TwoStageResult) -> dict[str, float]:
    record = dict(result.shared)
    for name, law in result.laws.items():
        for param, value in law.params_.items():
            if param not in ("beta", "E"):
                record[f"{name}.{param}"] = value
    return record
