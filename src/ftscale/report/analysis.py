"""Analysis of a finetuning scaling study: joint laws per factor, fit errors, critical sizes, findings, with CIs.

Input is the study's results table (one row per finetuning run; schema in ``REQUIRED_COLUMNS`` and the module
docs). Per task and method the runs are averaged over seeds into (X, D_f) cells, split into fitting and held-out
cells (largest value of each axis held out), and fitted with the paper's two-stage joint law: shared (β, E) over
the model-size and pretraining factors, then (A, α) per factor with β, E fixed (PET size in stage 2 only). The
additive law is fitted the same way for comparison (paper Tables 2/6). Bootstrap resamples of the fitting cells,
refitted from the full-data optimum, give CIs for the parameters, the critical data sizes and the findings.

Rows with ``method`` "base" (the study's un-finetuned baselines, ``study export --baselines``) are never fitted:
they are the reference of the zero-/few-shot comparison (paper Figs. 6, 11-14), where each run's score is taken
relative to the base checkpoint it was finetuned from.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ftscale.errors import DataError, FitError
from ftscale.laws.io import CSV_OPTIONS
from ftscale.report import _laws
from ftscale.study.spec import MIN_FIT_VALUES

METHOD_ORDER = ("fmt", "prompt", "lora")
METHOD_LABELS = {"fmt": "FMT", "prompt": "Prompt", "lora": "LoRA"}
# ``method`` of the un-finetuned baseline rows (the study's ``baseline`` jobs)
BASELINE_METHOD = "base"
# A finetuning run and its baseline share the base checkpoint: the same model, pretraining budget and kind.
BASE_CHECKPOINT_KEY = ("task", "model_size", "pretrain_tokens", "checkpoint_kind")
REQUIRED_COLUMNS = ("task", "method", "status", "ft_examples", "loss")


@dataclass(frozen=True)
class FactorSpec:
    """One scaling factor X: which runs belong to it and which column holds X."""

    name: str
    x_column: str
    membership: str
    label: str
    symbol: str
    checkpoint_kind: str | None = None  # pretraining factors: intermediate vs annealed checkpoints
    pet_only: bool = False


FACTORS: tuple[FactorSpec, ...] = (
    FactorSpec("model_size", "model_params", "in_model_size", "LLM model size", "m"),
    FactorSpec(
        "pretrain_tokens", "pretrain_tokens", "in_pretrain_tokens", "pretraining data", "p", "intermediate"
    ),
    FactorSpec(
        "pretrain_tokens_annealed",
        "pretrain_tokens",
        "in_pretrain_tokens",
        "pretraining data (annealed)",
        "pa",
        "annealed",
    ),
    FactorSpec("pet_size", "pet_size", "in_pet_size", "PET parameter size", "t", pet_only=True),
)
FACTOR_BY_NAME = {f.name: f for f in FACTORS}
# Per-run held-out flags written by the study runner (``heldout="study"`` uses them).
STUDY_HELDOUT_COLUMN = {
    "in_model_size": "heldout_model_size",
    "in_pretrain_tokens": "heldout_pretrain_tokens",
    "in_pet_size": "heldout_pet_size",
}
STAGE1_FACTORS = ("model_size", "pretrain_tokens")
CRITICAL_FACTORS = ("model_size", "pretrain_tokens", "pretrain_tokens_annealed")
# A two-stage factor fit needs enough cells to pin (A, α) with β, E shared: at least this many fitting cells,
# over at least two values of X and of D_f.
MIN_FIT_CELLS = MIN_FIT_VALUES**2  # ≥ 2 values of X × ≥ 2 of D_f
# Critical sizes are searched this many decades beyond the observed D_f range of the two methods.
CRITICAL_SEARCH_DECADES = 3.0
# "PET size barely helps": |α_t| below this (the paper reports |α_t| ≪ 1e-2).
SMALL_ALPHA_T = 0.01


# ----- loading -----------------------------------------------------------------------------------------------


def load_results(path: str | Path) -> pd.DataFrame:
    """The results table of a study: a CSV/Parquet file, or a study directory holding results.{parquet,csv}.

    The returned frame carries ``attrs["source"]`` (the file read), used by the report for traceability.
    """
    path = Path(path)
    if path.is_dir() and (path / "study.sqlite").is_file():
        from ftscale.study.results import baseline_table, results_table, with_baselines

        frame = results_table(path)
        if frame.empty:
            raise DataError(f"{path}: the study has no finished finetuning runs yet; run the study first")
        frame = with_baselines(frame, baseline_table(path))
        frame.attrs["source"] = str(path / "study.sqlite")
        return frame
    if path.is_dir():
        candidates = [path / "results.parquet", path / "results.csv"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(
                f"no results table in study directory {path}: expected results.parquet or results.csv "
                "(export the study's runs first, or pass a CSV file)"
            )
        path = found
    elif not path.exists():
        raise DataError(f"study not found: {path} is neither a study directory nor a results file")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", **CSV_OPTIONS)
        else:
            raise DataError(f"{path}: unknown results format {path.suffix!r}; use .csv or .parquet")
    except (pd.errors.EmptyDataError, ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read the results table ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: the results table is empty (no runs recorded yet); run the study first")
    frame.attrs["source"] = str(path)
    return frame


def _validate(results: pd.DataFrame, source: str) -> pd.DataFrame:
    if results is None or len(results) == 0:
        raise DataError(f"{source}: the results table is empty (no runs recorded yet); run the study first")
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise DataError(
            f"{source}: results table lacks column(s) {', '.join(missing)}; for a plain CSV map its columns "
            "with --x/--d/--y (fit-only mode)"
        )
    frame = results.copy()
    for spec in FACTORS:
        if spec.membership not in frame.columns:
            frame[spec.membership] = False
        frame[spec.membership] = frame[spec.membership].fillna(False).astype(bool)
    for column in ("model_params", "pretrain_tokens", "pet_size", "seed"):
        if column not in frame.columns:
            frame[column] = np.nan
    if "checkpoint_kind" not in frame.columns:
        frame["checkpoint_kind"] = "intermediate"
    frame["checkpoint_kind"] = frame["checkpoint_kind"].fillna("intermediate").astype(str)
    if "model_size" not in frame.columns:
        frame["model_size"] = frame["model_params"].map(lambda v: f"{v:.3g}")
    frame["method"] = frame["method"].astype(str).str.lower()
    frame["status"] = frame["status"].astype(str).str.lower()
    return frame


# ----- result containers -------------------------------------------------------------------------------------


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


@dataclass
class Analysis:
    """Everything the report and the advice need, as DataFrames (long form) plus the fitted law objects.

    ``laws[(task, method, factor, form)]`` is the fitted law; ``bootstrap_laws[(task, method, factor)]`` the
    list of resampled multiplicative laws (index = resample) used for CIs of derived quantities.
    """

    source: str
    config: dict[str, Any]
    run_counts: pd.DataFrame  # task, method, status, n
    cells: pd.DataFrame  # task, method, factor, x, d, loss, loss_std, n_seeds, heldout, ppl, bleu, ...
    fits: pd.DataFrame  # task, method, factor, form, params..., delta_e, delta_h, n_fit, n_heldout, converged
    param_ci: pd.DataFrame  # task, method, factor, param, estimate, low, high, se, n_resamples
    single_fits: pd.DataFrame  # task, method, model_size, x, A, beta, E, delta_e, delta_h, n_fit, n_heldout
    table5: pd.DataFrame  # task, factor, pair, H, gamma
    table7: pd.DataFrame  # task, method, factor, metric, r, p, n
    critical: pd.DataFrame  # task, factor, pair, x, critical, low, high, status, ...
    critical_curves: pd.DataFrame  # task, factor, pair, x, critical (dense x, point estimate)
    zero_shot: pd.DataFrame  # task, method, model_size, x, d, score, n
    findings: list[Finding]
    # per run and prompt set: task, method, model_size, x, d, prompts, metric, score, baseline, change
    vs_baseline: pd.DataFrame = field(default_factory=pd.DataFrame)
    laws: dict[tuple[str, str, str, str], Any] = field(repr=False, default_factory=dict)
    single_laws: dict[tuple[str, str, str], Any] = field(repr=False, default_factory=dict)
    bootstrap_laws: dict[tuple[str, str, str], list[Any]] = field(repr=False, default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.cells["task"].unique()) if len(self.cells) else []

    def methods(self, task: str) -> list[str]:
        present = set(self.fits.loc[self.fits["task"] == task, "method"])
        return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))

    def law(self, task: str, method: str, factor: str, form: str = "multiplicative") -> Any:
        key = (task, method, factor, form)
        if key not in self.laws:
            raise FitError(f"no {form} law fitted for task {task!r}, method {method!r}, factor {factor!r}")
        return self.laws[key]

    def d_range(self, task: str, method: str) -> tuple[float, float]:
        """Observed D_f range of a method's fitting and held-out cells."""
        d = self.cells.loc[(self.cells["task"] == task) & (self.cells["method"] == method), "d"]
        return float(d.min()), float(d.max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: config, counts, every table as records (NaN → null)."""
        return _json_clean(
            {
                "source": self.source,
                "config": self.config,
                "notes": self.notes,
                "run_counts": self.run_counts.to_dict("records"),
                "fits": self.fits.to_dict("records"),
                "param_ci": self.param_ci.to_dict("records"),
                "single_fits": self.single_fits.to_dict("records"),
                "table5": self.table5.to_dict("records"),
                "table7": self.table7.to_dict("records"),
                "critical": self.critical.drop(columns=["roots"], errors="ignore").to_dict("records"),
                "findings": [f.__dict__ for f in self.findings],
                "vs_baseline": _baseline_summary(self.vs_baseline).to_dict("records"),
            }
        )


def _json_clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_clean(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# ----- cells -------------------------------------------------------------------------------------------------


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


def _factor_runs(done: pd.DataFrame, spec: FactorSpec) -> pd.DataFrame:
    rows = done[done[spec.membership]]
    if spec.checkpoint_kind == "intermediate":
        rows = rows[rows["checkpoint_kind"] != "annealed"]
    elif spec.checkpoint_kind is not None:
        # The final checkpoint ends its cosine schedule: it is a finished model of both variants.
        if not (rows["checkpoint_kind"] == spec.checkpoint_kind).any():
            return rows.iloc[0:0]
        rows = rows[rows["checkpoint_kind"].isin([spec.checkpoint_kind, "final"])]
    if spec.pet_only:
        rows = rows[rows["method"] != "fmt"]
    rows = rows[np.isfinite(rows[spec.x_column].astype(float)) & (rows["ft_examples"].astype(float) > 0)]
    return rows


def _metric_columns(done: pd.DataFrame) -> list[str]:
    named = [c for c in ("ppl", "bleu", "chrf", "rougeL") if c in done.columns]
    shots = [
        c for c in done.columns if c.startswith(("zs_", "fs")) and pd.api.types.is_numeric_dtype(done[c])
    ]
    return named + shots


def build_cells(done: pd.DataFrame, heldout: str = "study") -> pd.DataFrame:
    """Seed-averaged cells per (task, method, factor, X, D_f) with the spread and the fit/held-out flag."""
    from ftscale.laws.evaluation import split_points

    metrics = _metric_columns(done)
    frames = []
    for spec in FACTORS:
        rows = _factor_runs(done, spec)
        if rows.empty:
            continue
        rows = rows.assign(x=rows[spec.x_column].astype(float), d=rows["ft_examples"].astype(float))
        grouped = rows.groupby(["task", "method", "x", "d"], sort=True)
        cells = grouped["loss"].agg(loss=exact_mean, loss_std=exact_std, n_seeds="count").reset_index()
        cells["loss_std"] = cells["loss_std"].fillna(0.0)
        if metrics:
            means = grouped[metrics].agg(exact_mean).reset_index()
            cells = cells.merge(means, on=["task", "method", "x", "d"])
        names = grouped["model_size"].first().reset_index(drop=True)
        cells["model_size"] = names.astype(str).to_numpy()
        cells.insert(2, "factor", spec.name)
        cells["heldout"] = False
        flag = STUDY_HELDOUT_COLUMN[spec.membership]
        if heldout == "study" and flag in rows.columns:
            # The study's own plan says which runs are held out (e.g. an interior pretraining checkpoint).
            held_runs = rows.assign(_held=rows[flag].eq(True))  # NaN (not in the plan) is not held out
            held = held_runs.groupby(["task", "method", "x", "d"], sort=True)["_held"].any().to_numpy()
            cells["heldout"] = held
        else:
            mode = "largest" if heldout == "study" else heldout
            for (_task, _method), index in cells.groupby(["task", "method"]).groups.items():
                _fit, held = split_points(cells.loc[index], ("x", "d"), mode)
                cells.loc[index, "heldout"] = held
        frames.append(cells)
    if not frames:
        return pd.DataFrame(columns=["task", "method", "factor", "x", "d", "loss", "heldout"])
    return pd.concat(frames, ignore_index=True)


def _check_enough(cells: pd.DataFrame, task: str, method: str, factor: str) -> None:
    fit = cells[~cells["heldout"]]
    n_x, n_d = fit["x"].nunique(), fit["d"].nunique()
    if len(fit) < MIN_FIT_CELLS or n_x < MIN_FIT_VALUES or n_d < MIN_FIT_VALUES:
        spec = FACTOR_BY_NAME[factor]
        raise FitError(
            f"too few runs for a law: task {task!r}, method {method!r}, factor {factor!r} has {len(fit)} fitting "
            f"cell(s) over {n_x} value(s) of {spec.x_column} and {n_d} of ft_examples (after holding out "
            f"{int(cells['heldout'].sum())} cell(s)); it needs at least {MIN_FIT_CELLS} cells over ≥2 values of "
            "each: add runs along that factor"
        )


# ----- fitting -----------------------------------------------------------------------------------------------


def _fit_task_method(
    cells: pd.DataFrame, task: str, method: str, form: str
) -> tuple[_laws.JointFit, dict[str, tuple[np.ndarray, np.ndarray]]]:
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for factor, group in cells.groupby("factor", sort=False):
        fit = group[~group["heldout"]]
        factors[str(factor)] = (fit[["x", "d"]].to_numpy(float), fit["loss"].to_numpy(float))
    stage1 = [f for f in STAGE1_FACTORS if f in factors]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joint = _laws.fit_joint(factors, stage1=stage1, form=form)
    return joint, factors


def _bootstrap(
    factors: dict[str, tuple[np.ndarray, np.ndarray]],
    joint: _laws.JointFit,
    n_resamples: int,
    rng: np.random.Generator,
) -> list[dict[str, dict[str, float]]]:
    """Refit the two-stage law on resamples of each factor's fitting cells, warm-started at the full optimum
    (``laws.fitting.bootstrap_two_stage``: all resamples as one batched L-BFGS, then a polish of each)."""
    from ftscale.laws.fitting import bootstrap_two_stage

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


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan, math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high), float(np.std(values, ddof=1))


def _single_fits(cells: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str, str], Any]]:
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
                law = _laws.fit_single("power", fit["d"].to_numpy(), fit["loss"].to_numpy())
        except FitError:
            continue
        err_fit = _laws.fit_errors(law, fit["d"].to_numpy(float), fit["loss"].to_numpy(float))
        err_held = _laws.fit_errors(
            law, group[held]["d"].to_numpy(float), group[held]["loss"].to_numpy(float)
        )
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


# ----- derived tables ----------------------------------------------------------------------------------------


def _table7(cells: pd.DataFrame) -> pd.DataFrame:
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


def _zero_shot(done: pd.DataFrame) -> pd.DataFrame:
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


def _vs_baseline(frame: pd.DataFrame) -> pd.DataFrame:
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


def _baseline_summary(vs_baseline: pd.DataFrame) -> pd.DataFrame:
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


def _baseline_findings(vs_baseline: pd.DataFrame, level: float, rng: np.random.Generator) -> list[Finding]:
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


def _pairs(methods: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(methods, 2))


def _pair_label(a: str, b: str) -> str:
    return f"{METHOD_LABELS.get(a, a)} vs {METHOD_LABELS.get(b, b)}"


def _critical(
    analysis_laws: dict, boot_laws: dict, cells: pd.DataFrame, level: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows, curves, gaps = [], [], []
    for task in sorted(cells["task"].unique()):
        task_cells = cells[cells["task"] == task]
        methods = [m for m in METHOD_ORDER if m in set(task_cells["method"])]
        for factor in CRITICAL_FACTORS:
            for a, b in _pairs(methods):
                key_a, key_b = (task, a, factor, "multiplicative"), (task, b, factor, "multiplicative")
                if key_a not in analysis_laws or key_b not in analysis_laws:
                    continue
                law_a, law_b = analysis_laws[key_a], analysis_laws[key_b]
                h, gamma = _laws.constant_gap(law_a, law_b)
                gaps.append(
                    {
                        "task": task,
                        "factor": factor,
                        "pair": _pair_label(a, b),
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
                    cp = _laws.crossings(law_a, law_b, float(x), d_min, d_max, labels)
                    row = {
                        "task": task,
                        "factor": factor,
                        "pair": _pair_label(a, b),
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
                        "constant_gap": _laws.constant_gap_size(h, gamma, x),
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
                        ci = _laws.crossing_ci(samples_a, samples_b, float(x), d_min, d_max, level)
                        row.update(low=ci.low, high=ci.high, frac_none=ci.frac_none)
                    rows.append(row)
                dense = np.geomspace(xs.min(), xs.max(), 25) if xs.size > 1 else xs
                for x in dense:
                    cp = _laws.crossings(law_a, law_b, float(x), d_min, d_max, labels)
                    curves.append(
                        {
                            "task": task,
                            "factor": factor,
                            "pair": _pair_label(a, b),
                            "x": float(x),
                            "critical": cp.first,
                        }
                    )
    critical = pd.DataFrame(rows)
    return critical, pd.DataFrame(curves), pd.DataFrame(gaps)


# ----- findings ----------------------------------------------------------------------------------------------


def _verdict(diff: np.ndarray, level: float) -> tuple[str, float, float]:
    """Confirms when the CI of (claimed larger − claimed smaller) lies above 0, refutes when below."""
    low, high, _se = _percentile_ci(diff, level)
    if not math.isfinite(low):
        return "cannot tell", low, high
    if low > 0:
        return "confirms", low, high
    if high < 0:
        return "refutes", low, high
    return "cannot tell", low, high


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.3g}"


class _ParamSource:
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
    source: _ParamSource,
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
    ci_big, ci_small = _percentile_ci(draws_big, level), _percentile_ci(draws_small, level)
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


def _findings(
    source: _ParamSource,
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
            low, high, _ = _percentile_ci(source.draws(task, method, "pet_size", "alpha"), level)
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


# ----- entry point -------------------------------------------------------------------------------------------


def analyse(
    results: pd.DataFrame,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    heldout: str = "study",
    source: str | None = None,
    compare_additive: bool = True,
    single_factor: bool = True,
) -> Analysis:
    """Fit, evaluate and compare the joint laws of every task and method in a results table.

    ``compare_additive`` also fits the additive law (Tables 2/6); ``single_factor`` the per-model L(D_f) laws
    (Fig. 1). Both cost extra fits and can be turned off for quick looks.
    """
    source = (
        source or str(results.attrs.get("source", "<results table>")) if results is not None else "<none>"
    )
    frame = _validate(results, source)
    if not 0 < level < 1:
        raise DataError(f"confidence level must lie in (0, 1), got {level}")
    if n_bootstrap < 0:
        raise DataError(f"--bootstrap must be ≥ 0, got {n_bootstrap}")
    run_counts = frame.groupby(["task", "method", "status"]).size().reset_index(name="n")
    done = frame[(frame["status"] == "done") & frame["loss"].notna() & (frame["method"] != "base")]
    if done.empty:
        raise DataError(
            f"{source}: no finished runs (status 'done' with a loss) to analyse; "
            f"{len(frame)} run(s) recorded, none done"
        )
    cells = build_cells(done, heldout)
    if cells.empty:
        raise DataError(
            f"{source}: no finished run belongs to a factor (in_model_size / in_pretrain_tokens / in_pet_size "
            "all false); nothing to fit"
        )
    rng = np.random.default_rng(seed)
    fit_rows, ci_rows = [], []
    laws: dict[tuple[str, str, str, str], Any] = {}
    boot_laws: dict[tuple[str, str, str], list[Any]] = {}
    samples_by: dict[tuple[str, str], list[dict[str, dict[str, float]]]] = {}
    notes: list[str] = []
    for (task, method), tm_cells in cells.groupby(["task", "method"], sort=True):
        for factor, group in tm_cells.groupby("factor", sort=False):
            _check_enough(group, str(task), str(method), str(factor))
        for form in ("multiplicative", "additive") if compare_additive else ("multiplicative",):
            joint, factors = _fit_task_method(tm_cells, str(task), str(method), form)
            for factor, law in joint.laws.items():
                group = tm_cells[tm_cells["factor"] == factor]
                fit, held = group[~group["heldout"]], group[group["heldout"]]
                err_fit = _laws.fit_errors(law, fit[["x", "d"]].to_numpy(float), fit["loss"].to_numpy(float))
                err_held = _laws.fit_errors(
                    law, held[["x", "d"]].to_numpy(float), held["loss"].to_numpy(float)
                )
                laws[(task, method, factor, form)] = law
                fit_rows.append(
                    {
                        "task": task,
                        "method": method,
                        "factor": factor,
                        "form": form,
                        **law.params_,
                        "stage1": factor in joint.stage1,
                        "delta_e": err_fit["mad"],
                        "delta_h": err_held["mad"],
                        "n_fit": err_fit["n"],
                        "n_heldout": err_held["n"],
                        "runs": int(group["n_seeds"].sum()),
                        "converged": bool(getattr(law, "converged_", True)),
                    }
                )
            if form != "multiplicative" or n_bootstrap == 0:
                continue
            samples = _bootstrap(factors, joint, n_bootstrap, rng)
            samples_by[(task, method)] = samples
            if len(samples) < n_bootstrap:
                notes.append(
                    f"{task}/{method}: {n_bootstrap - len(samples)} of {n_bootstrap} bootstrap refits "
                    "failed to converge and were dropped"
                )
            for factor, law in joint.laws.items():
                boot_laws[(task, method, factor)] = [
                    _laws.law_from_params("multiplicative", s[factor]) for s in samples if factor in s
                ]
                for param, estimate in law.params_.items():
                    draws = np.array([s[factor][param] for s in samples if factor in s], dtype=float)
                    low, high, se = _percentile_ci(draws, level)
                    ci_rows.append(
                        {
                            "task": task,
                            "method": method,
                            "factor": factor,
                            "param": param,
                            "estimate": float(estimate),
                            "low": low,
                            "high": high,
                            "se": se,
                            "n_resamples": int(draws.size),
                        }
                    )
    fits = pd.DataFrame(fit_rows)
    param_ci = pd.DataFrame(
        ci_rows, columns=["task", "method", "factor", "param", "estimate", "low", "high", "se", "n_resamples"]
    )
    single_fits, single_laws = _single_fits(cells) if single_factor else (pd.DataFrame(), {})
    critical, curves, table5 = _critical(laws, boot_laws, cells, level)
    zero_shot = _zero_shot(done)
    tasks = sorted(cells["task"].unique())
    methods_by_task = {
        t: [m for m in METHOD_ORDER if m in set(cells.loc[cells["task"] == t, "method"])] for t in tasks
    }
    findings = _findings(_ParamSource(fits, samples_by), zero_shot, tasks, methods_by_task, level, rng)
    vs_baseline = _vs_baseline(frame)
    findings += _baseline_findings(vs_baseline, level, rng)
    config = {
        "form": "multiplicative",
        "compare_form": "additive" if compare_additive else None,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": level,
        "heldout": heldout,
        "n_rows": len(frame),
        "n_done": len(done),
        "n_failed": int((frame["status"] == "failed").sum()),
        "critical_search_decades": CRITICAL_SEARCH_DECADES,
    }
    return Analysis(
        source=source,
        config=config,
        run_counts=run_counts,
        cells=cells,
        fits=fits,
        param_ci=param_ci,
        single_fits=single_fits,
        table5=table5,
        table7=_table7(cells),
        critical=critical,
        critical_curves=curves,
        zero_shot=zero_shot,
        findings=findings,
        vs_baseline=vs_baseline,
        laws=laws,
        single_laws=single_laws,
        bootstrap_laws=boot_laws,
        notes=notes,
    )
