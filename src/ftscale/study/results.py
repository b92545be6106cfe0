"""The analysis-ready results table of a study: one row per finetuning run, in the report's column contract.

The store keeps one row per job with its factor memberships as held-out flags per factor; the report wants
``in_<factor>`` booleans, ``model_params`` as X of the model-size factor, one ``pet_size`` factor for prompt length
and LoRA rank, the task name, and zero-/few-shot scores as flat columns. This module is the only translation
between the two, so a CSV exported from here can be analysed without the store (``ftscale report results.csv``).

The un-finetuned baselines (``baseline`` jobs) are a separate table in the same columns, with ``method`` "base" and
no ``ft_examples`` / ``seed`` / ``pet_size``: :func:`baseline_table`. The finetuning table never holds them;
``export_results(..., baselines=True)`` appends them, and the report uses "base" rows only as the zero-/few-shot
reference (never in a fit).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ftscale.finetune.params import planned_steps, steps_per_epoch
from ftscale.study.store import METRIC_COLUMNS, Store, write_table

# Columns of the contract, first in this order; every other metric follows.
LEADING_COLUMNS = (
    "run_id",
    "task",
    "method",
    "status",
    "reason",
    "in_model_size",
    "in_pretrain_tokens",
    "in_pet_size",
    "heldout_model_size",
    "heldout_pretrain_tokens",
    "heldout_pet_size",
    "model_size",
    "model_params",
    "pretrain_tokens",
    "checkpoint_kind",
    "pet_size",
    "ft_examples",
    "seed",
    *METRIC_COLUMNS,
)


def _json(value: Any) -> dict[str, Any]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def _either(a: pd.Series, b: pd.Series) -> pd.Series:
    """Held-out flag of the PET factor: prompt length for prompt tuning, LoRA rank for LoRA."""
    return a.where(a.notna(), b)


def results_table(study_dir: str | Path, all_plans: bool = False) -> pd.DataFrame:
    """One row per finetuning run of the study in ``study_dir`` (every status; the report keeps ``done`` ones).

    Only the runs of the current plan are included: after ``study run --force`` with a changed spec, the jobs of
    the older plan stay in the store but are not results of this study (``all_plans=True`` includes them)."""
    return _table(study_dir, "finetune", all_plans)


def baseline_table(study_dir: str | Path, all_plans: bool = False) -> pd.DataFrame:
    """One row per baseline job (a base checkpoint evaluated without finetuning) in the columns of
    :func:`results_table`: ``method`` is "base", the ``in_<factor>`` flags say which factors' runs use that base,
    and ``loss``, ``bleu``, ``chrf``, ``rougeL``, ``zs_*``, ``fs*`` are its scores on the runs' prompts."""
    return _table(study_dir, "baseline", all_plans)


def _table(study_dir: str | Path, kind: str, all_plans: bool = False) -> pd.DataFrame:
    with Store.open(study_dir) as store:
        frame = store.to_dataframe()
        current = store.meta("spec_hash")
    if not frame.empty and not all_plans and current is not None:
        frame = frame[frame["spec_hash"] == current]
    runs = frame[frame["kind"] == kind].copy() if not frame.empty else frame
    if runs.empty:
        return pd.DataFrame(columns=list(LEADING_COLUMNS))
    params = runs["params"].map(_json)
    metrics = runs["metrics"].map(_json)
    runs["run_id"] = runs["id"]
    runs["task"] = params.map(lambda p: (p.get("task") or {}).get("name"))
    runs["model_params"] = runs["non_embedding_params"]
    pet_heldout = _either(runs["heldout_prompt_length"], runs["heldout_lora_rank"])
    runs["heldout_pet_size"] = pet_heldout
    runs["in_model_size"] = runs["heldout_model_size"].notna()
    runs["in_pretrain_tokens"] = runs["heldout_pretrain_tokens"].notna()
    runs["in_pet_size"] = pet_heldout.notna()
    for column in ("heldout_model_size", "heldout_pretrain_tokens", "heldout_pet_size"):
        runs[column] = runs[column].astype("boolean")
    # Zero-/few-shot scores and other per-run numbers the store keeps only in its JSON column.
    extra = pd.DataFrame.from_records(
        [{k: v for k, v in m.items() if k.startswith(("zs_", "fs"))} for m in metrics], index=runs.index
    )
    for column in ("steps_run", "train_tokens", "tokens_per_s", "n_test_tokens"):  # not promoted by the store
        runs[column] = pd.to_numeric(metrics.map(lambda m, c=column: m.get(c)), errors="coerce")
    runs = runs.assign(**_epochs(params, metrics, runs))  # NaN for baselines: they do not train
    # The base model of each run: all its parameters and its validation loss at the run's checkpoint (the study's
    # regime diagnostics: tokens per parameter, the ladder's order). Our own family's come from the pretraining
    # job; a published model's total from the run itself, and it has no validation loss here.
    pretrain_metrics = {
        row_id: _json(m)
        for row_id, kind, m in zip(frame["id"], frame["kind"], frame["metrics"], strict=True)
        if kind == "pretrain"
    }
    bases = [
        _base_facts(p.get("base") or {}, m, pretrain_metrics) for p, m in zip(params, metrics, strict=True)
    ]
    runs["base_total_params"] = pd.to_numeric(
        pd.Series([b[0] for b in bases], index=runs.index), errors="coerce"
    )
    runs["base_val_loss"] = pd.to_numeric(pd.Series([b[1] for b in bases], index=runs.index), errors="coerce")
    runs = pd.concat([runs, extra], axis=1)
    leading = [c for c in LEADING_COLUMNS if c in runs.columns]
    dropped = {"id", "kind", "label", "params", "metrics", "environment", "non_embedding_params", "factors"}
    dropped |= {c for c in runs.columns if c in ("heldout_prompt_length", "heldout_lora_rank")}
    rest = [c for c in runs.columns if c not in leading and c not in dropped]
    return runs[leading + rest].reset_index(drop=True)


def _epochs(params: pd.Series, metrics: pd.Series, runs: pd.DataFrame) -> dict[str, pd.Series]:
    """Each finetuning run's budget and use of it in passes over its data: ``epochs_allowed`` (the budget its
    step cap and epoch limit allow), ``epochs_run`` (steps taken), ``best_epoch`` (where its best dev loss was),
    and ``stopped_early`` (the dev loss, not the budget, ended it). NaN where the job did not record them."""
    allowed, run, best = [], [], []
    for p, m, steps, best_step in zip(params, metrics, runs["steps_run"], runs["best_step"], strict=True):
        config = p.get("method_config") or {}
        n = m.get("n_train_examples") or p.get("ft_examples")
        batch = config.get("batch_size")
        if not n or not batch:
            allowed.append(math.nan), run.append(math.nan), best.append(math.nan)
            continue
        per_epoch = steps_per_epoch(int(n), int(batch))
        budget = planned_steps(
            int(n), int(batch), config.get("max_steps", math.inf), config.get("max_epochs")
        )
        allowed.append(budget / per_epoch)
        run.append(math.nan if pd.isna(steps) else steps / per_epoch)  # pending or failed: not recorded
        best.append(math.nan if best_step is None or pd.isna(best_step) else best_step / per_epoch)
    index = runs.index
    return {
        "epochs_allowed": pd.Series(allowed, index=index, dtype=float),
        "epochs_run": pd.Series(run, index=index, dtype=float),
        "best_epoch": pd.Series(best, index=index, dtype=float),
        "stopped_early": metrics.map(lambda m: m.get("stopped_early")).astype("boolean"),
    }


def _base_facts(
    base: dict[str, Any], metrics: dict[str, Any], pretrain_metrics: dict[str, dict[str, Any]]
) -> tuple[float | None, float | None]:
    """(total parameters, validation loss) of a run's base checkpoint; None where unknown."""
    if base.get("source") != "pretrain":
        return metrics.get("base_total_params"), None
    pretrained = pretrain_metrics.get(base.get("pretrain_job"), {})
    annealed = base.get("checkpoint") == "annealed"
    val_loss = next(
        (
            c.get("val_loss")
            for c in pretrained.get("checkpoints") or []
            if c.get("budget") == base.get("tokens") and bool(c.get("annealed")) == annealed
        ),
        None,
    )
    return pretrained.get("total_params"), val_loss


def export_results(study_dir: str | Path, out: str | Path, fmt: str, baselines: bool = False) -> Path:
    """Write :func:`results_table` to CSV or Parquet atomically; ``baselines`` appends :func:`baseline_table`'s
    rows (``method`` "base") so the report can compare zero-/few-shot scores with the un-finetuned models."""
    table = results_table(study_dir)
    if baselines:
        table = with_baselines(table, baseline_table(study_dir))
    return write_table(table, out, fmt)


def with_baselines(runs: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """The finetuning runs followed by the baseline rows, in the runs' column order (columns only one side has
    come last)."""
    if baselines.empty:
        return runs
    if runs.empty:
        return baselines.reset_index(drop=True)
    columns = list(runs.columns) + [c for c in baselines.columns if c not in runs.columns]
    return pd.concat([runs, baselines], ignore_index=True)[columns]
