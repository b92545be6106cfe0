"""The import mapping: which metric is the loss, and where each field of the results table comes from.

A field comes from a config key (``key``: a dotted path into the run's configuration), a tag (``tag``), a metric
(``metric``: its value at the step the loss was taken from, or its last value), a regular expression with one group
on the run's name, path or tags (``regex`` and ``on``), or a constant (``const``). A YAML file gives the mapping::

    task: wmt19-en-de
    loss: {metric: eval_loss, pick: best}
    fields:
      model_params: {key: model.n_params}
      pretrain_tokens: {regex: 'tok(\\d+)', on: name}
      ft_examples: {key: results.train_samples}
      seed: {const: 0}

and the command line the same in short (``--field pretrain_tokens=regex:tok(\\d+)``); a flag overrides the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ftscale.errors import DataError, UserError

# The fields of the results table an import fills: the study's axes, its labels, and the held-out flag.
FIELDS = (
    "task",
    "method",
    "model_params",
    "model_size",
    "pretrain_tokens",
    "checkpoint_kind",
    "pet_size",
    "ft_examples",
    "seed",
    "factor",
    "heldout",
)
NUMERIC_FIELDS = ("model_params", "pretrain_tokens", "pet_size", "ft_examples", "seed")
SOURCE_KINDS = ("key", "tag", "metric", "regex", "const")
REGEX_TARGETS = ("name", "path", "tags")
PICKS = ("best", "last")


class FieldSource(BaseModel):
    """Where one field's value comes from: exactly one of ``key``, ``tag``, ``metric``, ``regex``, ``const``."""

    model_config = ConfigDict(extra="forbid")
    key: str | None = None
    tag: str | None = None
    metric: str | None = None
    regex: str | None = None
    on: Literal["name", "path", "tags"] = "name"
    const: Any = None

    @model_validator(mode="after")
    def _one_source(self) -> FieldSource:
        given = [kind for kind in SOURCE_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(SOURCE_KINDS)} (got {', '.join(given) or 'none'})"
            )
        if self.regex is not None:
            try:
                pattern = re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} is not a valid regular expression ({exc})") from None
            if pattern.groups != 1:
                raise ValueError(f"regex {self.regex!r} must have exactly one group (...) around the value")
        return self

    def describe(self) -> str:
        if self.regex is not None:
            return f"regex {self.regex!r} on the run's {self.on}"
        kind = next(k for k in SOURCE_KINDS if getattr(self, k) is not None)
        return f"{kind} {getattr(self, kind)!r}"


class LossSource(BaseModel):
    """The loss of a run: a metric (default: the source's own name for the evaluation loss) and which of its
    values — the lowest (``best``, the paper's best dev loss) or the last logged (``last``)."""

    model_config = ConfigDict(extra="forbid")
    metric: str | None = None
    pick: Literal["best", "last"] = "best"


class ImportMapping(BaseModel):
    """The whole mapping; every field is optional (a source fills what its artefacts state, e.g. a PEFT adapter's
    method and rank), but a field the table needs and nothing provides is an error naming the run."""

    model_config = ConfigDict(extra="forbid")
    task: str | None = None
    loss: LossSource = Field(default_factory=LossSource)
    fields: dict[str, FieldSource] = Field(default_factory=dict)
    metrics: dict[str, str] = Field(default_factory=dict)  # extra table columns: column -> metric name

    @model_validator(mode="after")
    def _known_fields(self) -> ImportMapping:
        unknown = sorted(set(self.fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(FIELDS)}")
        return self


def parse_field_flag(text: str) -> tuple[str, FieldSource]:
    """``--field NAME=KIND:VALUE`` (KIND one of key, tag, metric, regex, regex@path, regex@tags, const)."""
    name, sep, rest = text.partition("=")
    kind, sep2, value = rest.partition(":")
    if not sep or not sep2 or not name:
        raise UserError(
            f"--field {text!r}: write NAME=KIND:VALUE, e.g. model_params=key:model.n_params, "
            "seed=const:0 or pretrain_tokens=regex:tok(\\d+)"
        )
    kind, _, on = kind.partition("@")
    if kind not in SOURCE_KINDS or (on and kind != "regex"):
        raise UserError(
            f"--field {text!r}: KIND must be one of {', '.join(SOURCE_KINDS)} (regex@path, regex@tags)"
        )
    payload: dict[str, Any] = {kind: yaml.safe_load(value) if kind == "const" else value}
    if on:
        payload["on"] = on
    return name, _validated(FieldSource, payload, f"--field {text!r}")


def _validated(model: type[BaseModel], payload: Any, where: str) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserError(f"{where}{f': {loc}' if loc else ''}: {message}") from None


def load_mapping(
    path: str | Path | ImportMapping | None = None,
    fields: list[str] | None = None,
    loss: str | None = None,
    pick: str | None = None,
    task: str | None = None,
    metrics: list[str] | None = None,
) -> ImportMapping:
    """The mapping of a YAML file (or a copy of a mapping, if given) with the command line's flags on top;
    ``metrics`` are ``COLUMN=METRIC`` pairs: extra columns of the table (e.g. ``bleu=eval_bleu``)."""
    payload: dict[str, Any] = {}
    where = "the import mapping"
    if isinstance(path, ImportMapping):
        payload = path.model_dump(exclude_none=True)
    elif path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise DataError(f"--mapping {path}: file not found")
        try:
            payload = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise DataError(f"{path}: not valid YAML{line}; fix the file") from None
        if not isinstance(payload, dict):
            raise DataError(f"{path}: expected a mapping with task / loss / fields / metrics")
    mapping = _validated(ImportMapping, payload, where)
    for text in fields or []:
        name, source = parse_field_flag(text)
        if name not in FIELDS:
            raise UserError(f"--field {text!r}: unknown field {name!r}; fields are {', '.join(FIELDS)}")
        mapping.fields[name] = source
    if pick is not None and pick not in PICKS:
        raise UserError(f"--pick {pick!r}: choose best or last")
    if loss is not None:
        mapping.loss.metric = loss
    if pick is not None:
        mapping.loss.pick = pick  # type: ignore[assignment]
    if task is not None:
        mapping.task = task
    for text in metrics or []:
        column, sep, metric = text.partition("=")
        if not sep or not column.strip() or not metric.strip():
            raise UserError(f"--metric {text!r}: write COLUMN=METRIC, e.g. bleu=eval_bleu")
        mapping.metrics[column.strip()] = metric.strip()
    return mapping
