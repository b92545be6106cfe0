"""What an analysis concludes: the paper's findings checked with CIs, zero-shot and baseline comparisons, Table 7.

Rows with ``method`` "base" (the study's un-finetuned baselines, ``study export --baselines``) are never fitted:
they are the reference of the zero-/few-shot comparison (paper Figs. 6, 11-14), where each run's score is taken
relative to the base checkpoint it was finetuned from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ftscale.analysis.cells import FACTOR_BY_NAME, METHOD_LABELS, METHOD_ORDER
from ftscale.laws.bootstrap import percentile_ci
from ftscale.study.plan import BASELINE_METHOD  # ``method`` of the un-finetuned baseline rows

# "PET size barely helps": |α_t| below this (the paper reports |α_t| ≪ 1e-2).
SMALL_ALPHA_T = 0.01


@dataclass
class Finding:
    """One paper finding checked against this study: ``verdict`` is confirms | refutes | cannot tell."""

    key: str
    statement: str
    task: str
    scope: str
    verdict: str
    detail: str
    numbers: dict[str, float] = field(default_factory=dict)


def table7_correlations(cells: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of test PPL with generation scores over a factor's cells (paper Table 7)."""
    rows = []
    for metric in ("bleu", "rougeL"):
        if metric not in cells.columns or "ppl" not in cells.columns:
            continue
        for (task, method, factor), group in cells.groupby(["task", "method", "factor"], sort=True):
            pair = group[["ppl", metric]].astype(float).dropna()
            if len(pair) < 3 or pair["ppl"].nunique() < 2 or pair[metric].nunique() < 2:
                continue
            result = stats.pearsonr(pair["ppl"], pair[metric])
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "factor": factor,
                    "metric": metric,
                    "r": float(result.statistic),
                    "p": float(result.pvalue),
                    "n": len(pair),
                }
            )
    return pd.DataFrame(rows, columns=["task", "method", "factor", "metric", "r", "p", "n"])


def zero_shot_scores(done: pd.DataFrame) -> pd.DataFrame:
    """Per run, the mean over zero-shot directions (BLEU, else chrF), for Fig. 6 and the generalisation finding."""
    bleu = [c for c in done.columns if c.startswith("zs_") and c.endswith("_bleu")]
    chrf = [c for c in done.columns if c.startswith("zs_") and c.endswith("_chrf")]
    columns, metric = (bleu, "bleu") if bleu else (chrf, "chrf")
    if not columns:
        return pd.DataFrame(columns=["task", "method", "model_size", "x", "d", "score", "metric"])
    frame = done[done["ft_examples"].astype(float) >= 0].copy()
    frame["score"] = frame[columns].astype(float).mean(axis=1)
    frame = frame.dropna(subset=["score"])
    out = frame.assign(x=frame["model_params"].astype(float), d=frame["ft_examples"].astype(float))
    out = (
        out[["task", "method", "model_size", "x", "d", "score", "run_id"]]
        if "run_id" in out
        else out[["task", "method", "model_size", "x", "d", "score"]]
    )
    out = out.assign(metric=metric)
    return out.reset_index(drop=True)


def _prompt_sets(frame: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """(prompt set, metric, score columns): each k-shot set and the zero-shot directions (averaged), scored in
    BLEU when the table has it, else chrF, else ROUGE-L."""
    sets = []
    shots = sorted(
        {int(c[2:].split("_")[0]) for c in frame.columns if c[:2] == "fs" and c[2:].split("_")[0].isdigit()}
    )
    for metric in ("bleu", "chrf", "rougeL"):
        zs = [c for c in frame.columns if c.startswith("zs_") and c.endswith(f"_{metric}")]
        if zs:
            sets.append(("zero-shot", metric, zs))
            break
    for k in shots:
        column = next(
            (f"fs{k}_{m}" for m in ("bleu", "chrf", "rougeL") if f"fs{k}_{m}" in frame.columns), None
        )
        if column is not None:
            sets.append((f"{k}-shot", column.rsplit("_", 1)[1], [column]))
    return sets


def vs_baseline_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Each finished run's zero-/few-shot score next to the score of its un-finetuned base checkpoint (the
    ``method`` "base" rows); empty when the table has no baselines."""
    columns = ["task", "method", "model_size", "x", "d", "prompts", "metric", "score", "baseline", "change"]
    finished = frame[frame["status"] == "done"]
    base = finished[finished["method"] == BASELINE_METHOD]
    runs = finished[(finished["method"] != BASELINE_METHOD) & (finished["ft_examples"].astype(float) > 0)]
    if base.empty or runs.empty:
        return pd.DataFrame(columns=columns)

    def keyed(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(
            _model=rows["model_size"].astype(str),
            _tokens=rows["pretrain_tokens"].astype(float),
            _kind=rows["checkpoint_kind"].astype(str),
        )

    key = ["task", "_model", "_tokens", "_kind"]
    out = []
    for prompts, metric, score_columns in _prompt_sets(frame):
        run_scores = keyed(runs).assign(score=runs[score_columns].astype(float).mean(axis=1, skipna=False))
        base_scores = keyed(base).assign(
            baseline=base[score_columns].astype(float).mean(axis=1, skipna=False)
        )
        base_scores = base_scores.dropna(subset=["baseline"]).drop_duplicates(subset=key)
        merged = run_scores.dropna(subset=["score"]).merge(base_scores[[*key, "baseline"]], on=key)
        if merged.empty:
            continue
        out.append(
            merged.assign(
                x=merged["model_params"].astype(float),
                d=merged["ft_examples"].astype(float),
                prompts=prompts,
                metric=metric,
                change=merged["score"] - merged["baseline"],
            )[columns]
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)


def baseline_summary(vs_baseline: pd.DataFrame) -> pd.DataFrame:
    """Mean score change vs the base model per task, method and prompt set."""
    columns = ["task", "method", "prompts", "metric", "mean_change", "mean_score", "mean_baseline", "n"]
    if vs_baseline.empty:
        return pd.DataFrame(columns=columns)
    grouped = vs_baseline.groupby(["task", "method", "prompts", "metric"], sort=True)
    summary = grouped.agg(
        mean_change=("change", "mean"),
        mean_score=("score", "mean"),
        mean_baseline=("baseline", "mean"),
        n=("change", "size"),
    )
    return summary.reset_index()[columns]


def _bootstrap_mean(values: np.ndarray, rng: np.random.Generator, n: int = 1000) -> np.ndarray:
    return np.array([rng.choice(values, values.size).mean() for _ in range(n)])


def baseline_findings(vs_baseline: pd.DataFrame, level: float, rng: np.random.Generator) -> list[Finding]:
    """The paper's few-shot findings against the un-finetuned "Baseline" (Figs. 11-14): FMT degrades few-shot
    ability; PET keeps it better than FMT. Zero-shot: whether finetuning raises the score above the base model
    (Sec. 5: it can, depending on method and task)."""
    out: list[Finding] = []
    if vs_baseline.empty:
        return out
    for (task, prompts, metric), group in vs_baseline.groupby(["task", "prompts", "metric"], sort=True):
        changes = {
            m: group.loc[group["method"] == m, "change"].to_numpy(float)
            for m in [*METHOD_ORDER, *sorted(set(group["method"]) - set(METHOD_ORDER))]
            if (group["method"] == m).any()
        }
        per_method = "; ".join(
            f"{METHOD_LABELS.get(m, m)} {_fmt(v.mean())} (n={v.size})" for m, v in changes.items()
        )
        label = f"{prompts} {metric}"
        if prompts == "zero-shot":
            for method, values in changes.items():
                if values.size < 2:
                    continue
                verdict, low, high = _verdict(_bootstrap_mean(values, rng), level)
                out.append(
                    Finding(
                        "zero_shot_vs_base",
                        "Finetuning raises zero-shot scores above the un-finetuned model",
                        str(task),
                        f"{METHOD_LABELS.get(method, method)}, {label}",
                        verdict,
                        f"mean change vs the base model {_fmt(values.mean())} CI [{_fmt(low)}, {_fmt(high)}]; "
                        f"all methods: {per_method}",
                        {"estimate": float(values.mean()), "low": low, "high": high},
                    )
                )
            continue
        fmt = changes.get("fmt", np.array([]))
        if fmt.size >= 2:
            # the claim is a drop: the CI of (0 − change) above 0 confirms it
            verdict, low, high = _verdict(-_bootstrap_mean(fmt, rng), level)
            out.append(
                Finding(
                    "fmt_erodes_few_shot",
                    "FMT degrades few-shot ability vs the un-finetuned model (score drops)",
                    str(task),
                    f"FMT, {label}",
                    verdict,
                    f"mean change vs the base model {_fmt(fmt.mean())} CI [{_fmt(-high)}, {_fmt(-low)}]; "
                    f"all methods: {per_method}",
                    {"estimate": float(fmt.mean()), "low": -high, "high": -low},
                )
            )
        for method, values in changes.items():
            if method == "fmt" or fmt.size < 2 or values.size < 2:
                continue
            diffs = _bootstrap_mean(values, rng) - _bootstrap_mean(fmt, rng)
            verdict, low, high = _verdict(diffs, level)
            estimate = float(values.mean() - fmt.mean())
            out.append(
                Finding(
                    "pet_keeps_few_shot",
                    "PET keeps few-shot ability better than FMT (smaller change vs the un-finetuned model)",
                    str(task),
                    f"{METHOD_LABELS.get(method, method)} vs FMT, {label}",
                    verdict,
                    f"mean change vs the base model {METHOD_LABELS.get(method, method)} {_fmt(values.mean())} "
                    f"vs FMT {_fmt(fmt.mean())}; difference {_fmt(estimate)} CI [{_fmt(low)}, {_fmt(high)}]",
                    {"estimate": estimate, "diff_low": low, "diff_high": high},
                )
            )
    return out


def _verdict(diff: np.ndarray, level: float) -> tuple[str, float, float]:
    """Confirms when the CI of (claimed larger − claimed smaller) lies above 0, refutes when below."""
    low, high, _se = percentile_ci(diff, level)
    if not math.isfinite(low):
        return "cannot tell", low, high
    if low > 0:
        return "confirms", low, high
    if high < 0:
        return "refutes", low, high
    return "cannot tell", low, high


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.3g}"


class ParamSource:
    """Point estimates and bootstrap samples of one parameter, looked up by (task, method, factor, param)."""

    def __init__(self, fits: pd.DataFrame, samples: dict[tuple[str, str], list[dict[str, dict[str, float]]]]):
        self.fits = fits
        self.samples = samples

    def estimate(self, task: str, method: str, factor: str, param: str) -> float:
        row = self.fits[
            (self.fits["task"] == task)
            & (self.fits["method"] == method)
            & (self.fits["factor"] == factor)
            & (self.fits["form"] == "multiplicative")
        ]
        return float(row[param].iloc[0]) if len(row) and param in row else math.nan

    def draws(self, task: str, method: str, factor: str, param: str) -> np.ndarray:
        return np.array(
            [s.get(factor, {}).get(param, math.nan) for s in self.samples.get((task, method), [])],
            dtype=float,
        )

    def has(self, task: str, method: str, factor: str) -> bool:
        return math.isfinite(self.estimate(task, method, factor, "alpha"))


def _compare(
    source: ParamSource,
    task: str,
    big: tuple[str, str, str],
    small: tuple[str, str, str],
    level: float,
    key: str,
    statement: str,
    scope: str,
    names: tuple[str, str],
) -> Finding:
    est_big, est_small = source.estimate(task, *big), source.estimate(task, *small)
    draws_big, draws_small = source.draws(task, *big), source.draws(task, *small)
    n = min(draws_big.size, draws_small.size)
    verdict, low, high = (
        _verdict(draws_big[:n] - draws_small[:n], level) if n else ("cannot tell", math.nan, math.nan)
    )
    ci_big, ci_small = percentile_ci(draws_big, level), percentile_ci(draws_small, level)
    detail = (
        f"{names[0]} = {_fmt(est_big)} [{_fmt(ci_big[0])}, {_fmt(ci_big[1])}] vs {names[1]} = {_fmt(est_small)} "
        f"[{_fmt(ci_small[0])}, {_fmt(ci_small[1])}]; difference CI [{_fmt(low)}, {_fmt(high)}]"
    )
    if not n:
        detail += " (no bootstrap resamples: rerun with --bootstrap N for a verdict)"
    return Finding(
        key,
        statement,
        task,
        scope,
        verdict,
        detail,
        {"estimate_a": est_big, "estimate_b": est_small, "diff_low": low, "diff_high": high},
    )


def paper_findings(
    source: ParamSource,
    zero_shot: pd.DataFrame,
    tasks: list[str],
    methods_by_task: dict[str, list[str]],
    level: float,
    rng: np.random.Generator,
) -> list[Finding]:
    out: list[Finding] = []
    for task in tasks:
        methods = methods_by_task[task]
        pets = [m for m in methods if m != "fmt"]
        for method in methods:
            if source.has(task, method, "model_size") and source.has(task, method, "pretrain_tokens"):
                out.append(
                    _compare(
                        source,
                        task,
                        (method, "model_size", "alpha"),
                        (method, "pretrain_tokens", "alpha"),
                        level,
                        "alpha_m_gt_alpha_p",
                        "A bigger LLM helps finetuning more than more pretraining (α_m > α_p)",
                        METHOD_LABELS.get(method, method),
                        ("α_m", "α_p"),
                    )
                )
        for method in pets:
            if not source.has(task, method, "pet_size"):
                continue
            est = source.estimate(task, method, "pet_size", "alpha")
            low, high, _ = percentile_ci(source.draws(task, method, "pet_size", "alpha"), level)
            if not math.isfinite(low):
                verdict = "cannot tell"
            elif low > -SMALL_ALPHA_T and high < SMALL_ALPHA_T:
                verdict = "confirms"
            elif low >= SMALL_ALPHA_T or high <= -SMALL_ALPHA_T:
                verdict = "refutes"
            else:
                verdict = "cannot tell"
            out.append(
                Finding(
                    "alpha_t_small",
                    f"Scaling PET size barely helps (|α_t| < {SMALL_ALPHA_T})",
                    task,
                    METHOD_LABELS.get(method, method),
                    verdict,
                    f"α_t = {_fmt(est)} [{_fmt(low)}, {_fmt(high)}]",
                    {"estimate": est, "low": low, "high": high},
                )
            )
        if "fmt" in methods:
            for method in pets:
                out.append(
                    _compare(
                        source,
                        task,
                        ("fmt", "model_size", "beta"),
                        (method, "model_size", "beta"),
                        level,
                        "beta_fmt_gt_beta_pet",
                        "FMT is more data-hungry than PET (β_FMT > β_PET)",
                        f"FMT vs {METHOD_LABELS.get(method, method)}",
                        ("β_FMT", f"β_{METHOD_LABELS.get(method, method)}"),
                    )
                )
        if "lora" in methods and "prompt" in methods:
            out.append(
                _compare(
                    source,
                    task,
                    ("lora", "model_size", "beta"),
                    ("prompt", "model_size", "beta"),
                    level,
                    "beta_lora_ge_beta_prompt",
                    "LoRA scales better with finetuning data than Prompt (β_LoRA ≥ β_Prompt)",
                    "LoRA vs Prompt",
                    ("β_LoRA", "β_Prompt"),
                )
            )
        for method in pets:
            for factor, sym in (("model_size", "m"), ("pretrain_tokens", "p")):
                if source.has(task, method, factor):
                    out.append(
                        _compare(
                            source,
                            task,
                            (method, factor, "alpha"),
                            (method, factor, "beta"),
                            level,
                            "pet_relies_on_base",
                            f"PET relies more on the base model than on finetuning data (α_{sym} > β)",
                            f"{METHOD_LABELS.get(method, method)}, {FACTOR_BY_NAME[factor].label}",
                            (f"α_{sym}", "β"),
                        )
                    )
        zs = zero_shot[zero_shot["task"] == task] if len(zero_shot) else zero_shot
        fmt_scores = zs.loc[zs["method"] == "fmt", "score"].to_numpy(float) if len(zs) else np.array([])
        for method in pets:
            pet_scores = zs.loc[zs["method"] == method, "score"].to_numpy(float) if len(zs) else np.array([])
            if fmt_scores.size < 2 or pet_scores.size < 2:
                continue
            diffs = np.array(
                [
                    rng.choice(pet_scores, pet_scores.size).mean()
                    - rng.choice(fmt_scores, fmt_scores.size).mean()
                    for _ in range(1000)
                ]
            )
            verdict, low, high = _verdict(diffs, level)
            estimate = float(pet_scores.mean() - fmt_scores.mean())
            out.append(
                Finding(
                    "pet_zero_shot",
                    "PET generalises better zero-shot than FMT (higher zero-shot score)",
                    task,
                    f"{METHOD_LABELS.get(method, method)} vs FMT",
                    verdict,
                    f"mean zero-shot score {METHOD_LABELS.get(method, method)} {_fmt(pet_scores.mean())} (n={pet_scores.size}) "
                    f"vs FMT {_fmt(fmt_scores.mean())} (n={fmt_scores.size}); difference {_fmt(estimate)} "
                    f"CI [{_fmt(low)}, {_fmt(high)}]",
                    {"estimate": estimate, "diff_low": low, "diff_high": high},
                )
            )
    return out
