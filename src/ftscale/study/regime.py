"""Whether a study is in the regime where its scaling laws mean anything, before and after its runs.

A finetuning scaling study is evidence about finetuning only when (1) its base models are trained: each reads
enough pretraining tokens per parameter, and a larger model ends with a lower validation loss; and (2) its
finetuning runs converge: the dev loss, not the step cap, ends each run. A study whose runs mostly stop at the cap
fits how much fits in the budget, not how loss scales with data; one whose base models read under a token per
parameter fits an untrained regime. These checks are made visible to users:

- :func:`plan_regime` (``ftscale study plan``): per base model its total and non-embedding parameters, pretraining
  tokens and tokens per parameter; per finetuning cell (method × D_f) the steps and epochs its budget allows.
- :func:`results_regime` (``ftscale study status``, the report): the **budget-bound share** (finished runs whose
  best dev loss came at their last evaluation) per method and D_f, and the ladder's validation losses and whether
  they are ordered.

Every problem is one warning line. Unknown facts (a published model whose spec gives no token count) are shown as
unknown and never guessed. The thresholds are stated here once and imported wherever they are shown.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ftscale.finetune.params import eval_cadence

# Hoffmann et al. (2022): about 20 training tokens per parameter is compute-optimal. The paper's base models read
# 17.7 (16B) to 283 (1B) tokens per parameter; below this a model-size axis measures under-trained models.
MIN_TOKENS_PER_PARAM = 20.0
# A cell whose step cap allows fewer epochs than this over its finetuning data is likely to stop at the cap
# (the paper allowed up to 100 epochs, with early stopping on the dev loss).
MIN_EPOCHS_AT_CAP = 10.0
# Pretraining text read more often than this many epochs stops acting like fresh data (Muennighoff et al., 2023:
# up to ~4 epochs of repeated data are about as good as unique data); ``ftscale study mix`` warns above it.
MAX_PRETRAIN_EPOCHS = 4.0
# Above this share of budget-bound runs the finetuning-data axis measures the budget, not data scaling.
MAX_BUDGET_BOUND_SHARE = 0.10


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not den or _missing(num) or _missing(den):
        return None
    return float(num) / float(den)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int_or_none(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if _missing(value) else float(value)


@dataclass
class BaseModelRegime:
    """One base model: its parameters, pretraining tokens and (after pretraining) final validation loss."""

    name: str
    non_embedding_params: int | None
    total_params: int | None
    pretrain_tokens: int | None
    val_loss: float | None = None

    @property
    def tokens_per_param(self) -> float | None:
        """Pretraining tokens per total parameter (embeddings included); None when either count is unknown."""
        return _ratio(self.pretrain_tokens, self.total_params)

    @property
    def tokens_per_non_embedding_param(self) -> float | None:
        return _ratio(self.pretrain_tokens, self.non_embedding_params)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_param": self.tokens_per_param,
            "tokens_per_non_embedding_param": self.tokens_per_non_embedding_param,
        }


@dataclass
class CellBudget:
    """The finetuning budget of one (method, D_f) cell: the steps it may take and the epochs they make."""

    method: str
    ft_examples: int
    batch_size: int
    max_steps: int
    max_epochs: float | None
    steps: int
    epochs: float
    eval_every: int | None = (
        None  # steps between two dev evaluations (eval_every, or sooner by eval_every_epochs)
    )

    @property
    def capped_by(self) -> str:
        """Which limit sets the budget: "epochs" (max_epochs reached first) or "steps" (the step cap)."""
        return (
            "steps"
            if self.steps == self.max_steps and self.epochs < (self.max_epochs or math.inf)
            else "epochs"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "capped_by": self.capped_by}


@dataclass
class BudgetBoundCell:
    """Finished runs of one (method, D_f) cell and how many of them were budget-bound."""

    method: str
    ft_examples: int
    runs: int
    budget_bound: int

    @property
    def share(self) -> float | None:
        return self.budget_bound / self.runs if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}


@dataclass
class Regime:
    """The regime diagnostics of a study; ``warnings`` has one line per problem."""

    models: list[BaseModelRegime] = field(default_factory=list)
    cells: list[CellBudget] = field(default_factory=list)
    budget_bound: list[BudgetBoundCell] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(c.runs for c in self.budget_bound)

    @property
    def budget_bound_share(self) -> float | None:
        """The share of finished runs that were budget-bound; None before any run finished (or when the
        results do not record the steps a run took)."""
        runs = self.runs
        return sum(c.budget_bound for c in self.budget_bound) / runs if runs else None

    def method_shares(self) -> dict[str, float]:
        shares: dict[str, list[int]] = {}
        for cell in self.budget_bound:
            bound_runs = shares.setdefault(cell.method, [0, 0])
            bound_runs[0] += cell.budget_bound
            bound_runs[1] += cell.runs
        return {method: bound / runs for method, (bound, runs) in shares.items() if runs}

    @property
    def ladder_ordered(self) -> bool | None:
        """Whether every larger base model ends with a lower validation loss than the next smaller one; None when
        fewer than two models have a known loss."""
        known = _ladder(self.models)
        if len(known) < 2:
            return None
        return all(b.val_loss < a.val_loss for a, b in itertools.pairwise(known))  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the keys of ``ftscale study plan --json`` and ``study status --json`` (docs/REGIME.md)."""
        return {
            "thresholds": {
                "min_tokens_per_param": MIN_TOKENS_PER_PARAM,
                "min_epochs_at_cap": MIN_EPOCHS_AT_CAP,
                "max_budget_bound_share": MAX_BUDGET_BOUND_SHARE,
            },
            "base_models": [m.to_dict() for m in self.models],
            "ladder_ordered": self.ladder_ordered,
            "cells": [c.to_dict() for c in self.cells],
            "budget_bound_share": self.budget_bound_share,
            "budget_bound_runs": self.runs,
            "budget_bound_by_method": self.method_shares(),
            "budget_bound": [c.to_dict() for c in self.budget_bound],
            "warnings": list(self.warnings),
        }


def _ladder(models: list[BaseModelRegime]) -> list[BaseModelRegime]:
    """Models with a known validation loss, smallest first (by non-embedding, else total parameters)."""
    known = [m for m in models if m.val_loss is not None and (m.non_embedding_params or m.total_params)]
    return sorted(known, key=lambda m: (m.non_embedding_params or 0, m.total_params or 0))


def _fmt(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:,.0f}"


# --- warnings --------------------------------------------------------------------------------------------------


def tokens_warnings(models: list[BaseModelRegime], where: str) -> list[str]:
    """One line if any base model reads fewer than :data:`MIN_TOKENS_PER_PARAM` tokens per parameter, one if the
    token counts of some models are unknown. ``where`` names the setting to change."""
    lines = []
    # Per total parameter where the total is known; else per non-embedding parameter, which is never smaller, so
    # a model under the line on that count is under it on the total too.
    ratio = {m.name: m.tokens_per_param or m.tokens_per_non_embedding_param for m in models}
    low = [m for m in models if (r := ratio[m.name]) is not None and r < MIN_TOKENS_PER_PARAM]
    if low:
        largest = max(models, key=lambda m: m.total_params or m.non_embedding_params or 0)
        listed = ", ".join(
            f"{m.name} {_fmt(ratio[m.name])}{'' if m.total_params else '†'}"  # type: ignore[arg-type]
            for m in low
        )
        if any(not m.total_params for m in low):
            listed += "; † per non-embedding parameter, the total being unknown"
        need = ""
        if largest.total_params and largest.pretrain_tokens:
            need = f" (the largest, {largest.name}, needs {math.ceil(MIN_TOKENS_PER_PARAM * largest.total_params):,})"
        lines.append(
            f"under-trained base models: {len(low)} of {len(models)} read fewer than {MIN_TOKENS_PER_PARAM:g} "
            f"pretraining tokens per parameter ({listed}); raise {where}{need} or use smaller sizes"
        )
    unknown = [m.name for m in models if m.pretrain_tokens is None]
    if unknown:
        lines.append(
            f"pretraining tokens unknown for {', '.join(unknown)}: tokens per parameter cannot be checked; "
            "give family.hf.models[].tokens (and total_params) to check them"
        )
    return lines


def ladder_warning(models: list[BaseModelRegime]) -> list[str]:
    known = _ladder(models)
    bad = [
        f"{b.name} ({b.val_loss:.3f}) is not below {a.name} ({a.val_loss:.3f})"
        for a, b in itertools.pairwise(known)
        if not b.val_loss < a.val_loss  # type: ignore[operator]
    ]
    if not bad:
        return []
    return [
        "base-model ladder not ordered by validation loss: "
        + "; ".join(bad)
        + ": the model-size axis does not measure model size; pretrain longer or re-tune the pretraining rate"
    ]


def budget_warnings(cells: list[CellBudget]) -> list[str]:
    """One line per method whose step cap allows fewer than :data:`MIN_EPOCHS_AT_CAP` epochs in some cell."""
    lines = []
    by_method: dict[str, list[CellBudget]] = {}
    for cell in cells:
        by_method.setdefault(cell.method, []).append(cell)
    for method, group in by_method.items():
        short = [c for c in group if c.epochs < MIN_EPOCHS_AT_CAP]
        if not short:
            continue
        largest = max(short, key=lambda c: c.ft_examples)
        need = math.ceil(MIN_EPOCHS_AT_CAP * largest.steps / largest.epochs)
        listed = ", ".join(f"D_f={c.ft_examples:,}: {_fmt(c.epochs)}" for c in short)
        lines.append(
            f"short finetuning budget: methods.{method} allows fewer than {MIN_EPOCHS_AT_CAP:g} epochs in "
            f"{len(short)} of {len(group)} cells ({listed}); raise methods.{method}.max_steps to ≥ {need:,}"
            + (
                f" and max_epochs to ≥ {MIN_EPOCHS_AT_CAP:g}"
                if (largest.max_epochs or math.inf) < MIN_EPOCHS_AT_CAP
                else ""
            )
        )
    return lines


def budget_bound_warning(regime: Regime) -> list[str]:
    share = regime.budget_bound_share
    if share is None or share <= MAX_BUDGET_BOUND_SHARE:
        return []
    methods = ", ".join(f"{m} {s:.0%}" for m, s in regime.method_shares().items())
    return [
        f"budget-bound runs: {share:.0%} of {regime.runs} finished runs ({methods}) had their best dev loss at "
        f"their last evaluation, above {MAX_BUDGET_BOUND_SHARE:.0%}: the step cap, not convergence, ended them "
        "and the D_f axis measures the budget; raise max_steps / max_epochs (or the learning rate)"
    ]


# --- before the runs: from the spec ------------------------------------------------------------------------------


def plan_regime(spec: Any) -> Regime:
    """The regime a study spec plans for: its base models' parameters and tokens and every cell's budget."""
    models = planned_models(spec)
    cells = [
        CellBudget(
            method=method,
            ft_examples=n,
            batch_size=params.batch_size,
            max_steps=params.max_steps,
            max_epochs=params.max_epochs,
            steps=params.steps_for(n),
            epochs=params.epochs_for(n),
            eval_every=eval_cadence(n, params.batch_size, params.eval_every, params.eval_every_epochs),
        )
        for method, params in spec.methods.enabled().items()
        for n in sorted(spec.factors.ft_sizes.get(method, []))
    ]
    where = (
        "family.pretrain.total_tokens"
        if spec.family.pretrain is not None
        else "the published models' pretraining"
    )
    warnings = tokens_warnings(models, where) + budget_warnings(cells) + sequence_warning(spec)
    if spec.family.pretrain is None:
        tokens = {m.pretrain_tokens for m in models if m.pretrain_tokens is not None}
        if len(tokens) > 1:
            warnings.append(
                "base models read different pretraining tokens "
                f"({', '.join(f'{m.name} {m.pretrain_tokens:,}' for m in models if m.pretrain_tokens)}): "
                "the model-size axis mixes model size with pretraining data"
            )
    return Regime(models=models, cells=cells, warnings=warnings)


def sequence_warning(spec: Any) -> list[str]:
    """One line when our own base models pretrain on sequences shorter than a finetuning example may be (source
    plus target tokens, before any template): positions past the pretraining length were never trained."""
    pre = spec.family.pretrain
    longest = spec.task.max_source_tokens + spec.task.max_target_tokens
    if pre is None or pre.seq_len >= longest:
        return []
    return [
        f"short pretraining sequences: family.pretrain.seq_len is {pre.seq_len} but a finetuning example may "
        f"hold {longest}+ tokens (task.max_source_tokens + max_target_tokens): the base models never trained "
        f"on those positions; raise seq_len to ≥ {longest} or lower the task's limits"
    ]


def planned_models(spec: Any) -> list[BaseModelRegime]:
    """Every base model of the spec's family, smallest first. Our own ladder: analytic parameter counts at the
    spec's vocabulary size (the trained tokenizer may end a little smaller); published models: the counts and
    tokens the spec gives (unknown when it gives none)."""
    pre = spec.family.pretrain
    if pre is not None:
        from ftscale.models.family import family, spec_parameter_counts

        ladder = family(pre.ladder, vocab_size=spec.tokenizer.vocab_size)
        models = []
        for name in pre.sizes:
            counts = spec_parameter_counts(ladder[name])
            models.append(BaseModelRegime(name, counts.non_embedding, counts.total, pre.total_tokens))
        return models
    return [
        BaseModelRegime(m.name, m.params, m.total_params, m.tokens)
        for m in sorted(spec.family.hf.models, key=lambda m: m.params)
    ]


# --- after the runs: from the results table ---------------------------------------------------------------------


def budget_bound_flags(frame: Any) -> Any:
    """Per finished run whether it was budget-bound: its best dev step is its last evaluated step. The finetuning
    loop always evaluates at the step it ends on, so that step is ``steps_run``; NA where the table lacks it."""
    import pandas as pd

    if "best_step" not in frame.columns or "steps_run" not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="boolean")
    best = pd.to_numeric(frame["best_step"], errors="coerce")
    last = pd.to_numeric(frame["steps_run"], errors="coerce")
    flags = (best >= last).astype("boolean")
    flags[best.isna() | last.isna()] = pd.NA
    return flags


def results_regime(frame: Any) -> Regime:
    """The regime of a study's results table (one row per finetuning run, ``ftscale.study.results`` columns):
    budget-bound share per method and D_f over finished runs, and the base models of the model-size factor with
    their pretraining tokens, total parameters and validation loss where the table has them."""
    runs = frame[frame["method"] != "base"] if "method" in frame.columns else frame
    done = runs[runs["status"] == "done"] if "status" in runs.columns else runs
    flags = budget_bound_flags(done)
    cells = []
    if len(done):
        known = done.assign(_bound=flags)[flags.notna()]
        for (method, n), group in known.groupby(["method", "ft_examples"], sort=True):
            cells.append(BudgetBoundCell(str(method), int(n), len(group), int(group["_bound"].sum())))
    models = results_models(runs)
    regime = Regime(models=models, budget_bound=cells)
    regime.warnings = (
        budget_bound_warning(regime)
        + tokens_warnings([m for m in models if m.pretrain_tokens is not None], "the pretraining tokens")
        + ladder_warning(models)
    )
    return regime


def results_models(runs: Any) -> list[BaseModelRegime]:
    """The base models of the model-size factor's runs (else of the runs at the final checkpoint, else of all
    runs), one per model size, smallest first."""
    if "model_size" not in runs.columns or runs.empty:
        return []
    final = runs
    if "in_model_size" in runs.columns and runs["in_model_size"].fillna(False).astype(bool).any():
        final = runs[runs["in_model_size"].fillna(False).astype(bool)]
    elif "checkpoint_kind" in runs.columns and (runs["checkpoint_kind"] == "final").any():
        final = runs[runs["checkpoint_kind"] == "final"]
    models = []
    for name, group in final.groupby("model_size", sort=False):

        def column(key: str, g: Any = group) -> Any:
            """The model's value of ``key``: the first non-missing one of its runs (they share the base)."""
            values = g[key].dropna() if key in g.columns else ()
            return values.iloc[0] if len(values) else None

        models.append(
            BaseModelRegime(
                name=str(name),
                non_embedding_params=_int_or_none(column("model_params")),
                total_params=_int_or_none(column("base_total_params")),
                pretrain_tokens=_int_or_none(column("pretrain_tokens")),
                val_loss=_float_or_none(column("base_val_loss")),
            )
        )
    return sorted(models, key=lambda m: (m.non_embedding_params or 0, m.total_params or 0))
