"""Fits of an analysis, and its one doorway into ``ftscale.laws``: the two-stage joint law per task and method,
its bootstrap, the single-factor laws per base model, and the critical data sizes between methods.

The paper's two-stage joint law: shared (β, E) over the model-size and pretraining factors, then (A, α) per factor
with β, E fixed (PET size in stage 2 only). Bootstrap resamples of the fitting cells, refitted from the full-data
optimum, give CIs for the parameters and the critical data sizes.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ftscale.analysis.cells import METHOD_LABELS, METHOD_ORDER
from ftscale.errors import FitError
from ftscale.laws import critical as laws_critical
from ftscale.laws import fitting as laws_fitting
from ftscale.laws import forms as laws_forms
from ftscale.laws.evaluation import fit_errors

# ----- the doorway into ftscale.laws -----------------------------------------------------------------------


@dataclass
class JointFit:
    """Result of a two-stage joint fit: shared (β, E) and one fitted law per factor."""

    form: str
    shared: dict[str, float]
    laws: dict[str, Any]
    stage1: tuple[str, ...]


def fit_joint(
    factors: Mapping[str, tuple[np.ndarray, np.ndarray]], stage1: Sequence[str], form: str = "multiplicative"
) -> JointFit:
    """Two-stage fit (PAPER §2.4): shared β, E over the ``stage1`` factors, then (A, α[, B]) per factor."""
    result = laws_fitting.fit_two_stage(factors=dict(factors), stage1=tuple(stage1), form=form)
    shared = {k: float(v) for k, v in dict(result.shared).items()}
    return JointFit(form=form, shared=shared, laws=dict(result.laws), stage1=tuple(stage1))


def fit_single(form: str, d: np.ndarray, y: np.ndarray) -> Any:
    """A single-factor law of D_f (power, rectified or vanilla) fitted on the given points."""
    return laws_forms.LAW_FORMS[form]().fit(np.asarray(d, dtype=float), np.asarray(y, dtype=float))


def law_from_params(form: str, params: Mapping[str, float]) -> Any:
    cls = laws_forms.LAW_FORMS[form]
    names = getattr(cls, "param_names", tuple(params))
    return cls.from_params(**{k: float(params[k]) for k in names})


def crossings(
    law_a: Any, law_b: Any, x: float | None, d_min: float, d_max: float, labels: tuple[str, str]
) -> Any:
    """All D_f in [d_min, d_max] where the two laws predict the same loss (``CriticalPoints``)."""
    return laws_critical.critical_data_size(
        law_a, law_b, x, d_min=d_min, d_max=d_max, label_a=labels[0], label_b=labels[1]
    )


def crossing_ci(
    laws_a: Sequence[Any], laws_b: Sequence[Any], x: float | None, d_min: float, d_max: float, level: float
) -> Any:
    """Percentile CI of the first crossing over paired bootstrap laws (``CriticalCI``)."""
    return laws_critical.critical_data_size_ci(
        list(laws_a), list(laws_b), x, level=level, d_min=d_min, d_max=d_max, n_grid=200
    )


constant_gap_size = laws_critical.constant_gap_size


def constant_gap(law_a: Any, law_b: Any) -> tuple[float, float]:
    """PAPER Eq. 3 (H, γ); NaNs when it does not apply (equal β, non-multiplicative forms)."""
    try:
        return laws_critical.constant_gap_critical(law_a, law_b)
    except FitError:
        return math.nan, math.nan


STAGE1_FACTORS = ("model_size", "pretrain_tokens")


CRITICAL_FACTORS = ("model_size", "pretrain_tokens", "pretrain_tokens_annealed")


# Critical sizes are searched this many decades beyond the observed D_f range of the two methods.
CRITICAL_SEARCH_DECADES = 3.0


def fit_task_method(
    cells: pd.DataFrame, task: str, method: str, form: str
) -> tuple[JointFit, dict[str, tuple[np.ndarray, np.ndarray]]]:
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for factor, group in cells.groupby("factor", sort=False):
        fit = group[~group["heldout"]]
        factors[str(factor)] = (fit[["x", "d"]].to_numpy(float), fit["loss"].to_numpy(float))
    stage1 = [f for f in STAGE1_FACTORS if f in factors]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joint = fit_joint(factors, stage1=stage1, form=form)
    return joint, factors


def bootstrap_joint(
    factors: dict[str, tuple[np.ndarray, np.ndarray]],
    joint: JointFit,
    n_resamples: int,
    rng: np.random.Generator,
) -> list[dict[str, dict[str, float]]]:
    """Refit the two-stage law on resamples of each factor's fitting cells, warm-started at the full optimum
    (``laws.bootstrap.bootstrap_two_stage``: all resamples as one batched L-BFGS, then a polish of each)."""
    from ftscale.laws.bootstrap import bootstrap_two_stage

    seed = int(rng.integers(0, 2**31 - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = bootstrap_two_stage(
                factors, n_resamples=n_resamples, seed=seed, stage1=tuple(joint.stage1), form=joint.form
            )
        except (FitError, np.linalg.LinAlgError, ValueError):
            return []
    samples: list[dict[str, dict[str, float]]] = []
    for _, row in result.samples.iterrows():
        params: dict[str, dict[str, float]] = {}
        for name in factors:
            own = {col.split(".", 1)[1]: float(row[col]) for col in row.index if col.startswith(f"{name}.")}
            params[name] = {**own, "beta": float(row["beta"]), "E": float(row["E"])}
        # A flat direction (e.g. α_t ≈ 0) can stop L-BFGS short of its gradient test with a usable optimum,
        # so resamples are kept whenever their parameters are finite.
        if all(math.isfinite(v) for p in params.values() for v in p.values()):
            samples.append(params)
    return samples


def fit_single_factor_laws(cells: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str, str], Any]]:
    """Fig. 1: L(D_f) = A·D_f^-β + E per base model (model-size factor), largest D_f held out."""
    rows, laws = [], {}
    sizes = cells[cells["factor"] == "model_size"]
    for (task, method, model), group in sizes.groupby(["task", "method", "model_size"], sort=True):
        group = group.sort_values("d")
        held = group["d"] == group["d"].max()
        fit = group[~held]
        if len(fit) < 5:  # three parameters: keep at least two degrees of freedom
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                law = fit_single("power", fit["d"].to_numpy(), fit["loss"].to_numpy())
        except FitError:
            continue
        err_fit = fit_errors(law, fit["d"].to_numpy(float), fit["loss"].to_numpy(float))
        err_held = fit_errors(law, group[held]["d"].to_numpy(float), group[held]["loss"].to_numpy(float))
        laws[(task, method, str(model))] = law
        rows.append(
            {
                "task": task,
                "method": method,
                "model_size": str(model),
                "x": float(group["x"].iloc[0]),
                **law.params_,
                "delta_e": err_fit["mad"],
                "delta_h": err_held["mad"],
                "n_fit": err_fit["n"],
                "n_heldout": err_held["n"],
                "converged": bool(law.converged_),
            }
        )
    return pd.DataFrame(rows), laws


def method_pairs(methods: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(methods, 2))


def pair_label(a: str, b: str) -> str:
    return f"{METHOD_LABELS.get(a, a)} vs {METHOD_LABELS.get(b, b)}"


def critical_sizes(
    analysis_laws: dict, boot_laws: dict, cells: pd.DataFrame, level: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows, curves, gaps = [], [], []
    for task in sorted(cells["task"].unique()):
        task_cells = cells[cells["task"] == task]
        methods = [m for m in METHOD_ORDER if m in set(task_cells["method"])]
        for factor in CRITICAL_FACTORS:
            for a, b in method_pairs(methods):
                key_a, key_b = (task, a, factor, "multiplicative"), (task, b, factor, "multiplicative")
                if key_a not in analysis_laws or key_b not in analysis_laws:
                    continue
                law_a, law_b = analysis_laws[key_a], analysis_laws[key_b]
                h, gamma = constant_gap(law_a, law_b)
                gaps.append(
                    {
                        "task": task,
                        "factor": factor,
                        "pair": pair_label(a, b),
                        "method_a": a,
                        "method_b": b,
                        "H": h,
                        "gamma": gamma,
                    }
                )
                pair_cells = task_cells[task_cells["method"].isin([a, b])]
                d_obs = pair_cells["d"]
                d_min = float(d_obs.min()) / 10**CRITICAL_SEARCH_DECADES
                d_max = float(d_obs.max()) * 10**CRITICAL_SEARCH_DECADES
                xs = np.sort(pair_cells.loc[pair_cells["factor"] == factor, "x"].unique())
                if xs.size == 0:
                    continue
                labels = (a, b)
                for x in xs:
                    cp = crossings(law_a, law_b, float(x), d_min, d_max, labels)
                    row = {
                        "task": task,
                        "factor": factor,
                        "pair": pair_label(a, b),
                        "method_a": a,
                        "method_b": b,
                        "x": float(x),
                        "critical": cp.first,
                        "status": cp.status,
                        "n_roots": len(cp.roots),
                        "roots": list(cp.roots),
                        "below": cp.regimes[0].better,
                        "above": cp.regimes[-1].better,
                        "search_min": d_min,
                        "search_max": d_max,
                        "observed_min": float(d_obs.min()),
                        "observed_max": float(d_obs.max()),
                        "constant_gap": constant_gap_size(h, gamma, x),
                        "low": math.nan,
                        "high": math.nan,
                        "frac_none": math.nan,
                    }
                    row["extrapolated"] = bool(
                        math.isfinite(cp.first)
                        and not (row["observed_min"] <= cp.first <= row["observed_max"])
                    )
                    samples_a = boot_laws.get((task, a, factor), [])
                    samples_b = boot_laws.get((task, b, factor), [])
                    if samples_a and samples_b:
                        ci = crossing_ci(samples_a, samples_b, float(x), d_min, d_max, level)
                        row.update(low=ci.low, high=ci.high, frac_none=ci.frac_none)
                    rows.append(row)
                dense = np.geomspace(xs.min(), xs.max(), 25) if xs.size > 1 else xs
                for x in dense:
                    cp = crossings(law_a, law_b, float(x), d_min, d_max, labels)
                    curves.append(
                        {
                            "task": task,
                            "factor": factor,
                            "pair": pair_label(a, b),
                            "x": float(x),
                            "critical": cp.first,
                        }
                    )
    critical = pd.DataFrame(rows)
    return critical, pd.DataFrame(curves), pd.DataFrame(gaps)
