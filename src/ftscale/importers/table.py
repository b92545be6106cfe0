"""Raw runs + a mapping → the results table of ``ftscale study export`` (one row per finetuning run).

Every field is resolved per run from the mapping (or from what the source states itself, such as a PEFT adapter's
rank); a field that is needed and missing, or whose source gives two different values, stops the import with one
line naming the run and the field. Nothing is filled in silently.

Which scaling factor a run belongs to (``in_model_size``, ``in_pretrain_tokens``, ``in_pet_size``) comes from the
mapping's ``factor`` field (comma-separated factor names) or, by default, from the grid itself, the paper's design:
a factor varies its own axis with the others at the grid's anchor —

- model size: each model at its last pretraining checkpoint, PET methods at their anchor PET size;
- pretraining tokens: the checkpoints of a model that has several, at the anchor PET size;
- PET size: the PET sizes of a base checkpoint that has several;

where a method's anchor PET size is the one used with the most base checkpoints. The cells of each factor must then
differ only in that factor's axis; two runs of one cell that differ in another axis are an error that asks for an
explicit ``factor`` field.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ftscale.errors import DataError
from ftscale.finetune.params import METHODS
from ftscale.importers.mapping import NUMERIC_FIELDS, FieldSource, ImportMapping
from ftscale.importers.sources import DEFAULT_LOSS, RawRun
from ftscale.study.results import LEADING_COLUMNS

FACTOR_NAMES = ("model_size", "pretrain_tokens", "pet_size")
_METHOD_ALIASES = {
    "full": "fmt",
    "full-model": "fmt",
    "full_model": "fmt",
    "finetune": "fmt",
    "full-finetuning": "fmt",
    "prompt-tuning": "prompt",
    "prompt_tuning": "prompt",
    "prefix": None,
}
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmbgt]?)\s*$", re.I)


def _label(run: RawRun) -> str:
    return f"run {run.name!r} ({run.path})"


def _fail(run: RawRun, name: str, message: str) -> DataError:
    return DataError(f"{_label(run)}: {name}: {message}")


def _hint(wanted: str, available: list[str]) -> str:
    close = difflib.get_close_matches(wanted, available, n=3)
    if close:
        return f"did you mean {', '.join(repr(c) for c in close)}?"
    shown = ", ".join(sorted(available)[:12]) or "none"
    return f"it has {shown}{' …' if len(available) > 12 else ''}"


def as_count(value: Any) -> float | None:
    """A number, also written with a suffix (``600k``, ``1.2M``, ``7B``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    match = _COUNT.match(str(value))
    if match is None:
        return None
    return float(match.group(1)) * _SUFFIX.get(match.group(2).lower(), 1.0)


def params_label(count: float) -> str:
    """A model's name from its parameter count when none is given: ``2.99k``, ``1.3M``, ``7B`` (a text, not a
    number, in a CSV)."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.3g}p"


def _regex_target(run: RawRun, on: str) -> str:
    if on == "tags":
        return ",".join(f"{k}={v}" if v != "true" else k for k, v in sorted(run.tags.items()))
    return run.path if on == "path" else run.name


def _at_step(series: list[tuple[float, float]], step: float | None) -> float:
    """A metric's value at the loss's step if it was logged there, else its last value."""
    if step is not None:
        for s, value in series:
            if s == step:
                return value
    return max(series, key=lambda item: item[0])[1]


def _resolve(run: RawRun, name: str, source: FieldSource, loss_step: float | None) -> Any:
    if source.const is not None:
        return source.const
    if source.key is not None:
        if source.key not in run.config:
            raise _fail(
                run, name, f"config key {source.key!r} not found; {_hint(source.key, list(run.config))}"
            )
        return run.config[source.key]
    if source.tag is not None:
        if source.tag not in run.tags:
            raise _fail(run, name, f"tag {source.tag!r} not found; {_hint(source.tag, list(run.tags))}")
        return run.tags[source.tag]
    if source.metric is not None:
        if source.metric in run.series:
            return _at_step(run.series[source.metric], loss_step)
        if source.metric in run.summary:
            return run.summary[source.metric]
        metrics = sorted(set(run.series) | set(run.summary))
        raise _fail(run, name, f"metric {source.metric!r} not logged; {_hint(source.metric, metrics)}")
    target = _regex_target(run, source.on)
    found = set(re.findall(source.regex or "", target))
    if not found:
        raise _fail(run, name, f"regex {source.regex!r} does not match the run's {source.on} {target!r}")
    if len(found) > 1:
        raise _fail(
            run, name, f"ambiguous: regex {source.regex!r} matches {sorted(found)} in the run's {source.on}"
        )
    return found.pop()


@dataclass(frozen=True)
class LossPick:
    """The loss of a run: its metric, the value taken and at which step, and where its best value and its last
    evaluation were (the regime check compares those two: a run whose best came last was budget-bound)."""

    metric: str
    value: float
    step: float | None
    best_step: float | None
    last_step: float | None


def pick_loss(run: RawRun, mapping: ImportMapping) -> LossPick:
    """The lowest (``best``) or the last logged value of the loss metric; a metric with no history (only a final
    value, e.g. ``eval_results.json``) gives that value and no steps."""
    wanted = mapping.loss.metric
    known = set(run.series) | set(run.summary)
    if wanted is None:
        present = [m for m in DEFAULT_LOSS[run.source] if m in known]
        if not present:
            raise _fail(
                run, "loss", f"no {' / '.join(DEFAULT_LOSS[run.source])} logged; say which metric is the loss "
                f"with --loss METRIC ({_hint('loss', sorted(known))})",
            )  # fmt: skip
        wanted = present[0]
    series = sorted((s, v) for s, v in run.series.get(wanted, []) if math.isfinite(v))
    if series:
        best_step, best = min(series, key=lambda item: item[1])
        last_step, last = series[-1]
        if mapping.loss.pick == "best":
            return LossPick(wanted, best, best_step, best_step, last_step)
        return LossPick(wanted, last, last_step, best_step, last_step)
    if wanted in run.summary:
        return LossPick(wanted, float(run.summary[wanted]), None, None, None)
    raise _fail(run, "loss", f"metric {wanted!r} not logged; {_hint(wanted, sorted(known))}")


def _method(run: RawRun, value: Any) -> str:
    text = str(value).strip().lower()
    method = _METHOD_ALIASES.get(text, text)
    if method not in METHODS:
        raise _fail(
            run, "method", f"{value!r} is not a finetuning method ftscale models ({', '.join(METHODS)})"
        )
    return method


def run_row(run: RawRun, mapping: ImportMapping) -> dict[str, Any]:
    """One row of the results table for one run."""
    picked = pick_loss(run, mapping)
    step = picked.step
    row: dict[str, Any] = {"loss": picked.value, "loss_metric": picked.metric, "best_step": picked.best_step}
    for name in ("method", "model_params", "model_size", "pretrain_tokens", "checkpoint_kind", "pet_size",
                 "ft_examples", "seed", "factor", "heldout", "task"):  # fmt: skip
        source = mapping.fields.get(name)
        if name == "pet_size" and row["method"] is not None and _method(run, row["method"]) == "fmt":
            value = None  # full-model tuning has no PET size: a mapping for PET runs need not match it
        elif source is not None:
            value = _resolve(run, name, source, step)
        elif name in run.defaults:
            value = run.defaults[name]
        else:
            value = None
        if value is None and name in run.problems:
            row[f"_{name}_problem"] = run.problems[name]
        if name in NUMERIC_FIELDS and value is not None:
            number = as_count(value)
            if number is None or number < 0:
                raise _fail(run, name, f"{value!r} is not a non-negative number")
            value = number
        row[name] = value
    if row["method"] is None:
        why = row.pop("_method_problem", "nothing gives it")
        raise _fail(run, "method", f"{why}; map it (--field method=tag:NAME, or const:lora)")
    row["method"] = _method(run, row["method"])
    if row["ft_examples"] is None:
        raise _fail(
            run, "ft_examples", "the finetuning-data size is not given; map it (--field ft_examples=key:KEY, "
            "regex:PATTERN or const:N)",
        )  # fmt: skip
    if row["method"] != "fmt" and row["pet_size"] is None:
        raise _fail(
            run, "pet_size", f"a {row['method']} run needs its PET size; map it (--field pet_size=...)"
        )
    if row["method"] == "fmt":
        row["pet_size"] = None
    if all(row[c] is None for c in ("model_params", "pretrain_tokens", "pet_size")):
        why = row.get("_model_params_problem") or "none of model_params, pretrain_tokens, pet_size is given"
        raise _fail(run, "model_params", f"{why}; map at least one scaling factor (--field model_params=...)")
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    row["task"] = str(row["task"]) if row["task"] is not None else (mapping.task or "task")
    if row["model_size"] is None and row["model_params"] is not None:
        row["model_size"] = params_label(row["model_params"])
    for column, wanted in mapping.metrics.items():
        row[column] = _resolve(run, column, FieldSource(metric=wanted), step)
    row["steps_run"] = picked.last_step  # the last evaluation: the regime check's budget-bound test
    row["base_total_params"] = run.defaults.get("base_total_params")
    row["run_id"] = hashlib.sha1(run.path.encode()).hexdigest()[:16]
    row["run_name"] = run.name
    row["source"] = run.source
    row["source_path"] = run.path
    row["status"] = "done"
    return row


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "heldout", "held-out")
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def _factor_members(frame: pd.DataFrame, runs: list[RawRun]) -> pd.DataFrame:
    """``in_<factor>`` flags: from the ``factor`` field where given, otherwise from the grid (module docstring)."""
    for name in FACTOR_NAMES:
        frame[f"in_{name}"] = False
    explicit = frame["factor"].notna()
    for index in frame.index[explicit]:
        names = [n.strip() for n in re.split(r"[,;+ ]+", str(frame.at[index, "factor"])) if n.strip()]
        unknown = [n for n in names if n not in FACTOR_NAMES]
        if unknown:
            raise _fail(runs[index], "factor", f"{unknown[0]!r} is not a factor ({', '.join(FACTOR_NAMES)})")
        if "pet_size" in names and frame.at[index, "method"] == "fmt":
            raise _fail(runs[index], "factor", "a full-model tuning run has no PET size factor")
        for n in names:
            frame.at[index, f"in_{n}"] = True
    auto = frame[~explicit]
    for (_task, method), group in auto.groupby(["task", "method"], sort=False):
        # a model: its parameter count, or its name where only the name is given
        model = (
            group["model_params"].map(lambda v: f"{v:.12g}", na_action="ignore").fillna(group["model_size"])
        )
        model = model.fillna("")
        base = list(zip(model, group["pretrain_tokens"].fillna(-1), strict=True))
        group = group.assign(_base=base)
        anchor = None
        if method != "fmt":
            bases_per_size = group.groupby("pet_size")["_base"].nunique()
            anchor = bases_per_size.idxmax()
            if (bases_per_size == bases_per_size.max()).sum() > 1 and len(bases_per_size) > 1:
                sizes = sorted(bases_per_size[bases_per_size == bases_per_size.max()].index)
                raise DataError(
                    f"{method} runs: cannot tell the anchor PET size from the grid (sizes {sizes} are each used "
                    "with as many base checkpoints); give each run its factor (--field factor=...)"
                )
        at_anchor = group["pet_size"].eq(anchor) if anchor is not None else pd.Series(True, index=group.index)
        last = group.groupby(model)["pretrain_tokens"].transform("max")
        final = group["pretrain_tokens"].isna() | group["pretrain_tokens"].eq(last)
        frame.loc[group.index, "in_model_size"] = group["model_params"].notna() & final & at_anchor
        checkpoints = group.groupby(model)["pretrain_tokens"].transform("nunique")
        frame.loc[group.index, "in_pretrain_tokens"] = (
            group["pretrain_tokens"].notna() & (checkpoints > 1) & at_anchor
        )
        if method != "fmt":
            sizes = group.groupby("_base")["pet_size"].transform("nunique")
            frame.loc[group.index, "in_pet_size"] = sizes > 1
        if "checkpoint_kind" in frame.columns:
            kinds = frame.loc[group.index, "checkpoint_kind"]
            frame.loc[group.index, "checkpoint_kind"] = kinds.where(
                kinds.notna(), final.map({True: "final", False: "intermediate"})
            )
    _check_cells(frame, runs)
    return frame


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


_AXIS = {"model_size": "model_params", "pretrain_tokens": "pretrain_tokens", "pet_size": "pet_size"}


def _check_cells(frame: pd.DataFrame, runs: list[RawRun]) -> None:
    """Within a factor, the runs of one (task, method, X, D_f) cell may differ only in their seed."""
    for name, x_column in _AXIS.items():
        members = frame[frame[f"in_{name}"]]
        others = [c for c in (*_AXIS.values(), "model_size") if c != x_column]
        for _key, cell in members.groupby(["task", "method", x_column, "ft_examples"], dropna=False):
            for other in others:
                values = cell[other].dropna().unique()
                if len(values) > 1:
                    first = cell.index[cell[other] == values[0]][0]
                    second = cell.index[cell[other] == values[1]][0]
                    raise DataError(
                        f"{_label(runs[first])} and {_label(runs[second])} are in the {name} factor at the same "
                        f"{x_column} and ft_examples but differ in {other} ({_show(values[0])} vs {_show(values[1])}); "
                        "give each run its factor (--field factor=...)"
                    )
            seeds = cell["seed"].fillna(-1)
            if seeds.duplicated().any():
                dup = cell.index[seeds.duplicated(keep=False)]
                raise DataError(
                    f"{_label(runs[dup[0]])} and {_label(runs[dup[1]])}: two runs of one {name} cell "
                    f"({x_column} {cell[x_column].iloc[0]:g}, ft_examples {cell['ft_examples'].iloc[0]:g}) with "
                    "the same seed; map what tells them apart (seed, model_params or model_size, pretrain_tokens, "
                    "pet_size) or import each run once"
                )


def results_frame(runs: list[RawRun], mapping: ImportMapping) -> pd.DataFrame:
    """The results table of the imported runs, in :data:`LEADING_COLUMNS` order and then the import's own
    columns (the loss metric and step, the run's name, source and path)."""
    if not runs:
        raise DataError("no runs to import")
    frame = pd.DataFrame.from_records([run_row(run, mapping) for run in runs])
    seen = frame["run_id"].duplicated(keep=False)
    if seen.any():
        first = frame.index[seen][0]
        raise DataError(f"{_label(runs[first])} is imported twice (two locations hold it); give it once")
    frame = _factor_members(frame, runs)
    held = frame.pop("heldout")
    if held.notna().any():  # no held-out flags at all: the analysis holds out the largest values of each axis
        flags = held.map(lambda v: _flag(v) if v is not None else False)
        for name in FACTOR_NAMES:
            frame[f"heldout_{name}"] = flags.where(frame[f"in_{name}"]).astype("boolean")
    frame = frame.drop(columns=["factor"])
    leading = [c for c in LEADING_COLUMNS if c in frame.columns]
    return frame[leading + [c for c in frame.columns if c not in leading]]
