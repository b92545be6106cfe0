"""Fit-only analysis of any loss table (e.g. Lin et al. 2024): joint laws per group, single laws per model, crossings.

A CSV with user-named columns is mapped onto (group, model, x, d, loss). A wide table (one column per data size,
as Lin et al.'s) is melted first; zero-shot columns (d = 0) are dropped since the laws need d > 0.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ftscale.analysis.fits import crossings, fit_errors, fit_single
from ftscale.errors import DataError, FitError
from ftscale.laws.forms import LAW_FORMS
from ftscale.laws.io import read_table


def load_points(
    path: str | Path,
    x: str,
    y: str | None = None,
    d: str | None = None,
    factor: str | None = None,
    label: str | None = None,
    method: str | None = None,
) -> pd.DataFrame:
    """Columns group, model, x, d, loss from a long (``d`` given) or wide (numeric column names) CSV.

    Rows are grouped by ``factor`` and, when given, by ``method`` too (``"<method>/<factor value>"``): each
    group gets its own joint law, so methods are never fitted together."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"fit-only input {path} not found")
    frame = read_table(path, empty="the table is empty")
    needed = [c for c in (x, d, y, factor, label, method) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found; columns are {', '.join(frame.columns)}"
        )
    label = label or next(
        (c for c in frame.columns if c not in needed and pd.api.types.is_string_dtype(frame[c])), None
    )
    if d is None:
        sizes = [c for c in frame.columns if _is_number(c)]
        if not sizes:
            raise DataError(
                f"{path}: give --d COLUMN (long table) or numeric data-size column names (wide table)"
            )
        ids = [c for c in (x, factor, label, method) if c]
        frame = frame.melt(id_vars=ids, value_vars=sizes, var_name="d", value_name="loss")
        d, y = "d", "loss"
    elif y is None:
        raise DataError(f"{path}: give --y COLUMN with the loss")
    group = frame[factor].astype(str) if factor else pd.Series("all", index=frame.index)
    if method:
        group = frame[method].astype(str) + ("/" + group if factor else "")
    out = pd.DataFrame(
        {
            "group": group,
            "model": frame[label].astype(str) if label else frame[x].astype(str),
            "x": pd.to_numeric(frame[x], errors="coerce"),
            "d": pd.to_numeric(frame[d], errors="coerce"),
            "loss": pd.to_numeric(frame[y], errors="coerce"),
        }
    )
    out = out[(out["x"] > 0) & (out["d"] > 0) & out["loss"].notna()]
    if out.empty:
        raise DataError(f"{path}: no rows with positive {x}, positive data size and a loss")
    out.attrs["source"] = str(path)
    return out.reset_index(drop=True)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class FitOnlyAnalysis:
    source: str
    joint: pd.DataFrame  # group, form, params, delta_e, delta_h, n_fit, n_heldout
    single: pd.DataFrame  # group, model, form, params, delta_e, rmse_log
    crossings: pd.DataFrame  # group, model_a, model_b, crossings, status
    notes: list[str] = field(default_factory=list)


def analyse_points(
    points: pd.DataFrame,
    single_forms: tuple[str, ...] = ("power", "rectified"),
    max_models: int | None = None,
) -> FitOnlyAnalysis:
    """Per group: multiplicative vs additive joint law over (x, d); per model: single laws; model-pair crossings."""
    from ftscale.laws.evaluation import split_points

    if max_models is not None and max_models < 1:
        raise DataError(f"--max-models must be at least 1, got {max_models}")
    joint_rows, single_rows, cross_rows, notes = [], [], [], []
    for group, sub in points.groupby("group", sort=True):
        cells = sub.groupby(["x", "d"], as_index=False)["loss"].mean()
        fit_mask, held_mask = split_points(cells, ("x", "d"), "largest")
        fit, held = cells[fit_mask], cells[held_mask]
        if fit["x"].nunique() < 2 or len(fit) < 6:
            notes.append(
                f"group {group}: {fit['x'].nunique()} model size(s) in the fitting split; joint law skipped"
            )
        else:
            for form in ("multiplicative", "additive"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    law = LAW_FORMS[form]().fit(fit[["x", "d"]].to_numpy(float), fit["loss"].to_numpy(float))
                e = fit_errors(law, fit[["x", "d"]].to_numpy(float), fit["loss"].to_numpy(float))
                h = fit_errors(law, held[["x", "d"]].to_numpy(float), held["loss"].to_numpy(float))
                joint_rows.append(
                    {
                        "group": group,
                        "form": form,
                        **law.params_,
                        "delta_e": e["mad"],
                        "delta_h": h["mad"],
                        "n_fit": e["n"],
                        "n_heldout": h["n"],
                    }
                )
        models = sorted(sub["model"].unique())[:max_models]
        laws = {}
        for model in models:
            pts = sub[sub["model"] == model].sort_values("d")
            for form in single_forms:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        law = fit_single(form, pts["d"].to_numpy(), pts["loss"].to_numpy())
                except FitError as exc:
                    notes.append(f"{model} {form}: {exc}")
                    continue
                err = fit_errors(law, pts["d"].to_numpy(float), pts["loss"].to_numpy(float))
                single_rows.append(
                    {
                        "group": group,
                        "model": model,
                        "form": form,
                        **law.params_,
                        "delta_e": err["mad"],
                        "rmse_log": err["rmse_log"],
                        "n": err["n"],
                    }
                )
                if form == single_forms[-1]:
                    laws[model] = (law, float(pts["d"].min()), float(pts["d"].max()))
        for a, b in itertools.combinations(laws, 2):
            (law_a, lo_a, hi_a), (law_b, lo_b, hi_b) = laws[a], laws[b]
            cp = crossings(law_a, law_b, None, min(lo_a, lo_b), max(hi_a, hi_b), (a, b))
            cross_rows.append(
                {
                    "group": group,
                    "model_a": a,
                    "model_b": b,
                    "status": cp.status,
                    "crossings": [float(r) for r in cp.roots],
                    "first": cp.first if math.isfinite(cp.first) else np.nan,
                    "description": cp.describe(),
                }
            )
    return FitOnlyAnalysis(
        str(points.attrs.get("source", "")),
        pd.DataFrame(joint_rows),
        pd.DataFrame(single_rows),
        pd.DataFrame(cross_rows),
        notes,
    )
