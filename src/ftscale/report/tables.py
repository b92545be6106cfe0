"""The paper's tables from an ``Analysis``: Table 4 (parameters with CIs), 2/6 (held-out errors), 5, 7, Fig. 5 data.

Each function returns a display DataFrame (strings, one row per parameter or setting); ``to_markdown`` renders any
of them without extra dependencies, so the HTML and Markdown reports show the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ftscale.analysis import (
    FACTOR_BY_NAME,
    MAX_BUDGET_BOUND_SHARE,
    METHOD_LABELS,
    MIN_TOKENS_PER_PARAM,
    Analysis,
)
from ftscale.laws.critical import draw_predictions, predict_at


def fmt_number(value: float, digits: int = 3) -> str:
    """Compact number: 3 significant digits, scientific outside [1e-3, 1e4); '–' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    value = float(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def fmt_ci(estimate: float, low: float, high: float) -> str:
    if not (isinstance(low, float) and math.isfinite(low)):
        return fmt_number(estimate)
    return f"{fmt_number(estimate)} [{fmt_number(low)}, {fmt_number(high)}]"


def _method_columns(analysis: Analysis, task: str) -> list[str]:
    return analysis.methods(task)


def table4_layout(analysis: Analysis, task: str) -> list[tuple[str, str, str | None]]:
    """The rows of :func:`table4` in order, as (label, parameter, factor): A and α per fitted factor, then the
    shared E and β (factor ``None``)."""
    fits = analysis.fits[(analysis.fits["task"] == task) & (analysis.fits["form"] == "multiplicative")]
    rows: list[tuple[str, str, str | None]] = []
    for factor in [f for f in FACTOR_BY_NAME if f in set(fits["factor"])]:
        symbol = FACTOR_BY_NAME[factor].symbol
        rows += [(f"A_{symbol}", "A", factor), (f"α_{symbol}", "alpha", factor)]
    return [*rows, ("E", "E", None), ("β", "beta", None)]


def table4(analysis: Analysis, task: str) -> pd.DataFrame:
    """Paper Table 4: A and α per factor, shared E and β, each 'estimate [low, high]' (bootstrap percentile)."""
    fits = analysis.fits[(analysis.fits["task"] == task) & (analysis.fits["form"] == "multiplicative")]
    ci = analysis.param_ci[analysis.param_ci["task"] == task]
    rows: dict[str, dict[str, str]] = {}

    def cell(method: str, factor: str, param: str) -> str | None:
        row = fits[(fits["method"] == method) & (fits["factor"] == factor)]
        if row.empty:
            return None
        estimate = float(row[param].iloc[0])
        hit = ci[(ci["method"] == method) & (ci["factor"] == factor) & (ci["param"] == param)]
        if hit.empty:
            return fmt_number(estimate)
        return fmt_ci(estimate, float(hit["low"].iloc[0]), float(hit["high"].iloc[0]))

    methods = _method_columns(analysis, task)
    for label, param, factor in table4_layout(analysis, task):
        values = {}
        for m in methods:
            where = factor
            if where is None:  # E and β are shared: read them from a stage-1 factor of the method
                stage1 = fits[(fits["method"] == m)]
                where = (
                    str(stage1.sort_values("stage1", ascending=False)["factor"].iloc[0])
                    if len(stage1)
                    else ""
                )
            values[METHOD_LABELS.get(m, m)] = cell(m, where, param) or "–"
        rows[label] = values
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "param"
    return table.reset_index()


def table_errors(analysis: Analysis, task: str) -> pd.DataFrame:
    """Paper Tables 2/6: held-out MAD (Δh) of the multiplicative and additive laws per factor and method, and the
    noise floor (mean over methods of :func:`ftscale.laws.evaluation.noise_floor` of the held-out cells)."""
    fits = analysis.fits[analysis.fits["task"] == task]
    methods = _method_columns(analysis, task)
    forms = [f for f in ("multiplicative", "additive") if f in set(fits["form"])]
    rows = []
    for factor in [f for f in FACTOR_BY_NAME if f in set(fits["factor"])]:
        row: dict[str, str] = {"factor": FACTOR_BY_NAME[factor].label}
        for form in forms:
            values = []
            for m in methods:
                hit = fits[(fits["factor"] == factor) & (fits["method"] == m) & (fits["form"] == form)]
                value = float(hit["delta_h"].iloc[0]) if len(hit) else math.nan
                row[f"{form[:4]}. {METHOD_LABELS.get(m, m)} Δh"] = fmt_number(value, 2)
                if math.isfinite(value):
                    values.append(value)
            row[f"{form[:4]}. avg"] = fmt_number(sum(values) / len(values), 2) if values else "–"
        floors = fits.loc[fits["factor"] == factor, "delta_h_floor"].dropna()
        # the Δh of an exact law against these seed means (the same cells for every form)
        row["noise floor"] = fmt_number(float(floors.mean()), 2) if len(floors) else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def _error_part(err: np.ndarray) -> str:
    """``MAD (mean signed error)`` of some held-out cells, or – when there are none."""
    if not len(err):
        return "–"
    return f"{fmt_number(float(np.mean(np.abs(err))), 2)} ({float(np.mean(err)):+.2g})"


def table_heldout_breakdown(
    analysis: Analysis, task: str, factors: Sequence[str] | None = None
) -> pd.DataFrame:
    """Where the multiplicative law's held-out error lies, per factor and method.

    A setting's held-out cells are the largest finetuning subset at every X plus every subset at the held-out X;
    the table splits Δh between the two and gives the signed mean error (law − measured mean loss; negative: the
    law promised a lower loss than the runs reached). ``factors`` restricts and orders the factors shown.
    """
    cells = analysis.cells
    rows: list[dict[str, str]] = []
    if not len(cells):
        return pd.DataFrame(rows)
    for factor in factors if factors is not None else list(FACTOR_BY_NAME):
        for method in _method_columns(analysis, task):
            law = analysis.laws.get((task, method, factor, "multiplicative"))
            if law is None:
                continue
            mine = cells[(cells["task"] == task) & (cells["method"] == method) & (cells["factor"] == factor)]
            held = mine[mine["heldout"].astype(bool)]
            if not len(held):
                continue
            predicted = np.asarray(law.predict(held[["x", "d"]].to_numpy(dtype=float)), dtype=float)
            err = predicted - held["loss"].to_numpy(dtype=float)
            at_max = (held["d"] == mine["d"].max()).to_numpy()
            rows.append(
                {
                    "factor": FACTOR_BY_NAME[factor].label,
                    "method": METHOD_LABELS.get(method, method),
                    "mult. Δh": fmt_number(float(np.mean(np.abs(err))), 2),
                    "largest D_f cells: MAD (mean error)": f"{_error_part(err[at_max])}, n={int(at_max.sum())}",
                    "held-out X, smaller D_f: MAD (mean error)": (
                        f"{_error_part(err[~at_max])}, n={int((~at_max).sum())}"
                    ),
                }
            )
    return pd.DataFrame(rows)


def table_fit_quality(analysis: Analysis, task: str) -> pd.DataFrame:
    """Δe, Δh and point counts of every fitted law (traceability: how many cells and runs each law rests on)."""
    fits = analysis.fits[analysis.fits["task"] == task]
    out = pd.DataFrame(
        {
            "method": fits["method"].map(lambda m: METHOD_LABELS.get(m, m)),
            "factor": fits["factor"],
            "form": fits["form"],
            "Δe": fits["delta_e"].map(lambda v: fmt_number(v, 2)),
            "Δh": fits["delta_h"].map(lambda v: fmt_number(v, 2)),
            "Δh noise floor": fits["delta_h_floor"].map(lambda v: fmt_number(v, 2)),
            "lack-of-fit p": fits["lack_of_fit_p"].map(lambda v: "–" if v != v else f"{v:.2g}"),
            "fit cells": fits["n_fit"],
            "held-out cells": fits["n_heldout"],
            "runs": fits["runs"],
            "converged": fits["converged"],
        }
    )
    return out.reset_index(drop=True)


def table_decisions(analysis: Analysis, task: str) -> pd.DataFrame:
    """Decision uncertainty: at each base model and finetuning-data size of the study, the method with the lowest
    predicted loss (model-size laws), the runner-up, and the share of bootstrap draws in which the best beats it."""
    cells = analysis.cells[(analysis.cells["task"] == task) & (analysis.cells["factor"] == "model_size")]
    methods = [
        m for m in analysis.methods(task) if (task, m, "model_size", "multiplicative") in analysis.laws
    ]
    if len(methods) < 2 or cells.empty:
        return pd.DataFrame()
    d_values = np.array(sorted(cells["d"].unique()))
    rows = []
    for x in sorted(cells["x"].unique()):
        # each method's law and bootstrap laws at every D_f of this X, computed once (not per cell)
        point = {
            m: predict_at(analysis.laws[(task, m, "model_size", "multiplicative")], x, d_values)
            for m in methods
        }
        draws = {
            m: draw_predictions(analysis.bootstrap_laws.get((task, m, "model_size"), []), x, d_values)
            for m in methods
        }
        for k, d in enumerate(d_values):
            best, runner = sorted(methods, key=lambda m: point[m][k])[:2]
            n = min(
                len(draws[best]), len(draws[runner])
            )  # draw i of one method paired with draw i of the other
            p = float(np.mean(draws[best][:n, k] < draws[runner][:n, k])) if n else math.nan
            rows.append(
                {
                    "X": fmt_number(x),
                    "D_f": fmt_number(d),
                    "best": METHOD_LABELS.get(best, best),
                    "runner-up": METHOD_LABELS.get(runner, runner),
                    "margin (nats)": fmt_number(point[runner][k] - point[best][k], 2),
                    "P(best beats runner-up)": "–" if not n else f"{p:.2f}",
                }
            )
    return pd.DataFrame(rows)


def table5(analysis: Analysis, task: str) -> pd.DataFrame:
    """Paper Table 5: H and γ of the constant-gap critical size D^c = H·X^γ (Eq. 3) per method pair."""
    gaps = analysis.table5[analysis.table5["task"] == task] if len(analysis.table5) else analysis.table5
    rows: dict[str, dict[str, str]] = {}
    for factor in [f for f in FACTOR_BY_NAME if len(gaps) and f in set(gaps["factor"])]:
        sub = gaps[gaps["factor"] == factor]
        label = FACTOR_BY_NAME[factor].label
        rows[f"H ({label})"] = {r.pair: fmt_number(r.H, 2) for r in sub.itertuples()}
        rows[f"γ ({label})"] = {r.pair: fmt_number(r.gamma, 2) for r in sub.itertuples()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "coefficient"
    return table.reset_index()


def table7(analysis: Analysis, task: str) -> pd.DataFrame:
    """Paper Table 7: Pearson r of test PPL with BLEU / ROUGE-L per factor (‡ marks p < 0.01)."""
    corr = analysis.table7[analysis.table7["task"] == task] if len(analysis.table7) else analysis.table7
    rows = []
    for (factor, metric), sub in corr.groupby(["factor", "metric"], sort=False) if len(corr) else []:
        row = {"factor": FACTOR_BY_NAME[factor].label, "metric": metric}
        for r in sub.itertuples():
            mark = "‡" if r.p < 0.01 else ""
            row[METHOD_LABELS.get(r.method, r.method)] = f"{r.r:.3f}{mark} (n={r.n})"
        rows.append(row)
    return pd.DataFrame(rows)


def table_critical(analysis: Analysis, task: str) -> pd.DataFrame:
    """Fig. 5 as numbers: first critical D_f per X with its bootstrap CI, or 'no crossing in [a, b]'."""
    crit = (
        analysis.critical[analysis.critical["task"] == task] if len(analysis.critical) else analysis.critical
    )
    rows = []
    for r in crit.itertuples() if len(crit) else []:
        if r.status == "none":
            value = f"no crossing in [{fmt_number(r.search_min)}, {fmt_number(r.search_max)}]"
            better = METHOD_LABELS.get(r.below, r.below)
            value += f"; {better} better throughout"
        else:
            value = fmt_ci(r.critical, r.low, r.high)
            value += (
                f"; {METHOD_LABELS.get(r.below, r.below)} better below, "
                f"{METHOD_LABELS.get(r.above, r.above)} above"
            )
            if r.n_roots > 1:
                value += f" ({r.n_roots} crossings)"
            if r.extrapolated:
                value += " (outside observed D_f)"
        crossing_rate = "–" if not math.isfinite(r.frac_none) else f"{1 - r.frac_none:.0%}"
        rows.append(
            {
                "factor": FACTOR_BY_NAME[r.factor].label,
                "pair": r.pair,
                "X": fmt_number(r.x),
                "critical D_f [CI]": value,
                "resamples crossing": crossing_rate,
                "Eq. 3 H·X^γ": fmt_number(r.constant_gap),
            }
        )
    return pd.DataFrame(rows)


def table_single(analysis: Analysis, task: str) -> pd.DataFrame:
    """Fig. 1 as numbers: L(D_f) = A·D_f^-β + E per base model."""
    single = analysis.single_fits
    if single.empty:
        return single
    sub = single[single["task"] == task]
    return pd.DataFrame(
        {
            "method": sub["method"].map(lambda m: METHOD_LABELS.get(m, m)),
            "model": sub["model_size"],
            "A": sub["A"].map(fmt_number),
            "β": sub["beta"].map(fmt_number),
            "E": sub["E"].map(fmt_number),
            "Δe": sub["delta_e"].map(lambda v: fmt_number(v, 2)),
            "Δh": sub["delta_h"].map(lambda v: fmt_number(v, 2)),
            "fit / held-out cells": [
                f"{a} / {b}" for a, b in zip(sub["n_fit"], sub["n_heldout"], strict=True)
            ],
        }
    ).reset_index(drop=True)


def table_findings(analysis: Analysis, task: str) -> pd.DataFrame:
    rows = [
        {"finding": f.statement, "scope": f.scope, "verdict": f.verdict, "numbers (95% CI)": f.detail}
        for f in analysis.findings
        if f.task == task
    ]
    return pd.DataFrame(rows)


def regime_verdict(analysis: Analysis, task: str) -> str:
    """One sentence: whether the task's runs converged and its base models were trained, with the numbers."""
    regime = analysis.regime.get(task)
    if regime is None:
        return "Regime: unknown (no runs)."
    parts = []
    share = regime.budget_bound_share
    if share is None:
        parts.append("budget-bound share unknown (the results do not record best_step and steps_run)")
    else:
        parts.append(
            f"{share:.0%} of {regime.runs} finished runs were budget-bound (best dev loss at their last evaluation; "
            f"in regime: ≤ {MAX_BUDGET_BOUND_SHARE:.0%})"
        )
    ratios = [m.tokens_per_param for m in regime.models]
    if regime.models and all(r is not None for r in ratios):
        parts.append(
            f"base models read {fmt_number(min(ratios))}–{fmt_number(max(ratios))} pretraining tokens per "
            f"parameter (in regime: ≥ {MIN_TOKENS_PER_PARAM:g})"
        )
    else:
        parts.append("tokens per parameter unknown for some base models")
    ordered = regime.ladder_ordered
    parts.append(
        "ladder order unknown (no validation losses)"
        if ordered is None
        else ("ladder ordered by validation loss" if ordered else "ladder NOT ordered by validation loss")
    )
    if regime.warnings:
        verdict = "Out of regime: read the fits below as a description of this budget, not of finetuning"
    elif share is None or ordered is None or None in ratios or not ratios:
        verdict = "Regime partly unknown"
    else:
        verdict = "In regime"
    return f"{verdict}. " + "; ".join(parts) + "."


def table_regime_models(analysis: Analysis, task: str) -> pd.DataFrame:
    """The base models: parameters, pretraining tokens, tokens per parameter and validation loss."""
    regime = analysis.regime.get(task)
    rows = [
        {
            "model": m.name,
            "non-embedding params": fmt_number(m.non_embedding_params)
            if m.non_embedding_params
            else "unknown",
            "total params": fmt_number(m.total_params) if m.total_params else "unknown",
            "pretraining tokens": fmt_number(m.pretrain_tokens) if m.pretrain_tokens else "unknown",
            "tokens/param": fmt_number(m.tokens_per_param) if m.tokens_per_param else "unknown",
            "val loss": fmt_number(m.val_loss, 4) if m.val_loss is not None else "–",
        }
        for m in (regime.models if regime else [])
    ]
    return pd.DataFrame(rows)


def table_budget_bound(analysis: Analysis, task: str) -> pd.DataFrame:
    """Budget-bound runs per method (rows) and D_f (columns), as 'bound/finished'."""
    regime = analysis.regime.get(task)
    if regime is None or not regime.budget_bound:
        return pd.DataFrame()
    sizes = sorted({c.ft_examples for c in regime.budget_bound})
    rows = []
    for method, share in regime.method_shares().items():
        row: dict[str, str] = {"method": METHOD_LABELS.get(method, method)}
        cells = {c.ft_examples: c for c in regime.budget_bound if c.method == method}
        for n in sizes:
            row[f"D_f={n:,}"] = f"{cells[n].budget_bound}/{cells[n].runs}" if n in cells else "–"
        row["share"] = f"{share:.0%}"
        rows.append(row)
    return pd.DataFrame(rows)


def table_runs(analysis: Analysis) -> pd.DataFrame:
    counts = analysis.run_counts.pivot_table(
        index=["task", "method"], columns="status", values="n", aggfunc="sum", fill_value=0
    )
    return counts.reset_index()


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown table (no tabulate dependency)."""
    if table is None or table.empty:
        return "_(none)_\n"
    columns = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"
