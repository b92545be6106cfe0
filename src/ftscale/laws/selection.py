"""Choosing a law form by how well it extrapolates (``ftscale fit --law auto`` / ``--law compare``).

A law is used to predict the loss where nobody has run yet: at a larger D_f or a larger model. So the forms are
ranked by their errors on exactly that task, measured on the user's own points by refitting on the smaller sizes:

- ``largest-d``: fit every point below the largest D_f, predict the largest D_f (every X);
- ``largest-x``: for joint laws, fit every point below the largest X, predict the largest X (every D_f);
- ``rolling-d``: fit the points with D_f ≤ D_max / 2^k (k = 1, 2, 3, while enough points remain), predict D_max.

The score of a form is the mean RMSE of log loss over the schemes it could be run on; AIC and BIC of the full fit
(Gaussian residuals on the fit's own scale) are printed beside it, not used, since they reward interpolation. A
scheme that leaves a form fewer points than parameters, or whose fit fails, is skipped for that form and counted.
The points are seed means of each cell (as every other fit of the package).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ftscale.errors import FitError, UserError
from ftscale.laws.evaluation import _clean, aggregate_cells, fit_errors, law_name, points_matrix
from ftscale.laws.forms import JOINT_LAWS, LAW_FORMS, SINGLE_FACTOR_LAWS, FitWarning, ScalingLaw

#: How many halvings of D_max the rolling scheme tries (fit on D_f ≤ D_max/2, /4, /8).
ROLLING_STEPS = 3

#: Extrapolation schemes, in the order they are reported.
SCHEMES = ("largest-d", "largest-x", "rolling-d")


@dataclass
class FormScore:
    """One form's extrapolation errors (RMSE of log loss per scheme), information criteria and fit health."""

    form: str
    n_params: int
    errors: dict[str, float]  # scheme -> RMSE of log loss on its held-out points (NaN: not run)
    score: float  # mean over the schemes that ran
    aic: float
    bic: float
    rmse_log_fit: float  # of the fit on every point
    converged: bool
    skipped: dict[str, str] = field(default_factory=dict)  # scheme -> why it was not run


@dataclass
class Comparison:
    """Every applicable form scored; ``chosen`` is the lowest score, ``reason`` says why in one sentence."""

    scores: list[FormScore]
    chosen: str
    reason: str

    def table(self) -> pd.DataFrame:
        rows = []
        for s in self.scores:
            row: dict[str, Any] = {"form": s.form, "params": s.n_params, "score": s.score}
            row |= {scheme: s.errors.get(scheme, math.nan) for scheme in SCHEMES}
            row |= {"rmse_log_fit": s.rmse_log_fit, "aic": s.aic, "bic": s.bic, "converged": s.converged}
            rows.append(row)
        return pd.DataFrame(rows).sort_values("score", na_position="last").reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {"chosen": self.chosen, "reason": self.reason, "scores": [asdict(s) for s in self.scores]}
        )


def applicable_forms(joint: bool) -> tuple[str, ...]:
    """The registry's forms of the right arity: joint forms for (X, D_f) points, single-factor ones for D_f."""
    names = JOINT_LAWS if joint else SINGLE_FACTOR_LAWS
    return tuple(name for name in names if name in LAW_FORMS)


def _fit_quietly(template: ScalingLaw, X: np.ndarray, y: np.ndarray) -> ScalingLaw:
    law = copy.deepcopy(template)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        law.fit(X, y)
    return law


def information_criteria(law: ScalingLaw, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """AIC and BIC of a fitted law under Gaussian residuals on its own scale (log L for ``residual='log'``)."""
    pred = np.asarray(law.predict(X), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.log(pred) - np.log(y) if law.residual == "log" else pred - y
    n, k = len(y), law.n_params
    rss = float(np.sum(resid**2))
    if not np.isfinite(rss) or n == 0:
        return math.nan, math.nan
    log_lik_term = n * math.log(max(rss / n, 1e-300))
    return log_lik_term + 2 * k, log_lik_term + k * math.log(n)


def _scheme_splits(points: pd.DataFrame, x: str | None, d: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(scheme, fit mask, held-out mask) for every split the points allow (rolling-d gives several)."""
    d_values = points[d].to_numpy(dtype=float)
    d_max = float(np.max(d_values))
    splits = [("largest-d", d_values < d_max, d_values == d_max)]
    if x is not None:
        x_values = points[x].to_numpy(dtype=float)
        x_max = float(np.max(x_values))
        splits.append(("largest-x", x_values < x_max, x_values == x_max))
    for k in range(1, ROLLING_STEPS + 1):
        splits.append(("rolling-d", d_values <= d_max / 2**k, d_values == d_max))
    return splits


def score_form(template: ScalingLaw, points: pd.DataFrame, x: str | None, d: str, y: str) -> FormScore:
    """Extrapolation errors of one (unfitted) form on seed-mean ``points``; see the module docstring."""
    X_all, y_all = points_matrix(points, x, d), points[y].to_numpy(dtype=float)
    full = _fit_quietly(template, X_all, y_all)
    aic, bic = information_criteria(full, X_all, y_all)
    per_scheme: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    fitted: dict[bytes, ScalingLaw | UserError] = {}  # splits with the same fit points share one fit
    for scheme, fit_mask, held_mask in _scheme_splits(points, x, d):
        n_fit = int(fit_mask.sum())
        if n_fit < template.n_params or not held_mask.any():
            if scheme not in per_scheme:
                skipped.setdefault(scheme, f"{n_fit} points to fit {template.n_params} parameters")
            continue
        key = fit_mask.tobytes()
        if key not in fitted:
            try:
                fitted[key] = _fit_quietly(template, X_all[fit_mask], y_all[fit_mask])
            except UserError as exc:  # a failed fit of one split: recorded, the comparison goes on
                fitted[key] = exc
        law = fitted[key]
        if isinstance(law, UserError):
            skipped.setdefault(scheme, str(law))
            continue
        per_scheme.setdefault(scheme, []).append(
            fit_errors(law, X_all[held_mask], y_all[held_mask])["rmse_log"]
        )
        skipped.pop(scheme, None)
    errors = {scheme: float(np.mean(values)) for scheme, values in per_scheme.items()}
    finite = [v for v in errors.values() if np.isfinite(v)]
    return FormScore(
        form=law_name(template),
        n_params=template.n_params,
        errors=errors,
        score=float(np.mean(finite)) if finite else math.nan,
        aic=aic,
        bic=bic,
        rmse_log_fit=fit_errors(full, X_all, y_all)["rmse_log"],
        converged=bool(full.converged_),
        skipped=skipped,
    )


def compare_forms(
    df: pd.DataFrame,
    *,
    x: str | None,
    d: str,
    y: str = "loss",
    forms: Sequence[str] | None = None,
    groups: str | None = None,
    **law_options: Any,
) -> Comparison:
    """Score every applicable form (or ``forms``) on ``df`` and choose the one that extrapolates best.

    With ``groups`` (a column) each group is scored on its own and a form's score is its mean over the groups, so
    one form is chosen for all of them (one law per study, comparable parameters); its per-group errors are
    averaged the same way. ``law_options`` (residual, loss, huber_delta, ...) configure every form alike.
    """
    joint = x is not None
    names = tuple(forms) if forms else applicable_forms(joint)
    for name in names:
        if name not in LAW_FORMS:
            raise FitError(f"unknown law {name!r}: choose from {', '.join(LAW_FORMS)}")
        if (name in JOINT_LAWS) != joint:
            need = "needs --x" if name in JOINT_LAWS else "depends on D_f only: drop --x"
            raise FitError(f"law {name} {need}")
    axes = [d] if x is None else [x, d]
    frames = [df] if groups is None else [g for _, g in df.groupby(groups, sort=True)]
    by_form: dict[str, list[FormScore]] = {name: [] for name in names}
    for frame in frames:
        points = aggregate_cells(frame, axes, y)
        for name in names:
            template = LAW_FORMS[name](**law_options)
            if len(points) < template.n_params:
                continue
            by_form[name].append(score_form(template, points, x, d, y))
    scores = [_mean_score(name, parts) for name, parts in by_form.items() if parts]
    if not scores:
        raise FitError("no law form could be scored: every group has fewer points than any form's parameters")
    ranked = sorted(scores, key=lambda s: (not np.isfinite(s.score), s.score, s.bic))
    best = ranked[0]
    if not np.isfinite(best.score):
        raise FitError(
            "no form could be tested on extrapolation: there are too few points below the largest sizes; "
            "run more data sizes or choose the law with --law"
        )
    runner_up = next((s for s in ranked[1:] if np.isfinite(s.score)), None)
    schemes = ", ".join(s for s in SCHEMES if s in best.errors)
    reason = (
        f"{best.form}: lowest extrapolation error (mean RMSE of log loss {best.score:.4g} over {schemes})"
    )
    if runner_up is not None:
        reason += f"; next {runner_up.form} {runner_up.score:.4g}"
        if runner_up.score - best.score < 0.1 * best.score:
            reason += " (within 10 %: the data barely separate them)"
    return Comparison(scores=ranked, chosen=best.form, reason=reason)


def _mean_score(name: str, parts: list[FormScore]) -> FormScore:
    if len(parts) == 1:
        return parts[0]

    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    schemes = [s for s in SCHEMES if any(s in p.errors for p in parts)]
    errors = {s: mean([p.errors.get(s, math.nan) for p in parts]) for s in schemes}
    return FormScore(
        form=name,
        n_params=parts[0].n_params,
        errors=errors,
        score=mean([p.score for p in parts]),
        aic=float(np.sum([p.aic for p in parts])),
        bic=float(np.sum([p.bic for p in parts])),
        rmse_log_fit=mean([p.rmse_log_fit for p in parts]),
        converged=all(p.converged for p in parts),
        skipped={k: v for p in parts for k, v in p.skipped.items()},
    )
