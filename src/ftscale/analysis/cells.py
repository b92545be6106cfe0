"""Results tables into cells: loading and validating a study's results, the factors, seed-averaged (X, D_f) cells.

Input is the study's results table (one row per finetuning run; schema in ``REQUIRED_COLUMNS``). Per task and
method the runs are averaged over seeds into (X, D_f) cells and split into fitting and held-out cells (the study's
own held-out flags, or the largest value of each axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ftscale.errors import DataError, FitError
from ftscale.finetune.params import METHODS
from ftscale.laws.evaluation import exact_mean, exact_std
from ftscale.laws.io import read_table
from ftscale.study.spec import MIN_FIT_VALUES

METHOD_ORDER = METHODS


METHOD_LABELS = {"fmt": "FMT", "prompt": "Prompt", "lora": "LoRA"}


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


# A two-stage factor fit needs enough cells to pin (A, α) with β, E shared: at least this many fitting cells,
# over at least two values of X and of D_f.
MIN_FIT_CELLS = MIN_FIT_VALUES**2  # ≥ 2 values of X × ≥ 2 of D_f


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
    if path.suffix not in (".parquet", ".csv", ".tsv", ".txt"):
        raise DataError(f"{path}: unknown results format {path.suffix!r}; use .csv or .parquet")
    frame = read_table(path, empty="the results table is empty (no runs recorded yet); run the study first")
    frame.attrs["source"] = str(path)
    return frame


def validate_results(results: pd.DataFrame, source: str) -> pd.DataFrame:
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


def check_enough(cells: pd.DataFrame, task: str, method: str, factor: str) -> None:
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
