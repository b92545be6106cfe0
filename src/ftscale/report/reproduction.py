"""Regenerate (or check) the reproduction write-up's tables from committed results CSVs, beside the paper's numbers.

``python -m ftscale.report.reproduction RESULTS_DIR --doc docs/REPRODUCTION.md [--check] [--plots DIR]``

``RESULTS_DIR/manifest.json`` names one results CSV per task (``ftscale study export``) and the paper task it is
compared with::

    {"seed": 0, "bootstrap": 100,
     "tasks": {"en-de": {"file": "multi30k-en-de.csv", "label": "Multi30k En→De", "paper": "en-de",
                         "previous": "v1/multi30k-en-de.csv"}}}

``previous`` (optional) names an earlier study of the same task; it is analysed the same way and set beside the
current results in the ``before-after-<key>`` block and the ``before-after-summary`` block.

Each file is analysed once (fixed seed and bootstrap count, so the output is deterministic on one machine) and
rendered into Markdown blocks delimited in the doc by ``<!-- BEGIN generated:NAME -->`` / ``<!-- END
generated:NAME -->``. Text outside the blocks is never touched. ``--check`` compares instead of writing: numbers
inside the blocks are compared with a relative tolerance (``docblocks.REL_TOL``) or one unit of their last printed digit,
whichever is larger, and the text between numbers exactly (whitespace aside), so last-digit differences of the
fits across machines (BLAS, libm) do not count as drift while any changed result, verdict or row does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ftscale import paper
from ftscale.analysis import (
    FACTOR_BY_NAME,
    METHOD_LABELS,
    Analysis,
    Finding,
    analyse,
    budget_bound_flags,
    load_results,
)
from ftscale.errors import DataError, UserError
from ftscale.laws.bootstrap import percentile_ci
from ftscale.laws.evaluation import noise_floor
from ftscale.report import tables
from ftscale.report.docblocks import check_blocks, parse_blocks, rewrite_blocks

MANIFEST_NAME = "manifest.json"
# Bootstrap resamples per task: about 40 s for a whole analysis of a small-preset study (5 sizes, 5 pretraining
# checkpoints × 2 kinds, 5 PET sizes, 6 D_f, 3 seeds) on a loaded 2-core CPU.
DEFAULT_BOOTSTRAP = 100
DEFAULT_SEED = 0
PAPER_FACTORS_IN_OURS = (
    "model_size",
    "pretrain_tokens",
    "pet_size",
)  # the annealed factor has no paper value

_LABEL_TO_METHOD = {label: method for method, label in METHOD_LABELS.items()}
_LABEL_TO_FACTOR = {spec.label: name for name, spec in FACTOR_BY_NAME.items()}


# ----- manifest ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEntry:
    """One task of the write-up: its results file, display label, paper task id and the CSV's task name."""

    key: str
    file: str
    label: str
    paper: str
    task: str | None = None  # the ``task`` column value; default: the file's only task
    previous: str | None = None  # an earlier study's results of the same task, for the before → after block


@dataclass(frozen=True)
class Manifest:
    tasks: tuple[TaskEntry, ...]
    seed: int = DEFAULT_SEED
    bootstrap: int = DEFAULT_BOOTSTRAP


def load_manifest(path: Path) -> Manifest:
    """Read ``manifest.json``; every mistake is a one-line ``DataError`` naming the field."""
    if not path.parent.is_dir():
        raise DataError(f"{path.parent}: not a directory; pass the directory that holds {path.name}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: no manifest; create it with the tasks' results files (see module docs)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the manifest ({exc.strerror}); make it a readable JSON file"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict) or not raw["tasks"]:
        raise DataError(
            f"{path}: expected an object with a non-empty 'tasks' mapping of key -> {{file, label, paper}}"
        )
    entries = []
    for key, spec in raw["tasks"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise DataError(
                f"{path}: tasks.{key}: key must use letters, digits, '.', '_' or '-' (it names blocks)"
            )
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
            raise DataError(f"{path}: tasks.{key}.file: missing (the results CSV, relative to the manifest)")
        paper_task = spec.get("paper")
        if paper_task not in paper.PAPER_TASKS:
            raise DataError(
                f"{path}: tasks.{key}.paper: {paper_task!r} is not one of {', '.join(paper.PAPER_TASKS)}"
            )
        previous = spec.get("previous")
        if previous is not None and not isinstance(previous, str):
            raise DataError(
                f"{path}: tasks.{key}.previous: expected the earlier results CSV's path, relative to the manifest"
            )
        entries.append(
            TaskEntry(key, spec["file"], str(spec.get("label", key)), paper_task, spec.get("task"), previous)
        )
    seed, bootstrap = raw.get("seed", DEFAULT_SEED), raw.get("bootstrap", DEFAULT_BOOTSTRAP)
    if any(type(value) is not int for value in (seed, bootstrap)) or bootstrap < 0:
        raise DataError(f"{path}: 'seed' and 'bootstrap' must be integers (bootstrap ≥ 0)")
    return Manifest(tuple(entries), seed=seed, bootstrap=bootstrap)


# ----- rendering ---------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else tables.fmt_number(float(value), digits)


def _method_rows(analysis: Analysis, task: str) -> list[str]:
    return analysis.methods(task)


def table4_block(analysis: Analysis, task: str, paper_task: str) -> str:
    """Our Table 4 (estimate [95 % CI]) with the paper's value beside each cell."""
    ours = tables.table4(analysis, task)
    methods = _method_rows(analysis, task)
    rows = []
    layout = tables.table4_layout(analysis, task)
    for (label, param, factor), record in zip(layout, ours.to_dict("records"), strict=True):
        row = {"param": label}
        for method in methods:
            name = METHOD_LABELS.get(method, method)
            row[f"{name} (ours)"] = record.get(name, "–")
            row[f"{name} (paper)"] = paper.fmt_paper(paper.table4_value(paper_task, method, factor, param))
        rows.append(row)
    cfg = analysis.config
    caption = (
        f"Ours: estimate [{cfg['level']:.0%} bootstrap percentile CI, {cfg['n_bootstrap']} resamples, seed "
        f"{cfg['seed']}]; paper: Table 4 ({paper.TASK_LABELS[paper_task]}, no CIs). A_pa, α_pa: pretraining "
        "data with annealed checkpoints (no paper counterpart).\n\n"
    )
    return caption + tables.to_markdown(pd.DataFrame(rows))


def _delta_h(analysis: Analysis, task: str, method: str, factor: str, form: str) -> float:
    fits = analysis.fits
    hit = fits[
        (fits["task"] == task)
        & (fits["method"] == method)
        & (fits["factor"] == factor)
        & (fits["form"] == form)
    ]
    return float(hit["delta_h"].iloc[0]) if len(hit) else math.nan


def heldout_block(analysis: Analysis, task: str, paper_task: str) -> str:
    """Held-out MAD Δh of the multiplicative and additive laws per factor × method, beside Tables 2/6."""
    fits = analysis.fits[analysis.fits["task"] == task]
    rows = []
    for factor in [f for f in FACTOR_BY_NAME if f in set(fits["factor"])]:
        means: dict[str, list[float]] = {"multiplicative": [], "additive": []}
        for method in _method_rows(analysis, task):
            if not ((fits["factor"] == factor) & (fits["method"] == method)).any():
                continue
            row = {"factor": FACTOR_BY_NAME[factor].label, "method": METHOD_LABELS.get(method, method)}
            for form in ("multiplicative", "additive"):
                value = _delta_h(analysis, task, method, factor, form)
                if math.isfinite(value):
                    means[form].append(value)
                row[f"{form[:4]}. Δh (ours)"] = tables.fmt_number(value, 2)
            for form in ("multiplicative", "additive"):
                row[f"{form[:4]}. Δh (paper)"] = paper.fmt_paper(
                    paper.heldout_value(paper_task, factor, form, method)
                )
            rows.append(row)
        avg = {"factor": FACTOR_BY_NAME[factor].label, "method": "avg"}
        for form in ("multiplicative", "additive"):
            avg[f"{form[:4]}. Δh (ours)"] = (
                tables.fmt_number(float(np.mean(means[form])), 2) if means[form] else "–"
            )
        for form in ("multiplicative", "additive"):
            avg[f"{form[:4]}. Δh (paper)"] = paper.fmt_paper(
                paper.heldout_value(paper_task, factor, form, "avg")
            )
        rows.append(avg)
    return tables.to_markdown(pd.DataFrame(rows))


def _heldout_settings(analysis: Analysis, task: str) -> list[tuple[str, str, float, float]]:
    """(method, factor, multiplicative Δh, additive Δh) of every setting of the paper's factors where both laws
    have a held-out error."""
    settings = []
    for method in _method_rows(analysis, task):
        for factor in PAPER_FACTORS_IN_OURS:
            mult = _delta_h(analysis, task, method, factor, "multiplicative")
            add = _delta_h(analysis, task, method, factor, "additive")
            if math.isfinite(mult) and math.isfinite(add):
                settings.append((method, factor, mult, add))
    return settings


def heldout_summary_block(entries: Iterable[tuple[Analysis, str, str]]) -> str:
    """Mean Δh of both laws over every (task, method, factor) setting present, beside the paper's 0.0079 / 0.0083."""
    entries = list(entries)
    ours: dict[str, list[float]] = {"multiplicative": [], "additive": []}
    theirs: dict[str, list[float]] = {"multiplicative": [], "additive": []}
    ours_wins = theirs_wins = n_theirs = 0
    for analysis, task, paper_task in entries:
        for method, factor, mult, add in _heldout_settings(analysis, task):
            ours["multiplicative"].append(mult)
            ours["additive"].append(add)
            ours_wins += mult < add
            p_mult = paper.heldout_value(paper_task, factor, "multiplicative", method)
            p_add = paper.heldout_value(paper_task, factor, "additive", method)
            if p_mult is not None and p_add is not None:
                theirs["multiplicative"].append(p_mult)
                theirs["additive"].append(p_add)
                theirs_wins += p_mult < p_add
                n_theirs += 1
    rows = []
    for form in ("multiplicative", "additive"):
        rows.append(
            {
                "law": form,
                "ours: mean Δh": _num(float(np.mean(ours[form]))) if ours[form] else "–",
                "paper: mean over the same settings": _num(float(np.mean(theirs[form])))
                if theirs[form]
                else "–",
                "paper: mean of the Avg cells (§2.9)": paper.fmt_paper(paper.HELDOUT_MEAN[form]),
            }
        )
    n_ours = len(ours["multiplicative"])
    text = tables.to_markdown(pd.DataFrame(rows))
    text += (
        f"\nSettings (task × method × factor, annealed factor excluded): ours {n_ours}, multiplicative lower in "
        f"{ours_wins}; paper, same settings: {n_theirs}, multiplicative lower in {theirs_wins}.\n"
    )
    noise = _heldout_noise(entries)
    if noise is not None:
        se, n_cells = noise
        text += (
            f"\nNoise floor: over our {n_cells} held-out cells, the standard error of a cell's mean loss over seeds "
            f"(std / √n) averages {_num(se)} nats; a law that predicted every cell's true mean exactly would still "
            f"score Δh ≈ {_num(math.sqrt(2 / math.pi) * se)} (the mean absolute value of that error).\n"
        )
    return text


def heldout_breakdown_block(entries: Iterable[tuple[Analysis, str, str]]) -> str:
    """Where the multiplicative law's held-out error lies, over all tasks (``tables.table_heldout_breakdown``)."""
    frames = []
    for analysis, task, _ in entries:
        table = tables.table_heldout_breakdown(analysis, task, PAPER_FACTORS_IN_OURS)
        if len(table):
            frames.append(table.assign(task=task)[["task", *table.columns]])
    if not frames:
        return "_No held-out cells._\n"
    text = (
        "Held-out cells of each setting: the largest finetuning subset at every X, and every subset at the held-out "
        "X. Error = law − measured mean loss over seeds (nats); negative means the law promised a lower loss.\n\n"
    )
    return text + tables.to_markdown(pd.concat(frames, ignore_index=True))


def _heldout_noise(entries: Iterable[tuple[Analysis, str, str]]) -> tuple[float, int] | None:
    """Mean standard error (over seeds) of the held-out cells' mean loss, and the number of such cells."""
    errors: list[float] = []
    for analysis, task, _ in entries:
        cells = analysis.cells
        if not len(cells):
            continue
        held = cells[(cells["task"] == task) & cells["heldout"].astype(bool) & (cells["n_seeds"] > 1)]
        held = held[held["factor"].isin(PAPER_FACTORS_IN_OURS)]
        errors += list(held["loss_std"] / np.sqrt(held["n_seeds"]))
    return (float(np.mean(errors)), len(errors)) if errors else None


def critical_block(analysis: Analysis, task: str, paper_task: str) -> str:
    """Eq. 3 (H, γ) beside Table 5, then our full-law critical sizes with CIs (Fig. 5 as numbers; none in paper)."""
    gaps = analysis.table5[analysis.table5["task"] == task] if len(analysis.table5) else analysis.table5
    rows = []
    for record in gaps.to_dict("records") if len(gaps) else []:
        factor, pair = record["factor"], record["pair"]
        rows.append(
            {
                "factor": FACTOR_BY_NAME[factor].label,
                "pair": pair,
                "H (ours)": tables.fmt_number(record["H"], 2),
                "H (paper)": paper.fmt_paper(paper.table5_value(paper_task, factor, pair, "H")),
                "γ (ours)": tables.fmt_number(record["gamma"], 2),
                "γ (paper)": paper.fmt_paper(paper.table5_value(paper_task, factor, pair, "gamma")),
            }
        )
    text = "Eq. 3, D^c = H·X^γ (constant-gap approximation) beside Table 5:\n\n"
    text += tables.to_markdown(pd.DataFrame(rows))
    text += "\nCritical finetuning data size where the full laws cross (bootstrap CI; none in the paper as numbers):\n\n"
    return text + tables.to_markdown(tables.table_critical(analysis, task))


def table7_block(analysis: Analysis, task: str, paper_task: str) -> str:
    """Our Pearson r of test PPL with BLEU / ROUGE-L beside Table 7 (PPL with BLEURT / RougeL)."""
    ours = tables.table7(analysis, task)
    methods = _method_rows(analysis, task)
    rows = []
    for record in ours.to_dict("records"):
        factor = _LABEL_TO_FACTOR.get(record["factor"], "")
        row = {"factor": record["factor"], "metric (ours)": record["metric"]}
        for method in methods:
            name = METHOD_LABELS.get(method, method)
            cell = paper.table7_value(paper_task, factor, method)
            row[f"{name} (ours)"] = record.get(name) if isinstance(record.get(name), str) else "–"
            row[f"{name} (paper)"] = "–" if cell is None else str(cell)
        row["metric (paper)"] = paper.TASK_METRIC[paper_task]
        rows.append(row)
    caption = "‡: p < 0.01. Negative r: lower perplexity goes with better generation.\n\n"
    return caption + tables.to_markdown(pd.DataFrame(rows))


def _paper_side(finding: Finding, paper_task: str) -> str:
    """What the paper's Table 4 says on the same comparison (the paper gives no CIs)."""
    methods = [_LABEL_TO_METHOD[w] for w in re.split(r"[ ,]+", finding.scope) if w in _LABEL_TO_METHOD]
    column = paper.TABLE4[paper_task]

    def holds(a_name: str, a: float | None, b_name: str, b: float | None, strict: bool = True) -> str:
        if a is None or b is None:
            return "–"
        ok = a > b if strict else a >= b
        return f"{'holds' if ok else 'fails'}: {a_name} {paper.fmt_paper(a)} vs {b_name} {paper.fmt_paper(b)}"

    if not methods:
        return "–"
    first = column[methods[0]]
    if finding.key == "alpha_m_gt_alpha_p":
        return holds("α_m", first["alpha_m"], "α_p", first["alpha_p"])
    if finding.key == "alpha_t_small":
        value = first["alpha_t"]
        return (
            "–"
            if value is None
            else f"{'holds' if abs(value) < 0.01 else 'fails'}: α_t {paper.fmt_paper(value)}"
        )
    if finding.key in ("beta_fmt_gt_beta_pet", "beta_lora_ge_beta_prompt") and len(methods) == 2:
        labels = [f"β_{METHOD_LABELS[m]}" for m in methods]
        strict = finding.key == "beta_fmt_gt_beta_pet"
        return holds(labels[0], first["beta"], labels[1], column[methods[1]]["beta"], strict)
    if finding.key == "pet_relies_on_base":
        symbol = "p" if FACTOR_BY_NAME["pretrain_tokens"].label in finding.scope else "m"
        return holds(f"α_{symbol}", first[f"alpha_{symbol}"], "β", first["beta"])
    if finding.key == "pet_zero_shot":
        return "holds (Fig. 6, no numbers)" if paper_task != "sum" else "– (not studied)"
    return "–"


def findings_block(analysis: Analysis, task: str, paper_task: str) -> str:
    """The findings check (confirms / refutes / cannot tell, with CIs) beside the paper's Table 4 values."""
    ours = tables.table_findings(analysis, task)
    if ours.empty:
        return tables.to_markdown(ours)
    sides = [_paper_side(f, paper_task) for f in analysis.findings if f.task == task]
    return tables.to_markdown(ours.assign(**{"paper (Table 4)": sides}))


def _ci(analysis: Analysis, task: str, method: str, factor: str, param: str) -> str:
    ci = analysis.param_ci
    hit = ci[
        (ci["task"] == task) & (ci["method"] == method) & (ci["factor"] == factor) & (ci["param"] == param)
    ]
    if hit.empty:
        fits = analysis.fits
        row = fits[
            (fits["task"] == task)
            & (fits["method"] == method)
            & (fits["factor"] == factor)
            & (fits["form"] == "multiplicative")
        ]
        return tables.fmt_number(float(row[param].iloc[0])) if len(row) else "–"
    return tables.fmt_ci(
        float(hit["estimate"].iloc[0]), float(hit["low"].iloc[0]), float(hit["high"].iloc[0])
    )


def annealed_block(analysis: Analysis, task: str, paper_task: str) -> str:
    """α_p fitted on intermediate checkpoints vs on annealed ones (the analysis' annealed factor), beside the paper."""
    factors = set(analysis.fits.loc[analysis.fits["task"] == task, "factor"])
    if "pretrain_tokens_annealed" not in factors:
        return "_No annealed checkpoints in these results (checkpoint_kind has no 'annealed' runs)._\n"
    level = analysis.config["level"]
    rows = []
    for method in _method_rows(analysis, task):
        row = {"method": METHOD_LABELS.get(method, method)}
        row["α_p intermediate (ours)"] = _ci(analysis, task, method, "pretrain_tokens", "alpha")
        row["α_p annealed (ours)"] = _ci(analysis, task, method, "pretrain_tokens_annealed", "alpha")
        inter = analysis.bootstrap_laws.get((task, method, "pretrain_tokens"), [])
        annealed = analysis.bootstrap_laws.get((task, method, "pretrain_tokens_annealed"), [])
        n = min(len(inter), len(annealed))
        if n >= 2:
            # Both factors come from the same resample of a task-method's cells, so the draws pair up.
            diff = [annealed[i].params_["alpha"] - inter[i].params_["alpha"] for i in range(n)]
            low, high, _ = percentile_ci(diff, level)
            row["annealed − intermediate [CI]"] = f"[{tables.fmt_number(low)}, {tables.fmt_number(high)}]"
        else:
            row["annealed − intermediate [CI]"] = "–"
        for factor, name in (("pretrain_tokens", "intermediate"), ("pretrain_tokens_annealed", "annealed")):
            row[f"Δh {name}"] = tables.fmt_number(
                _delta_h(analysis, task, method, factor, "multiplicative"), 2
            )
        row["α_p (paper, intermediate)"] = paper.fmt_paper(
            paper.table4_value(paper_task, method, "pretrain_tokens", "alpha")
        )
        rows.append(row)
    caption = (
        "β and E are shared, fitted on the model-size and intermediate-checkpoint runs; the annealed factor's (A, α) "
        "is refitted with them fixed. The final checkpoint belongs to both variants.\n\n"
    )
    return caption + tables.to_markdown(pd.DataFrame(rows))


# ----- regime and before → after (need the results table, or two analyses) ----------------------------------


def _median_range(values: pd.Series) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "–"
    median, low, high = (tables.fmt_number(float(v)) for v in (values.median(), values.min(), values.max()))
    return median if low == high else f"{median} ({low}–{high})"


def _noise_floor(analysis: Analysis, task: str) -> tuple[float, float, int, float] | None:
    """Over a task's fitted cells with more than one seed: mean seed std of a cell's loss, mean standard error of
    its seed mean, the number of cells, and the Δh of an exact law (``noise_floor``). Cells shared by several
    factors (the default base) count once."""
    cells = analysis.cells
    if not len(cells):
        return None
    cells = cells[(cells["task"] == task) & (cells["n_seeds"] > 1)]
    cells = cells.drop_duplicates(subset=["method", "model_size", "x", "d", "loss"])
    if cells.empty:
        return None
    se = cells["loss_std"] / np.sqrt(cells["n_seeds"])
    floor = noise_floor(cells["loss_std"], cells["n_seeds"])
    return float(cells["loss_std"].mean()), float(se.mean()), len(cells), floor


def regime_block(analysis: Analysis, frame: pd.DataFrame, task: str) -> str:
    """Whether the task's study was in regime: its base models (tokens per parameter, validation losses of the
    ladder and of the pretraining-data base's checkpoints), each method × D_f cell's budget in epochs, where its
    runs stopped and how many were budget-bound, and the seed noise floor."""
    text = tables.regime_verdict(analysis, task) + "\n\nBase models (final checkpoints):\n\n"
    text += tables.to_markdown(tables.table_regime_models(analysis, task))
    runs = frame[(frame["method"] != "base") & (frame["status"] == "done")] if len(frame) else frame
    if "in_pretrain_tokens" in runs.columns and "base_val_loss" in runs.columns:
        ckpt = runs[runs["in_pretrain_tokens"].fillna(False).astype(bool)]
        if len(ckpt):
            losses = ckpt.groupby(["pretrain_tokens", "checkpoint_kind"])["base_val_loss"].first().unstack()
            kinds = ("intermediate", "annealed", "final")
            losses = losses[
                sorted(losses.columns, key=lambda k: kinds.index(k) if k in kinds else len(kinds))
            ]
            base = ", ".join(sorted(ckpt["model_size"].astype(str).unique()))
            rows = [
                {
                    "pretraining tokens": tables.fmt_number(float(tokens)),
                    **{
                        f"val loss, {kind}": tables.fmt_number(float(losses.loc[tokens, kind]), 4)
                        for kind in losses.columns
                        if pd.notna(losses.loc[tokens, kind])
                    },
                }
                for tokens in losses.index
            ]
            text += f"\nCheckpoints of the pretraining-data base ({base}):\n\n"
            text += tables.to_markdown(pd.DataFrame(rows).fillna("–"))
    if "epochs_run" in runs.columns and len(runs):
        rows = []
        for (method, n), group in runs.assign(_bound=budget_bound_flags(runs)).groupby(
            ["method", "ft_examples"], sort=True
        ):
            bound = group["_bound"].dropna()
            rows.append(
                {
                    "method": METHOD_LABELS.get(method, method),
                    "D_f": f"{int(n):,}",
                    "epochs allowed": _median_range(group["epochs_allowed"]),
                    "epochs run: median (range)": _median_range(group["epochs_run"]),
                    "best dev epoch": _median_range(group["best_epoch"]),
                    "budget-bound": f"{int(bound.sum())}/{len(bound)}" if len(bound) else "–",
                }
            )
        order = {m: i for i, m in enumerate(analysis.methods(task))}
        rows.sort(key=lambda r: (order.get(_LABEL_TO_METHOD.get(r["method"], r["method"]), 99),))
        text += (
            "\nFinetuning budget and where the runs stopped, per method and D_f (epochs are passes over the run's "
            "data; a run is budget-bound when its best dev loss came at its last evaluation):\n\n"
        )
        text += tables.to_markdown(pd.DataFrame(rows))
    else:
        text += "\nBudget-bound runs per method and D_f (these results do not record epochs):\n\n"
        text += tables.to_markdown(tables.table_budget_bound(analysis, task))
    noise = _noise_floor(analysis, task)
    if noise is not None:
        std, se, n_cells, floor = noise
        text += (
            f"\nNoise floor: over {n_cells} cells with several seeds, a cell's loss varies by {_num(std)} nats "
            f"(seed std) and its seed mean by {_num(se)} (standard error); a law that predicted every cell's true "
            f"mean exactly would score Δh ≈ {_num(floor)} against these means.\n"
        )
    return text


def _mean_delta_h(analysis: Analysis, task: str) -> tuple[float, float, int, int]:
    """Mean Δh of the multiplicative and additive laws over the paper's factors × methods, the settings counted
    and those where the multiplicative law is lower."""
    settings = _heldout_settings(analysis, task)
    if not settings:
        return math.nan, math.nan, 0, 0
    mult = [m for _, _, m, _ in settings]
    add = [a for _, _, _, a in settings]
    return (
        float(np.mean(mult)),
        float(np.mean(add)),
        len(settings),
        sum(m < a for m, a in zip(mult, add, strict=True)),
    )


def _tokens_per_param(analysis: Analysis, task: str) -> str:
    regime = analysis.regime.get(task)
    models = regime.models if regime else []
    total = [m.tokens_per_param for m in models]
    if models and all(r is not None for r in total):
        return f"{tables.fmt_number(min(total))}–{tables.fmt_number(max(total))}"  # type: ignore[type-var]
    non_emb = [m.tokens_per_non_embedding_param for m in models]
    if models and all(r is not None for r in non_emb):
        low, high = min(non_emb), max(non_emb)  # type: ignore[type-var]
        return (
            f"{tables.fmt_number(low)}–{tables.fmt_number(high)} per non-embedding parameter (the results do not "
            "record total parameters; fewer per total parameter)"
        )
    return "unknown"


def _budget_bound(analysis: Analysis, task: str) -> str:
    regime = analysis.regime.get(task)
    share = regime.budget_bound_share if regime else None
    if share is None:
        return "unknown"
    methods = ", ".join(f"{METHOD_LABELS.get(m, m)} {v:.0%}" for m, v in regime.method_shares().items())  # type: ignore[union-attr]
    return f"{share:.0%} of {regime.runs} ({methods})"  # type: ignore[union-attr]


def _beta_order(analysis: Analysis, task: str) -> str:
    betas = {}
    for method in _method_rows(analysis, task):
        law = analysis.laws.get((task, method, "model_size", "multiplicative"))
        if law is not None:
            betas[method] = float(law.params_["beta"])
    ranked = sorted(betas, key=lambda m: -betas[m])
    return " > ".join(f"{METHOD_LABELS.get(m, m)} {tables.fmt_number(betas[m], 2)}" for m in ranked) or "–"


def _critical_at_ends(analysis: Analysis, task: str, pair: str) -> str:
    """The model-size factor's critical D_f for one method pair at the smallest and the largest X."""
    crit = analysis.critical
    if not len(crit):
        return "–"
    rows = crit[(crit["task"] == task) & (crit["factor"] == "model_size") & (crit["pair"] == pair)]
    if rows.empty:
        return "–"
    rows = rows.sort_values("x")
    parts = []
    for r in (rows.iloc[0], rows.iloc[-1]):
        if r["status"] == "none":
            value = f"none in [{tables.fmt_number(r['search_min'])}, {tables.fmt_number(r['search_max'])}]"
        else:
            value = tables.fmt_ci(float(r["critical"]), float(r["low"]), float(r["high"]))
        parts.append(f"X={tables.fmt_number(float(r['x']))}: {value}")
    return "; ".join(parts)


def before_after_block(before: Analysis, after: Analysis, task: str) -> str:
    """The earlier study of a task beside the current one: regime, held-out error, exponents, the β order,
    critical sizes, and every finding whose verdict changed."""
    rows: list[dict[str, str]] = []

    def add(quantity: str, fn) -> None:  # type: ignore[no-untyped-def]
        rows.append({"quantity": quantity, "before": fn(before), "after": fn(after)})

    add("pretraining tokens per parameter", lambda a: _tokens_per_param(a, task))
    add("budget-bound runs", lambda a: _budget_bound(a, task))
    add(
        "ladder ordered by validation loss",
        lambda a: {True: "yes", False: "no", None: "unknown"}[
            a.regime[task].ladder_ordered if task in a.regime else None
        ],
    )
    add("noise floor: mean seed std of a cell", lambda a: _num((_noise_floor(a, task) or (math.nan,))[0]))

    def delta(a: Analysis) -> str:
        mult, addv, n, wins = _mean_delta_h(a, task)
        return f"{_num(mult)} vs {_num(addv)}; multiplicative lower in {wins} of {n}"

    add("mean Δh, multiplicative vs additive", delta)
    for method in after.methods(task):
        label = METHOD_LABELS.get(method, method)
        for factor, param, name in (
            ("model_size", "alpha", "α_m"),
            ("pretrain_tokens", "alpha", "α_p"),
            ("model_size", "beta", "β"),
        ):
            add(f"{name} {label}", lambda a, m=method, f=factor, p=param: _ci(a, task, m, f, p))
    add("β order (model-size fit)", lambda a: _beta_order(a, task))
    for pair in (
        sorted(set(after.critical.loc[after.critical["task"] == task, "pair"])) if len(after.critical) else []
    ):
        add(f"critical D_f, {pair} (model size)", lambda a, p=pair: _critical_at_ends(a, task, p))
    text = tables.to_markdown(pd.DataFrame(rows))
    verdicts = {(f.statement, f.scope): f.verdict for f in before.findings if f.task == task}
    changes = [
        {
            "finding": f.statement,
            "scope": f.scope,
            "before": verdicts[(f.statement, f.scope)],
            "after": f.verdict,
        }
        for f in after.findings
        if f.task == task
        and (f.statement, f.scope) in verdicts
        and verdicts[(f.statement, f.scope)] != f.verdict
    ]
    same = sum(
        1 for f in after.findings if f.task == task and verdicts.get((f.statement, f.scope)) == f.verdict
    )
    text += f"\nFindings whose verdict changed ({len(changes)}; {same} kept theirs):\n\n"
    text += tables.to_markdown(pd.DataFrame(changes)) if changes else "_None._\n"
    return text


def data_curvature_block(entries: Iterable[tuple[pd.DataFrame, Analysis, str]]) -> str:
    """How the loss falls with each doubling of D_f, per task and method (the model-size factor's runs, averaged
    over model sizes and seeds), beside what the fitted multiplicative law implies. Under L = A·X^-α·D^-β + E
    every doubling gains 2^-β times the previous one, so the gains shrink; gains that grow with D_f mark curves
    that no such law follows, whatever its parameters."""
    rows = []
    for frame, analysis, task in entries:
        runs = frame[(frame["method"] != "base") & (frame["status"] == "done")]
        if "in_model_size" in runs.columns:
            runs = runs[runs["in_model_size"].fillna(False).astype(bool)]
        for method in analysis.methods(task):
            group = runs[runs["method"] == method]
            means = group.groupby("ft_examples")["loss"].mean().sort_index()
            if len(means) < 2:
                continue
            sizes = [int(n) for n in means.index]
            row = {"task": task, "method": METHOD_LABELS.get(method, method)}
            for (a, la), (b, lb) in itertools.pairwise(zip(sizes, means.to_numpy(), strict=True)):
                row[f"{a:,}→{b:,}"] = tables.fmt_number(float(la - lb), 2)
            law = analysis.laws.get((task, method, "model_size", "multiplicative"))
            row["law: each gain × 2^-β"] = (
                tables.fmt_number(2 ** -float(law.params_["beta"]), 3) if law is not None else "–"
            )
            rows.append(row)
    if not rows:
        return "_No model-size runs._\n"
    text = (
        "Mean test-loss gain (nats) from each doubling of the finetuning data, over the model-size factor's runs "
        "(all sizes and seeds). Under the fitted law each gain is the previous one × 2^-β (last column), so the "
        "gains should shrink from left to right.\n\n"
    )
    return text + tables.to_markdown(pd.DataFrame(rows).fillna("–"))


def findings_summary_block(entries: Iterable[tuple[str, Analysis, str]]) -> str:
    """One row per finding and scope, one column per task: the verdict (details and CIs in the task blocks)."""
    verdicts: dict[tuple[str, str], dict[str, str]] = {}
    labels = []
    for label, analysis, task in entries:
        labels.append(label)
        for finding in analysis.findings:
            if finding.task == task:
                verdicts.setdefault((finding.statement, finding.scope), {})[label] = finding.verdict
    if not verdicts:
        return "_No findings._\n"
    rows = [
        {"finding": statement, "scope": scope, **{label: cells.get(label, "–") for label in labels}}
        for (statement, scope), cells in verdicts.items()
    ]
    counts = {
        label: " / ".join(
            str(sum(cells.get(label) == v for cells in verdicts.values()))
            for v in ("confirms", "refutes", "cannot tell")
        )
        for label in labels
    }
    rows.append({"finding": "**confirms / refutes / cannot tell**", "scope": "", **counts})
    return tables.to_markdown(pd.DataFrame(rows))


def before_after_summary_block(pairs: Iterable[tuple[str, Analysis, Analysis, str]]) -> str:
    """One row per task: regime, mean Δh and the findings' verdict counts, before and after."""
    rows = []
    for label, before, after, task in pairs:
        row = {"task": label}
        for name, a in (("before", before), ("after", after)):
            mult, _, _, _ = _mean_delta_h(a, task)
            regime = a.regime.get(task)
            share = regime.budget_bound_share if regime else None
            verdicts = [f.verdict for f in a.findings if f.task == task]
            row[f"tokens/param ({name})"] = _tokens_per_param(a, task)
            row[f"budget-bound ({name})"] = "–" if share is None else f"{share:.0%}"
            row[f"mult. Δh ({name})"] = _num(mult)
            row[f"confirms / refutes / cannot tell ({name})"] = " / ".join(
                str(verdicts.count(v)) for v in ("confirms", "refutes", "cannot tell")
            )
        rows.append(row)
    return tables.to_markdown(pd.DataFrame(rows))


TASK_BLOCKS = {
    "table4": table4_block,
    "heldout": heldout_block,
    "critical": critical_block,
    "table7": table7_block,
    "findings": findings_block,
    "intermediate-vs-annealed": annealed_block,
}


# ----- regeneration ------------------------------------------------------------------------------------------


@dataclass
class Regeneration:
    """Generated blocks by name, seconds per task, and tasks whose results file is absent."""

    blocks: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _task_name(frame: pd.DataFrame, entry: TaskEntry, path: Path) -> str:
    names = sorted(frame["task"].dropna().astype(str).unique()) if "task" in frame.columns else []
    if entry.task is not None:
        if entry.task not in names:
            raise DataError(f"{path}: no runs of task {entry.task!r} (tasks: {', '.join(names) or 'none'})")
        return entry.task
    if len(names) != 1:
        raise DataError(
            f"{path}: holds tasks {', '.join(names) or 'none'}; set tasks.{entry.key}.task in the manifest to pick one"
        )
    return names[0]


def _write_figures(analysis: Analysis, task: str, key: str, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Key figures of one task as small PNGs; a figure matplotlib cannot draw is skipped with a note."""
    import matplotlib.pyplot as plt

    from ftscale.report import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [(f"loss-{factor}", plots.loss_vs_data, (analysis, task, factor)) for factor in FACTOR_BY_NAME]
    figures += [
        ("critical", plots.critical_sizes, (analysis, task)),
        ("ppl-vs-scores", plots.ppl_vs_scores, (analysis, task)),
    ]
    written, skipped = [], []
    for name, factory, args in figures:
        try:
            fig = factory(*args)
        except ValueError as exc:  # e.g. a log axis with nothing positive to show (no crossing at all)
            plt.close("all")
            skipped.append(f"{key}-{name}.png ({exc})")
            continue
        if fig is None:
            continue
        path = out_dir / f"{key}-{name}.png"
        path.write_bytes(plots.to_png(fig, dpi=60))
        written.append(path)
    return written, skipped


def regenerate(results_dir: Path, plots_dir: Path | None = None) -> Regeneration:
    """Analyse every task file the manifest names (once each) and render all blocks."""
    manifest = load_manifest(results_dir / MANIFEST_NAME)
    out = Regeneration()
    summary: list[tuple[Analysis, str, str]] = []
    curvature: list[tuple[pd.DataFrame, Analysis, str]] = []
    labelled: list[tuple[str, Analysis, str]] = []
    before_after: list[tuple[str, Analysis, Analysis, str]] = []
    for entry in manifest.tasks:
        path = results_dir / entry.file
        if not path.is_file():
            out.missing_files.append(entry.file)
            continue
        started = time.perf_counter()
        frame = load_results(path)
        task = _task_name(frame, entry, path)
        frame = frame[frame["task"].astype(str) == task]
        analysis = analyse(frame, n_bootstrap=manifest.bootstrap, seed=manifest.seed, source=entry.file)
        for name, render in TASK_BLOCKS.items():
            out.blocks[f"{name}-{entry.key}"] = render(analysis, task, entry.paper)
        out.blocks[f"regime-{entry.key}"] = regime_block(analysis, frame, task)
        summary.append((analysis, task, entry.paper))
        curvature.append((frame, analysis, task))
        labelled.append((entry.label, analysis, task))
        if entry.previous is not None:
            before_path = results_dir / entry.previous
            if not before_path.is_file():
                raise DataError(
                    f"{results_dir / MANIFEST_NAME}: tasks.{entry.key}.previous: {before_path} not found; "
                    "commit the earlier results there or drop the key"
                )
            before_frame = load_results(before_path)
            before_frame = before_frame[before_frame["task"].astype(str) == task]
            before = analyse(
                before_frame, n_bootstrap=manifest.bootstrap, seed=manifest.seed, source=entry.previous
            )
            out.blocks[f"before-after-{entry.key}"] = before_after_block(before, analysis, task)
            before_after.append((entry.label, before, analysis, task))
        if plots_dir is not None:
            written, skipped = _write_figures(analysis, task, entry.key, plots_dir)
            out.figures += written
            out.notes += [f"figure skipped: {s}" for s in skipped]
        out.seconds[entry.key] = time.perf_counter() - started
    if summary:
        out.blocks["heldout-summary"] = heldout_summary_block(summary)
        out.blocks["heldout-breakdown"] = heldout_breakdown_block(summary)
        out.blocks["heldout-curvature"] = data_curvature_block(curvature)
        out.blocks["findings-summary"] = findings_summary_block(labelled)
    if before_after:
        out.blocks["before-after-summary"] = before_after_summary_block(before_after)
    return out


def reproduce(results_dir: Path, doc: Path, check: bool = False, plots: Path | None = None) -> int:
    """Regenerate the generated blocks of ``doc`` from the results in ``results_dir`` (and the figures into
    ``plots``), or with ``check`` compare them and return 1 on differences. Problems raise ``UserError``."""
    if not doc.is_file():
        raise UserError(f"{doc}: document not found; pass --doc with the write-up's path")
    try:
        text = doc.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{doc}: cannot read the document ({exc}); pass a UTF-8 Markdown file") from None
    parse_blocks(text, str(doc))  # marker mistakes surface before minutes of fitting
    result = regenerate(results_dir, plots)
    for key, seconds in result.seconds.items():
        print(f"{key}: analysed and rendered in {seconds:.1f} s")
    if result.missing_files:
        print(f"no results yet (blocks left as they are): {', '.join(result.missing_files)}")
    if check:
        differ = check_blocks(text, result.blocks, str(doc))
        for name, reason in differ.items():
            print(f"differs: {name}: {reason}")
        if differ:
            print(f"{len(differ)} block(s) of {doc} differ from the results; rerun without --check to update")
            return 1
        if not result.blocks:
            print(f"{doc}: no results committed yet, nothing to check")
            return 0
        print(f"{doc}: {len(result.blocks)} generated block(s) match the results")
        return 0
    new_text, untouched, missing = rewrite_blocks(text, result.blocks, str(doc))
    if new_text != text:
        doc.write_text(new_text, encoding="utf-8")
    notes = []
    if untouched:
        notes.append(f"not regenerated: {', '.join(untouched)}")
    if missing:
        notes.append(f"generated but without a place in the doc: {', '.join(missing)}")
    print(
        f"{doc}: {len(result.blocks) - len(missing)} block(s) written"
        + (f"; {'; '.join(notes)}" if notes else "")
    )
    for path in result.figures:
        print(f"figure: {path}")
    for note in result.notes:
        print(note)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ftscale.report.reproduction``: the same as ``ftscale reproduce``."""
    parser = argparse.ArgumentParser(
        prog="python -m ftscale.report.reproduction",
        description="Regenerate (or --check) the generated blocks of the reproduction write-up.",
    )
    parser.add_argument("results_dir", type=Path, help="directory holding manifest.json and the results CSVs")
    parser.add_argument("--doc", type=Path, required=True, help="Markdown document with generated blocks")
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on differences"
    )
    parser.add_argument("--plots", type=Path, default=None, help="also write key figures as PNGs here")
    args = parser.parse_args(argv)
    try:
        return reproduce(args.results_dir, args.doc, args.check, args.plots)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
