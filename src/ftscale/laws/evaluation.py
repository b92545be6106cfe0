"""Judging a fitted law: fit / held-out split, Δe and Δh (PAPER §2.7-2.8), RMSE of log loss, seed averaging.

The paper splits its points by *value*: every run whose X or D_f equals a held-out value (mostly the largest of
each axis) is held out, the rest are fitted. Δe is the mean absolute deviation of the law on the fitting points,
Δh on the held-out points. Points of one (X, D_f) cell from different seeds are averaged before fitting.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ftscale.errors import DataError, FitError
from ftscale.laws.forms import FitWarning

# Relative tolerance for matching held-out values given on the command line (16e9) to stored floats.
_VALUE_RTOL = 1e-9


def exact_mean(values: Any) -> float:
    """Mean of the finite-or-NaN ``values`` with NaNs skipped, from a correctly rounded sum (``math.fsum``).

    The seed averages feed fits whose bootstrap explores flat directions, where a last-bit change of a cell
    moves a resample's endpoint: pandas' own group mean changed its last bits between releases (3.0 → 3.1) and
    with the row order. The correctly rounded sum depends on neither.
    """
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    return math.fsum(array) / array.size if array.size else math.nan


def exact_std(values: Any) -> float:
    """Sample standard deviation (ddof 1, NaNs skipped) with the same order-free sums as ``exact_mean``."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    if array.size < 2:
        return math.nan
    mean = math.fsum(array) / array.size
    return math.sqrt(math.fsum((array - mean) ** 2) / (array.size - 1))


def aggregate_cells(df: pd.DataFrame, keys: Sequence[str], y: str) -> pd.DataFrame:
    """One row per cell ``keys``: ``y`` is the mean over seeds (:func:`exact_mean`, as the study analysis);
    ``{y}_std`` and ``n_seeds`` keep the spread.

    Columns other than ``keys`` and ``y`` are dropped (they differ between seeds, e.g. the seed itself).
    """
    missing = [k for k in [*keys, y] if k not in df.columns]
    if missing:
        raise DataError(f"cannot aggregate: columns {missing} missing; available columns: {list(df.columns)}")
    grouped = df.groupby(list(keys), sort=True, dropna=False)[y]
    out = grouped.agg([exact_mean, exact_std, "count"]).reset_index()
    out = out.rename(columns={"exact_mean": y, "exact_std": f"{y}_std", "count": "n_seeds"})
    out[f"{y}_std"] = out[f"{y}_std"].fillna(0.0)  # a single seed has no spread
    return out


def noise_floor(std: Any, n_seeds: Any) -> float:
    """Δ that a law predicting every cell's TRUE mean exactly would score against seed means: a mean of n seeds
    with seed std s misses its true mean by E|N(0, s²/n)| = √(2/π)·s/√n; averaged over the cells with ≥ 2 seeds
    (NaN when none has). A Δh near this floor is all the data can resolve; far above it, the law misses."""
    std, n = np.asarray(std, dtype=float), np.asarray(n_seeds, dtype=float)
    keep = (n > 1) & np.isfinite(std)
    if not keep.any():
        return math.nan
    return float(np.mean(math.sqrt(2 / math.pi) * std[keep] / np.sqrt(n[keep])))


@dataclass
class LackOfFit:
    """Pure-error F test of a law against the seed noise of replicated cells (Draper & Smith, ch. 2.1)."""

    f: float
    p: float  # P(F ≥ f) if the law were exact: small p = the law misses by more than the seeds vary
    df_lack: int
    df_pure: int

    def describe(self) -> str:
        if not math.isfinite(self.p):
            return "lack-of-fit test: needs cells with several seeds and more cells than parameters"
        verdict = "fits within the seed noise" if self.p >= 0.05 else "misses by more than the seed noise"
        return f"the law {verdict}: lack-of-fit F = {self.f:.3g}, p = {self.p:.2g} (df {self.df_lack}, {self.df_pure})"


def lack_of_fit(mean: Any, pred: Any, std: Any, n_seeds: Any, n_params: int) -> LackOfFit:
    """F = (Σ n_c (ȳ_c − ŷ_c)² / (C − p)) / (Σ (n_c − 1) s_c² / Σ (n_c − 1)) over C cells of n_c seeds.

    The numerator is the law's misfit of the cell means, the denominator the seeds' own spread (pure error);
    under an exact law with Gaussian seed noise F follows F(C − p, Σ(n_c − 1)). NaN when either df is 0.
    """
    from scipy.stats import f as f_dist

    mean, pred = np.asarray(mean, dtype=float), np.asarray(pred, dtype=float)
    std, n = np.nan_to_num(np.asarray(std, dtype=float)), np.asarray(n_seeds, dtype=float)
    df_lack = int(len(mean) - n_params)
    df_pure = int(np.sum(n - 1))
    if df_lack <= 0 or df_pure <= 0:
        return LackOfFit(math.nan, math.nan, df_lack, df_pure)
    pure = float(np.sum((n - 1) * std**2)) / df_pure
    lack = float(np.sum(n * (mean - pred) ** 2)) / df_lack
    if pure <= 0:
        return LackOfFit(math.inf if lack > 0 else math.nan, 0.0 if lack > 0 else math.nan, df_lack, df_pure)
    f_value = lack / pure
    return LackOfFit(f_value, float(f_dist.sf(f_value, df_lack, df_pure)), df_lack, df_pure)


def _matches(values: np.ndarray, targets: Sequence[float]) -> np.ndarray:
    mask = np.zeros(values.shape, dtype=bool)
    for target in targets:
        mask |= np.isclose(values, float(target), rtol=_VALUE_RTOL, atol=0.0)
    return mask


def split_points(
    df: pd.DataFrame,
    axes: Sequence[str] = ("x", "d"),
    heldout: str | Mapping[str, Sequence[float]] | None = "largest",
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(fit_mask, heldout_mask)`` over the rows of ``df``.

    ``heldout="largest"`` holds out every row whose value on ANY of ``axes`` equals that axis's largest value;
    a mapping ``{axis: [values]}`` holds out rows matching any listed value (relative tolerance 1e-9); ``None`` or
    ``"none"`` fits every row. A listed value absent from the data is an error (a typo would silently hold out
    nothing).
    """
    axes = list(axes)
    missing = [a for a in axes if a not in df.columns]
    if missing:
        raise DataError(f"split axes {missing} are not columns; available columns: {list(df.columns)}")
    held = np.zeros(len(df), dtype=bool)
    if heldout is None or (isinstance(heldout, str) and heldout == "none"):
        return ~held, held
    if isinstance(heldout, str):
        if heldout != "largest":
            raise DataError(
                f"held-out rule {heldout!r} is unknown: use 'largest', 'none' or axis=value pairs"
            )
        for axis in axes:
            values = df[axis].to_numpy(dtype=float)
            if values.size:
                held |= _matches(values, [np.nanmax(values)])
        return ~held, held
    for axis, targets in heldout.items():
        if axis not in axes:
            raise DataError(f"held-out axis {axis!r} is not one of the law's axes {axes}")
        values = df[axis].to_numpy(dtype=float)
        for target in targets:
            hit = _matches(values, [target])
            if not hit.any():
                present = ", ".join(f"{v:g}" for v in np.unique(values))
                raise DataError(
                    f"held-out value {axis}={float(target):g} is not in the data; values are {present}"
                )
            held |= hit
    return ~held, held


def fit_errors(law: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Deviations of a fitted law on points: ``mad`` (Δ, mean |L̂ − L|), ``rmse_log``, ``max_abs``, ``n``.

    Empty input gives NaN errors and ``n = 0``. ``rmse_log`` is NaN where a prediction is not positive.
    """
    y = np.asarray(y, dtype=float)
    if y.size == 0:
        return {"mad": math.nan, "rmse_log": math.nan, "max_abs": math.nan, "n": 0}
    pred = np.asarray(law.predict(X), dtype=float)
    dev = pred - y
    with np.errstate(invalid="ignore", divide="ignore"):
        log_dev = np.log(pred) - np.log(y)
    return {
        "mad": float(np.mean(np.abs(dev))),
        "rmse_log": float(np.sqrt(np.mean(log_dev**2))),
        "max_abs": float(np.max(np.abs(dev))),
        "n": int(y.size),
    }


@dataclass
class FitReport:
    """What one law fit says about its points: parameters (with CIs), Δe, Δh, RMSE of log loss, health.

    ``delta_e`` / ``delta_h`` are mean absolute deviations on the fitting / held-out points; ``delta_h`` is NaN
    when nothing is held out and ``heldout_note`` says so.
    """

    law: str
    params: dict[str, float]
    delta_e: float
    delta_h: float
    rmse_log_fit: float
    rmse_log_heldout: float
    max_abs_fit: float
    max_abs_heldout: float
    n_fit: int
    n_heldout: int
    converged: bool
    warnings: list[str] = field(default_factory=list)
    ci: pd.DataFrame | None = None
    ci_level: float | None = None
    heldout_note: str = ""
    group: str | None = None
    noise_floor_h: float = math.nan  # :func:`noise_floor` of the held-out cells: the Δh of an exact law
    lack_of_fit_f: float = math.nan  # :func:`lack_of_fit` on the fitting cells
    lack_of_fit_p: float = math.nan
    #: one dict per requested point: its inputs by role (``x``, ``d``), ``loss`` (the law's prediction) and, with
    #: a bootstrap, ``low`` / ``high`` / ``se`` of the resamples' predictions at ``ci_level``.
    predictions: list[dict[str, float]] = field(default_factory=list)
    fitted_law: Any = field(default=None, repr=False, compare=False)
    #: the bootstrap's draws (``BootstrapResult``) when ``bootstrap > 0``: predictions with intervals anywhere
    bootstrap_result: Any = field(default=None, repr=False, compare=False)
    #: the points the law was judged on (seed means when aggregated) with a boolean ``heldout`` column
    cells: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → None; CI table as {param: {estimate, low, high, se}})."""
        out = asdict(self)
        out.pop("fitted_law", None)
        out.pop("bootstrap_result", None)
        out.pop("cells", None)
        out["ci"] = (
            None if self.ci is None else {str(k): _clean(v) for k, v in self.ci.to_dict("index").items()}
        )
        return _clean(out)


def _clean(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively, so json.dumps emits valid JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def law_name(law: Any) -> str:
    """The registry name of a law's form (``MultiplicativeLaw`` → ``multiplicative``, ``RectifiedJointLaw`` →
    ``rectified-joint``); for a class outside the registry, its name without ``Law``, lower-cased."""
    from ftscale.laws.forms import LAW_FORMS

    name = next((key for key, cls in LAW_FORMS.items() if type(law) is cls), None)
    if name is not None:
        return name
    name = type(law).__name__
    return name[: -len("Law")].lower() if name.endswith("Law") else name.lower()


def points_matrix(df: pd.DataFrame, x: str | None, d: str) -> np.ndarray:
    """Law input from a point table: (n, 2) columns (x, d) for joint laws, (n,) of d when ``x`` is None."""
    if x is None:
        return df[d].to_numpy(dtype=float)
    return df[[x, d]].to_numpy(dtype=float)


def evaluate_fit(
    law: Any,
    df: pd.DataFrame,
    *,
    x: str | None = "x",
    d: str = "d",
    y: str = "loss",
    heldout: str | Mapping[str, Sequence[float]] | None = "largest",
    aggregate: bool = True,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    bootstrap_fn: Callable[..., Any] | None = None,
    group: str | None = None,
    predict: Sequence[Mapping[str, float]] = (),
) -> FitReport:
    """Fit ``law`` (an unfitted estimator; it is copied) on the fit split of ``df`` and report Δe / Δh.

    ``x=None`` means a single-factor law of ``d``. With ``aggregate`` the rows of one (x, d) cell are averaged
    over seeds first. ``bootstrap > 0`` adds percentile CIs of the parameters from that many resamples of the
    fitting points. ``predict``: points ``{"d": ..., "x": ...}`` (``x`` for joint laws) at which to predict the
    loss, with the bootstrap's percentile interval when ``bootstrap > 0``.
    """
    axes = [d] if x is None else [x, d]
    _check_prediction_points(law, predict, joint=x is not None)
    points = aggregate_cells(df, axes, y) if aggregate else df.reset_index(drop=True)
    fit_mask, held_mask = split_points(points, axes, heldout)
    fit_df, held_df = points[fit_mask], points[held_mask]
    n_params = getattr(law, "n_params", None)
    where = f" (group {group})" if group is not None else ""
    if n_params is not None and len(fit_df) < int(n_params):
        raise FitError(
            f"{law_name(law)} law{where} has {int(n_params)} parameters but only {len(fit_df)} fitting points "
            f"({len(held_df)} held out): add points" + (" or use --heldout none" if len(held_df) else "")
        )
    estimator = copy.deepcopy(law)
    X_fit, y_fit = points_matrix(fit_df, x, d), fit_df[y].to_numpy(dtype=float)
    with warnings.catch_warnings():
        # The fitter also records its warnings in ``warnings_``; the report carries them, so keep stderr clean.
        warnings.simplefilter("ignore", FitWarning)
        estimator.fit(X_fit, y_fit)
    fit_err = fit_errors(estimator, X_fit, y_fit)
    held_err = fit_errors(estimator, points_matrix(held_df, x, d), held_df[y].to_numpy(dtype=float))
    note = "" if len(held_df) else "no held-out points: Δh is undefined (NaN)"
    std_col = f"{y}_std"
    floor_h = noise_floor(held_df[std_col], held_df["n_seeds"]) if aggregate and len(held_df) else math.nan
    lof = (
        lack_of_fit(y_fit, estimator.predict(X_fit), fit_df[std_col], fit_df["n_seeds"], estimator.n_params)
        if aggregate
        else LackOfFit(math.nan, math.nan, 0, 0)
    )

    ci = result = None
    if bootstrap > 0:
        options: dict[str, Any] = {}
        if bootstrap_fn is None:
            from ftscale.laws.bootstrap import bootstrap as bootstrap_fn

            options["prefit"] = True  # the estimator was just fitted on these points: no second full fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            result = bootstrap_fn(estimator, X_fit, y_fit, n_resamples=bootstrap, seed=seed, **options)
        ci = result.ci(level=level)
    resamples = result if ci is not None and hasattr(result, "predict") else None
    predictions = _predictions(estimator, predict, joint=x is not None, resamples=resamples, level=level)

    return FitReport(
        law=law_name(estimator),
        params={k: float(v) for k, v in estimator.params_.items()},
        delta_e=fit_err["mad"],
        delta_h=held_err["mad"],
        rmse_log_fit=fit_err["rmse_log"],
        rmse_log_heldout=held_err["rmse_log"],
        max_abs_fit=fit_err["max_abs"],
        max_abs_heldout=held_err["max_abs"],
        n_fit=fit_err["n"],
        n_heldout=held_err["n"],
        converged=bool(getattr(estimator, "converged_", True)),
        warnings=[str(w) for w in getattr(estimator, "warnings_", [])],
        ci=ci,
        ci_level=level if ci is not None else None,
        heldout_note=note,
        group=group,
        noise_floor_h=floor_h,
        lack_of_fit_f=lof.f,
        lack_of_fit_p=lof.p,
        predictions=predictions,
        fitted_law=estimator,
        bootstrap_result=resamples,
        cells=points.assign(heldout=held_mask),
    )


def _check_prediction_points(law: Any, points: Sequence[Mapping[str, float]], *, joint: bool) -> None:
    """Each point names exactly the law's inputs (``x`` and ``d``, or ``d``) with values the law is defined at."""
    roles = ("x", "d") if joint else ("d",)
    for point in points:
        missing = [role for role in roles if role not in point]
        extra = [role for role in point if role not in roles]
        if missing or extra:
            got = f" (got {', '.join(point)})" if point else ""
            raise FitError(
                f"prediction point {dict(point)}: a {law_name(law)} law needs {' and '.join(roles)}{got}"
            )
        try:
            law._check_X(np.array([[float(point[role]) for role in roles]]))  # the law's own input check
        except FitError as exc:
            raise FitError(f"prediction point {dict(point)}: {exc}") from None


def _predictions(
    law: Any, points: Sequence[Mapping[str, float]], *, joint: bool, resamples: Any, level: float
) -> list[dict[str, float]]:
    """The law's loss at each requested point, with the bootstrap's percentile interval when there is one."""
    if not points:
        return []
    roles = ("x", "d") if joint else ("d",)
    X = np.array([[float(p[role]) for role in roles] for p in points])
    X = X if joint else X[:, 0]
    estimate = np.asarray(law.predict(X), dtype=float)
    bounds = resamples.predict_ci(law, X, level) if resamples is not None else None
    out = []
    for k, point in enumerate(points):
        row = {role: float(point[role]) for role in roles} | {"loss": float(estimate[k])}
        if bounds is not None:
            row |= {
                name: float(column[k]) for name, column in zip(("low", "high", "se"), bounds, strict=True)
            }
        out.append(row)
    return out
