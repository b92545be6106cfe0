"""Ranking candidates (base models, methods) by the loss a single-factor law predicts at a target data size.

Lin et al. (2024)'s selection problem: every candidate was finetuned on subsets of up to M examples (the budget);
which one will be best after finetuning on N >> M? Per candidate, fit the law to its points with d <= M,
predict L(N), rank by the prediction. With a bootstrap, each prediction gets a percentile interval, and the top
pick is compared with every other candidate on paired resamples: resample i of every candidate is drawn with the
same seed (the same point positions, points sorted by d, when the candidates have as many points), and
``p_top_better`` is the share of paired resamples in which the top pick's prediction is the lower one (ties count
half).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ftscale.errors import DataError, FitError
from ftscale.laws.bootstrap import bootstrap as bootstrap_law
from ftscale.laws.bootstrap import percentile_ci
from ftscale.laws.evaluation import _clean, aggregate_cells
from ftscale.laws.forms import JOINT_LAWS, SINGLE_FACTOR_LAWS, FitWarning, law_class

#: Columns of the table :func:`rank_candidates` returns, in order.
RANKING_COLUMNS = (
    "rank",
    "candidate",
    "n_points",
    "d_budget",
    "loss_budget",
    "predicted",
    "low",
    "high",
    "se",
    "n_resamples",
    "p_top_better",
    "indistinguishable",
    "converged",
    "params",
    "warnings",
)


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_settings(law: str, target_d: float, budget_d: float | None, bootstrap: int, level: float) -> type:
    key = law.strip().lower()
    law_cls = law_class(key)
    if key in JOINT_LAWS:
        raise FitError(
            f"law {key} is joint in (X, D_f); ranking fits one law of D_f per candidate: use one of "
            f"{', '.join(SINGLE_FACTOR_LAWS)}"
        )
    if not (np.isfinite(target_d) and target_d > 0):
        raise FitError(f"the target data size must be a positive number, got {target_d:g}")
    if budget_d is not None:
        if not (np.isfinite(budget_d) and budget_d > 0):
            raise FitError(f"the budget data size must be a positive number, got {budget_d:g}")
        if target_d <= budget_d:
            raise FitError(
                f"the target data size {target_d:g} must exceed the budget {budget_d:g}: ranking predicts "
                "beyond the runs it fits"
            )
    if bootstrap < 0:
        raise FitError(f"bootstrap resamples must be >= 0, got {bootstrap}")
    if not 0 < level < 1:
        raise FitError(f"level must lie in (0, 1), got {level}")
    return law_cls


def rank_candidates(
    points: pd.DataFrame,
    *,
    target_d: float,
    budget_d: float | None = None,
    candidate: str = "model",
    d: str = "ft_examples",
    y: str = "loss",
    law: str = "rectified",
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    residual: str = "linear",
    loss: str = "huber",
    solver: str = "auto",
) -> pd.DataFrame:
    """Rank the candidates of a point table by the loss their fitted law predicts at ``target_d``.

    ``points``: long table (validated, e.g. by ``read_points``) with columns ``candidate``, ``d``, ``y``; rows of
    one (candidate, d) cell are averaged over seeds first. Each candidate's law (``power``, ``rectified``,
    ``vanilla``) is fitted to its cells with d <= ``budget_d`` (default: all). Rows with d = 0 (zero-shot
    points) are fitting points too, for forms defined there (``zero_d_ok``) only.

    Returns one row per candidate, best first (:data:`RANKING_COLUMNS`): ``n_points`` fitted, ``d_budget`` and
    ``loss_budget`` (the largest d fitted and its observed loss), ``predicted`` (L̂ at ``target_d``), and with
    ``bootstrap > 0`` resamples its percentile interval ``low`` / ``high`` / ``se`` at ``level``,
    ``p_top_better`` (share of paired resamples in which the top pick predicts the lower loss) and
    ``indistinguishable`` (``p_top_better < level``); both are missing (NaN / None) for the top pick and without a
    bootstrap.
    ``attrs`` holds the settings. A candidate with fewer fitting points than the law's parameters is a FitError.
    """
    law_cls = _check_settings(
        law, float(target_d), None if budget_d is None else float(budget_d), bootstrap, level
    )
    missing = [c for c in dict.fromkeys((candidate, d, y)) if c not in points.columns]
    if missing:
        raise DataError(
            f"column {missing[0]!r} not found; available columns: {', '.join(map(str, points.columns))}"
        )
    if points.empty:
        raise DataError("no points to rank")
    d_values = points[d].to_numpy(dtype=float)
    if (d_values == 0).any() and not getattr(law_cls, "zero_d_ok", False):
        raise FitError(
            f"the {law_cls.__name__} form is undefined at {d} = 0 (zero-shot points): drop them or use a form "
            "defined there, such as rectified"
        )
    cells = aggregate_cells(points, [candidate, d], y)
    if budget_d is not None:
        cells = cells[cells[d] <= float(budget_d)]
    names = [n for n in points[candidate].drop_duplicates().sort_values()]
    n_params = len(law_cls.param_names)
    fits = {}
    for name in names:
        frame = cells[cells[candidate] == name].sort_values(d)
        if len(frame) < n_params:
            within = "" if budget_d is None else f" with {d} <= {float(budget_d):g}"
            raise FitError(
                f"candidate {_label(name)!r} has {len(frame)} points{within}, fewer than the {n_params} "
                f"parameters of the {law.strip().lower()} law: raise --budget-d or leave it out"
            )
        options = {"residual": residual, "loss": loss, "solver": solver, "seed": seed}
        fits[name] = _fit_one(law_cls, frame, d, y, float(target_d), bootstrap, seed, level, options)

    order = sorted(names, key=lambda n: (not np.isfinite(fits[n]["predicted"]), fits[n]["predicted"]))
    top_draws = fits[order[0]]["draws"]
    rows = []
    for rank, name in enumerate(order, start=1):
        fit = fits[name]
        draws = fit.pop("draws")
        p_better = None
        if bootstrap > 0 and rank > 1:
            common = top_draws.index.intersection(draws.index)
            if len(common):
                a, b = top_draws.loc[common].to_numpy(), draws.loc[common].to_numpy()
                p_better = float(np.mean((a < b) + 0.5 * (a == b)))
        rows.append(
            {
                "rank": rank,
                "candidate": _label(name),
                **fit,
                "p_top_better": p_better,
                "indistinguishable": None if p_better is None else bool(p_better < level),
            }
        )
    table = pd.DataFrame(rows, columns=list(RANKING_COLUMNS))
    table.attrs.update(
        law=law.strip().lower(),
        candidate=candidate,
        d=d,
        y=y,
        target_d=float(target_d),
        budget_d=None if budget_d is None else float(budget_d),
        bootstrap=int(bootstrap),
        seed=int(seed),
        level=float(level),
        residual=residual,
        loss=loss,
        solver=solver,
    )
    return table


def _fit_one(
    law_cls: type,
    frame: pd.DataFrame,
    d: str,
    y: str,
    target_d: float,
    bootstrap: int,
    seed: int,
    level: float,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Fit one candidate's cells, predict at ``target_d``; bootstrap draws of that prediction by resample."""
    X, targets = frame[d].to_numpy(dtype=float), frame[y].to_numpy(dtype=float)
    estimator = law_cls(**options)
    # The fitter records its warnings in ``warnings_``; the ranking reports them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        estimator.fit(X, targets)
        predicted = float(estimator.predict([target_d])[0])
        draws = pd.Series(dtype=float)
        if bootstrap > 0:
            result = bootstrap_law(estimator, X, targets, n_resamples=bootstrap, seed=seed, prefit=True)
            draws = pd.Series(
                result.predict(estimator, [target_d])[:, 0], index=result.samples.index, dtype=float
            )
    low, high, se = percentile_ci(draws.to_numpy(), level=level) if bootstrap > 0 else (np.nan,) * 3
    return {
        "n_points": len(frame),
        "d_budget": float(X[-1]),
        "loss_budget": float(targets[-1]),
        "predicted": predicted,
        "low": low,
        "high": high,
        "se": se,
        "n_resamples": len(draws),
        "converged": bool(getattr(estimator, "converged_", True)),
        "params": {k: float(v) for k, v in estimator.params_.items()},
        "warnings": [str(w) for w in getattr(estimator, "warnings_", [])],
        "draws": draws,
    }


def ranking_to_dict(table: pd.DataFrame) -> dict[str, Any]:
    """JSON-ready dict of a :func:`rank_candidates` table: its settings and one record per candidate (NaN → None)."""
    return _clean({**table.attrs, "candidates": table.to_dict("records")})
