"""The study specification (``study.yaml``): pydantic models, loading, and one-line-per-problem validation.

A study names a task, a model family (pretrained here or loaded from the Hugging Face hub), the finetuning
methods with their hyperparameters, and the factor grids of the paper's Table 1b. ``load_spec`` reports every
problem as ``file: yaml.path: message`` before any work starts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ftscale.errors import SpecError
from ftscale.finetune.params import METHODS, FmtParams, LoraParams, MethodParams, PromptParams

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
PET_FACTOR_OF_METHOD = {"prompt": "prompt_length", "lora": "lora_rank"}
TASK_NAME_PATTERN = r"^[a-z][a-z0-9_\-]*(/[a-z0-9_\-]+)?$"
DIRECTION_PATTERN = r"^[a-z]{2,3}-[a-z]{2,3}$"
# A held-out set must leave this many values of every grid axis to fit: the report's two-stage fit needs cells
# over at least two values of X and of D_f (``ftscale.analysis.cells`` imports it from here).
MIN_FIT_VALUES = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    """Which task to load from the data registry and how to cut it."""

    name: Annotated[str, Field(pattern=TASK_NAME_PATTERN)]
    data_dir: str | None = None
    max_source_tokens: PositiveInt = 128
    max_target_tokens: PositiveInt = 128
    train_pool: PositiveInt | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class TokenizerSpec(_Strict):
    vocab_size: Annotated[int, Field(ge=64)] = 8000


class PretrainSpec(_Strict):
    """Our own family: one pretraining run per size, with checkpoints at token budgets."""

    sizes: Annotated[list[str], Field(min_length=1)]
    ladder: Literal["cpu", "demo", "paper"] = "cpu"
    total_tokens: PositiveInt
    seq_len: PositiveInt = 128
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 1e-3
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    warmup_tokens: Annotated[int, Field(ge=0)] = 0
    annealed: bool = False
    # "task": the task's own monolingual text; "shared": the corpus built from all real data's training splits
    corpus: Literal["task", "shared"] | None = None
    seed: int = 0


class HfCheckpoint(_Strict):
    revision: Annotated[str, Field(min_length=1)]
    tokens: PositiveInt


class HfModel(_Strict):
    """A published model: ``name`` is its size label in the study, ``params`` the X used for model size."""

    name: Annotated[str, Field(min_length=1)]
    id: Annotated[str, Field(min_length=1)]
    revision: str | None = None
    params: PositiveInt
    # the pretraining tokens of the final model, and all its parameters (embeddings included): the study's
    # tokens-per-parameter check uses them; absent, it reports them as unknown
    tokens: PositiveInt | None = None
    total_params: PositiveInt | None = None
    checkpoints: list[HfCheckpoint] = Field(default_factory=list)


class HfFamilySpec(_Strict):
    models: Annotated[list[HfModel], Field(min_length=1)]


class FamilySpec(_Strict):
    pretrain: PretrainSpec | None = None
    hf: HfFamilySpec | None = None


class MethodsSpec(_Strict):
    """Each method's hyperparameters (:mod:`ftscale.finetune.params` holds their defaults); absent: not run."""

    fmt: FmtParams | None = None
    prompt: PromptParams | None = None
    lora: LoraParams | None = None

    def enabled(self) -> dict[str, MethodParams]:
        return {name: cfg for name in METHODS if (cfg := getattr(self, name)) is not None}


class PretrainTokensFactor(_Strict):
    budgets: Annotated[list[PositiveInt], Field(min_length=1)]
    checkpoint_kind: Literal["intermediate", "annealed", "both"] = "intermediate"


NonEmptyPositiveInts = Annotated[list[PositiveInt], Field(min_length=1)]


class FactorsSpec(_Strict):
    """The grids; a factor left out (or null) is not swept."""

    model_size: Annotated[list[str], Field(min_length=1)] | None = None
    pretrain_tokens: PretrainTokensFactor | None = None
    prompt_length: NonEmptyPositiveInts | None = None
    lora_rank: NonEmptyPositiveInts | None = None
    ft_sizes: dict[str, NonEmptyPositiveInts]
    seeds: PositiveInt = 3


class HeldoutSpec(_Strict):
    """Held-out values per axis; an axis left out gets the paper's default (see ``resolved_heldout``)."""

    model_size: list[str] | None = None
    pretrain_tokens: list[PositiveInt] | None = None
    prompt_length: list[PositiveInt] | None = None
    lora_rank: list[PositiveInt] | None = None
    ft_sizes: dict[str, list[PositiveInt]] | None = None


class EvaluationSpec(_Strict):
    generation: bool = True
    max_eval_examples: PositiveInt | None = None
    max_new_tokens: PositiveInt = 64
    zero_shot: list[Annotated[str, Field(pattern=DIRECTION_PATTERN)]] = Field(default_factory=list)
    few_shot: list[PositiveInt] = Field(default_factory=lambda: [1, 5])
    # Generation, zero-shot and few-shot scoring cost more than training a small model: run them for the first
    # N seeds of every cell only (null: all seeds). The loss is always computed for every run.
    generation_seeds: PositiveInt | None = None

    def for_seed(self, seed: int) -> dict[str, Any]:
        """The evaluation settings of one run (what its job id hashes)."""
        settings = self.model_dump(mode="json", exclude={"generation_seeds"})
        if self.generation_seeds is not None and seed >= self.generation_seeds:
            settings.update(generation=False, zero_shot=[], few_shot=[])
        return settings


# sbatch options that execution.slurm sets through its own fields, or that ftscale itself sets (logs, arrays)
SLURM_RESERVED_OPTIONS = {
    "partition": "partition",
    "time": "time_min",
    "mem": "mem_gb",
    "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "account": "account",
    "qos": "qos",
    "constraint": "constraint",
    "array": "array_parallelism",
    "nodes": None,  # one task on one node per job: more would run the job more than once
    "ntasks": None,
    "ntasks-per-node": None,
    "job-name": None,
    "output": None,
    "error": None,
    "open-mode": None,
    "signal": None,
}
SLURM_OPTION_PATTERN = r"^[a-z][a-z0-9_\-]*$"
SlurmText = Annotated[str, Field(min_length=1)]


class SlurmSpec(_Strict):
    """Resources of one job's Slurm task for ``study run --backend slurm`` (each ftscale job is one task of a job
    array). Unset fields take the cluster's defaults, except ``time_min`` and the two that default to the execution
    section's ``cpus_per_job`` and ``gpus_per_job``."""

    partition: SlurmText | None = None
    time_min: PositiveInt = 60  # wall-time limit of one job in minutes; a job that runs longer is retried
    mem_gb: PositiveFloat | None = None
    cpus_per_task: PositiveInt | None = None  # default: execution.cpus_per_job (also the job's thread count)
    gpus_per_node: Annotated[int, Field(ge=0)] | None = None  # default: execution.gpus_per_job, rounded up
    account: SlurmText | None = None
    qos: SlurmText | None = None
    constraint: SlurmText | None = None
    array_parallelism: PositiveInt | None = None  # at most this many tasks of one array run at once
    # any other sbatch option, e.g. {mail-type: END, exclude: "node[1-2]"}: passed to sbatch as --key=value
    additional_parameters: dict[str, Any] = Field(default_factory=dict)


class ExecutionSpec(_Strict):
    """How to run, not what: excluded from job ids and from the study's identity."""

    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: PositiveInt | None = None
    cpus_per_job: PositiveInt = 1
    gpus_per_job: Annotated[float, Field(ge=0)] = 0.0
    # Where pretrained families are kept and shared between studies (ftscale.study.cache): a directory, or
    # "off" to keep every job in the study directory; unset: $FTSCALE_FAMILY_CACHE, else the user's cache dir.
    family_cache: str | None = None
    # Resources of each job's Slurm task (``study run --backend slurm``); unset: the defaults of SlurmSpec.
    slurm: SlurmSpec | None = None

    def slurm_resources(self) -> SlurmSpec:
        """The Slurm block with its defaults filled in from ``cpus_per_job`` and ``gpus_per_job``."""
        block = self.slurm or SlurmSpec()
        return block.model_copy(
            update={
                "cpus_per_task": block.cpus_per_task or self.cpus_per_job,
                "gpus_per_node": block.gpus_per_node
                if block.gpus_per_node is not None
                else math.ceil(self.gpus_per_job),
            }
        )


class StudySpec(_Strict):
    name: Annotated[str, Field(min_length=1)]
    task: TaskSpec
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    family: FamilySpec
    methods: MethodsSpec
    factors: FactorsSpec
    base_model: str | None = None
    heldout: HeldoutSpec = Field(default_factory=HeldoutSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    # Where the spec was read from, for errors found after loading (e.g. by the study's data preflight).
    _source: str = PrivateAttr(default="study.yaml")

    @property
    def source(self) -> str:
        """The study file this spec was read from (``study.yaml`` when it was parsed from a mapping)."""
        return self._source

    # --- derived views -------------------------------------------------------------------------------
    @property
    def size_names(self) -> list[str]:
        """Model sizes of the family, smallest first (HF models are ordered by parameter count)."""
        if self.family.pretrain is not None:
            return list(self.family.pretrain.sizes)
        assert self.family.hf is not None
        return [m.name for m in sorted(self.family.hf.models, key=lambda m: m.params)]

    @property
    def base_size(self) -> str:
        """The base model of every non-model-size sweep: the smallest size unless named."""
        return self.base_model or self.size_names[0]

    @property
    def model_sizes(self) -> list[str]:
        return list(self.factors.model_size) if self.factors.model_size is not None else []

    def hf_model(self, name: str) -> HfModel:
        assert self.family.hf is not None
        return next(m for m in self.family.hf.models if m.name == name)

    def resolved_heldout(self) -> dict[str, Any]:
        """Held-out values per axis: as given, else the paper's choice (§2.7): the largest value of each axis,
        and the second largest pretraining budget (an interior checkpoint). Only axes with ≥ 3 values get a
        default hold-out, so that at least two values remain for fitting."""
        given = self.heldout
        f = self.factors

        def largest(values: list[Any] | None, interior: bool = False) -> list[Any]:
            ordered = sorted(set(values or []))
            if len(ordered) < 3:
                return []
            return [ordered[-2] if interior else ordered[-1]]

        sizes_order = [s for s in self.size_names if s in self.model_sizes]
        default_size = sizes_order[-1:] if len(sizes_order) >= 3 else []
        return {
            "model_size": given.model_size if given.model_size is not None else default_size,
            "pretrain_tokens": given.pretrain_tokens
            if given.pretrain_tokens is not None
            else largest(f.pretrain_tokens.budgets if f.pretrain_tokens else None, interior=True),
            "prompt_length": given.prompt_length
            if given.prompt_length is not None
            else largest(f.prompt_length),
            "lora_rank": given.lora_rank if given.lora_rank is not None else largest(f.lora_rank),
            "ft_sizes": {
                method: (given.ft_sizes or {}).get(method, largest(sizes))
                for method, sizes in f.ft_sizes.items()
            },
        }

    def identity_hash(self) -> str:
        """Hash of everything that determines the study's results (the execution section is excluded)."""
        payload = self.model_dump(mode="json", exclude={"execution"})
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# --- validation beyond the structure -----------------------------------------------------------------


def _known_task(name: str) -> bool:
    from ftscale.data.datasets import known_task

    # Names with a "/" are left to plug-in registries; the built-in registry knows the rest.
    return "/" in name or known_task(name)


def _semantic_problems(spec: StudySpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    fam = spec.family
    if (fam.pretrain is None) == (fam.hf is None):
        problems.append(
            ("family", "give exactly one of 'pretrain' (our own family) or 'hf' (published models)")
        )
        return problems
    sizes = spec.size_names
    size_path = "family.pretrain.sizes" if fam.pretrain is not None else "family.hf.models"
    for i, name in enumerate(sizes):
        if sizes.index(name) != i:
            problems.append((size_path, f"size '{name}' is listed twice"))
    if fam.pretrain is not None:
        from ftscale.models.family import family

        ladder = list(family(fam.pretrain.ladder))
        for i, name in enumerate(sizes):
            if name not in ladder:
                problems.append(
                    (
                        f"{size_path}[{i}]",
                        f"unknown size '{name}' in the '{fam.pretrain.ladder}' ladder "
                        f"({', '.join(ladder)}){_hint(name, ladder)}",
                    )
                )
    methods = spec.methods.enabled()
    if not methods:
        problems.append(("methods", "enable at least one of fmt, prompt, lora"))
    if not _known_task(spec.task.name):
        from ftscale.data.datasets import task_names

        problems.append(("task.name", f"unknown task '{spec.task.name}'; valid: {', '.join(task_names())}"))
    else:
        problems += _task_option_problems(spec)
    f = spec.factors
    for i, name in enumerate(f.model_size or []):
        if name not in sizes:
            problems.append((f"factors.model_size[{i}]", f"unknown size '{name}'{_hint(name, sizes)}"))
    if spec.base_model is not None and spec.base_model not in sizes:
        problems.append(("base_model", f"unknown size '{spec.base_model}'{_hint(spec.base_model, sizes)}"))
    for method in f.ft_sizes:
        if method not in METHODS:
            problems.append((f"factors.ft_sizes.{method}", f"unknown method{_hint(method, list(METHODS))}"))
        elif method not in methods:
            problems.append(
                (f"factors.ft_sizes.{method}", f"method '{method}' is not enabled under 'methods'")
            )
    for method in methods:
        if method not in f.ft_sizes:
            problems.append(("factors.ft_sizes", f"missing finetuning sizes for method '{method}'"))
    for method, values in f.ft_sizes.items():
        for i, n in enumerate(values):
            if values.index(n) != i:
                problems.append((f"factors.ft_sizes.{method}[{i}]", f"{n} is listed twice"))
            if spec.task.train_pool is not None and n > spec.task.train_pool:
                problems.append(
                    (
                        f"factors.ft_sizes.{method}[{i}]",
                        f"{n} exceeds task.train_pool ({spec.task.train_pool})",
                    )
                )
    for factor, method in (("prompt_length", "prompt"), ("lora_rank", "lora")):
        if getattr(f, factor) is not None and method not in methods:
            problems.append((f"factors.{factor}", f"sweeping {factor} needs methods.{method}"))
    if f.pretrain_tokens is not None:
        problems += _pretrain_tokens_problems(spec)
    heldout = spec.heldout
    grids: dict[str, list[Any]] = {
        "model_size": f.model_size or [],
        "pretrain_tokens": f.pretrain_tokens.budgets if f.pretrain_tokens else [],
        "prompt_length": f.prompt_length or [],
        "lora_rank": f.lora_rank or [],
    }
    for axis, grid in grids.items():
        for i, value in enumerate(getattr(heldout, axis) or []):
            if value not in grid:
                problems.append((f"heldout.{axis}[{i}]", f"{value!r} is not in factors.{axis}"))
    for method, values in (heldout.ft_sizes or {}).items():
        if method not in f.ft_sizes:
            problems.append((f"heldout.ft_sizes.{method}", "no such method in factors.ft_sizes"))
            continue
        for i, value in enumerate(values):
            if value not in f.ft_sizes[method]:
                problems.append(
                    (f"heldout.ft_sizes.{method}[{i}]", f"{value} is not in factors.ft_sizes.{method}")
                )
    problems += _heldout_coverage_problems(spec, grids)
    if spec.execution.device == "cpu" and spec.execution.gpus_per_job > 0:
        problems.append(("execution.gpus_per_job", "must be 0 when execution.device is 'cpu'"))
    problems += _slurm_problems(spec)
    return problems


def _slurm_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """GPUs asked of Slurm for a CPU study, and sbatch options given twice or that ftscale sets itself."""
    block = spec.execution.slurm
    if block is None:
        return []
    problems: list[tuple[str, str]] = []
    if spec.execution.device == "cpu" and block.gpus_per_node:
        problems.append(("execution.slurm.gpus_per_node", "must be 0 when execution.device is 'cpu'"))
    for key in block.additional_parameters:
        path = f"execution.slurm.additional_parameters.{key}"
        option = key.replace("_", "-")
        value = block.additional_parameters[key]
        if not re.match(SLURM_OPTION_PATTERN, key):
            problems.append((path, "not an sbatch option name; give it without dashes, e.g. 'mail-type'"))
        elif option in SLURM_RESERVED_OPTIONS:
            field = SLURM_RESERVED_OPTIONS[option]
            fix = f"set execution.slurm.{field} instead" if field else "ftscale sets it itself; remove it"
            problems.append((path, f"--{option} cannot be given here: {fix}"))
        elif not isinstance(value, str | int | float) or value is False:
            problems.append((path, f"give a text, a number or true (got {value!r})"))
    return problems


def _task_option_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """Option keys the task's loader does not take (checked here, before any data is read)."""
    from ftscale.data.datasets import task_options

    known = task_options(spec.task.name)
    if known is None:  # a plug-in registry's task ("org/name"): its loader checks its own options
        return []
    return [
        (
            f"task.options.{key}",
            f"unknown option for task '{spec.task.name}'{_hint(str(key), known)}; "
            f"known options: {', '.join(known) or 'none'}",
        )
        for key in spec.task.options
        if key not in known
    ]


def _heldout_coverage_problems(spec: StudySpec, grids: dict[str, list[Any]]) -> list[tuple[str, str]]:
    """Held-out values that leave fewer than ``MIN_FIT_VALUES`` values of a swept axis to fit.

    A finetuning run is held out when its X value or its D_f value is held out, so the report fits each factor of
    a method on (X values left) × (D_f values left) cells; with fewer than two of either the law cannot be
    fitted, and the study would only fail at report time. Values not in the grid are reported elsewhere."""
    problems: list[tuple[str, str]] = []
    given = spec.heldout

    def check(path: str, grid_path: str, grid: list[Any], held: list[Any] | None) -> None:
        values = set(grid)
        held_in_grid = values & set(held or [])
        left = len(values) - len(held_in_grid)
        if held_in_grid and left < MIN_FIT_VALUES:
            problems.append(
                (
                    path,
                    f"holds out {len(held_in_grid)} of the {len(values)} values of {grid_path}, leaving "
                    f"{left} to fit; the laws need at least {MIN_FIT_VALUES} values of every axis outside the "
                    f"held-out set: hold out fewer values or add values to {grid_path}",
                )
            )

    for axis, grid in grids.items():
        check(f"heldout.{axis}", f"factors.{axis}", grid, getattr(given, axis))
    for method, held in (given.ft_sizes or {}).items():
        if method in spec.factors.ft_sizes:
            grid_path = f"factors.ft_sizes.{method}"
            check(f"heldout.ft_sizes.{method}", grid_path, spec.factors.ft_sizes[method], held)
    return problems


def _pretrain_tokens_problems(spec: StudySpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    factor = spec.factors.pretrain_tokens
    assert factor is not None
    if spec.family.pretrain is not None:
        total = spec.family.pretrain.total_tokens
        for i, budget in enumerate(factor.budgets):
            if budget > total:
                problems.append(
                    (
                        f"factors.pretrain_tokens.budgets[{i}]",
                        f"{budget} exceeds family.pretrain.total_tokens ({total})",
                    )
                )
        if factor.checkpoint_kind != "intermediate" and not spec.family.pretrain.annealed:
            problems.append(
                (
                    "factors.pretrain_tokens.checkpoint_kind",
                    f"'{factor.checkpoint_kind}' needs family.pretrain.annealed: true",
                )
            )
    else:
        if factor.checkpoint_kind != "intermediate":
            problems.append(
                (
                    "factors.pretrain_tokens.checkpoint_kind",
                    "published models only offer 'intermediate' checkpoints",
                )
            )
        if spec.base_size in spec.size_names:
            model = spec.hf_model(spec.base_size)
            known = {c.tokens for c in model.checkpoints} | ({model.tokens} if model.tokens else set())
            for i, budget in enumerate(factor.budgets):
                if budget not in known:
                    problems.append(
                        (
                            f"factors.pretrain_tokens.budgets[{i}]",
                            f"{budget} is not a checkpoint of base model '{model.name}' (known: {sorted(known)})",
                        )
                    )
    for i, budget in enumerate(factor.budgets):
        if factor.budgets.index(budget) != i:
            problems.append((f"factors.pretrain_tokens.budgets[{i}]", f"{budget} is listed twice"))
    return problems


# --- loading -----------------------------------------------------------------------------------------


def _hint(word: str, choices: list[str]) -> str:
    same_but_case = [c for c in choices if c.lower() == word.lower()]
    close = same_but_case or difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (for 'did you mean' hints)."""
    current: Any = StudySpec
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        else:
            current = part_type(current, part)
            if current is None:
                return None
        current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation


def part_type(container: Any, part: Any) -> Any:
    origin = typing.get_origin(container)
    args = typing.get_args(container)
    if origin is list and isinstance(part, int) and args:
        return args[0]
    if origin is dict and isinstance(part, str) and len(args) == 2:
        return args[1]
    return None


def _describe_error(error: dict[str, Any]) -> tuple[str, str]:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = _hint(str(loc[-1]), list(model.model_fields)) if model else ""
        return _format_loc(loc), f"unknown key{hint}"
    if kind == "missing":
        return _format_loc(loc), "required key is missing"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[
            kind
        ]
        bound = next(iter(ctx.values()))
        return _format_loc(loc), f"must be {op} {bound} (got {error['input']!r})"
    if kind == "too_short":
        return _format_loc(loc), "must not be empty"
    if kind == "string_pattern_mismatch":
        return _format_loc(loc), f"{error['input']!r} does not match the expected format {ctx.get('pattern')}"
    if kind == "model_type":
        return _format_loc(loc), f"expected a mapping of keys, got {type(error['input']).__name__}"
    return _format_loc(loc), f"{error['msg'][0].lower()}{error['msg'][1:]} (got {error.get('input')!r})"


def spec_error(source: str, problems: list[tuple[str, str]]) -> SpecError:
    """One line per problem: ``file: yaml.path: message``."""
    return SpecError("\n".join(f"{source}: {path}: {message}" for path, message in problems))


def parse_spec(raw: Any, source: str = "study.yaml") -> StudySpec:
    """Validate a parsed YAML document; raise :class:`SpecError` listing every problem, one per line."""
    if not isinstance(raw, dict):
        raise spec_error(
            source, [("(top level)", f"expected a mapping of sections, got {type(raw).__name__}")]
        )
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise spec_error(source, [_describe_error(e) for e in exc.errors()]) from None
    problems = _semantic_problems(spec)
    if problems:
        raise spec_error(source, problems)
    spec._source = source
    return spec


PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    """Study presets shipped with the package (``tiny``, ``small``, ``paper``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_spec_path(path: str | Path) -> Path:
    """A study file path, or the name of a shipped preset (``tiny`` → the packaged ``tiny.yaml``)."""
    candidate = Path(path)
    if not candidate.is_file() and candidate.suffix == "" and str(path) in preset_names():
        return PRESETS_DIR / f"{path}.yaml"
    return candidate


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate ``study.yaml`` (or a preset by name: ``tiny``, ``small``, ``paper``)."""
    path = resolve_spec_path(path)
    if not path.is_file():
        raise SpecError(
            f"{path}: study file not found (give the path of a study YAML file or a preset: "
            f"{', '.join(preset_names())})"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    return parse_spec_text(text, source=str(path))


def parse_spec_text(text: str, source: str = "study.yaml") -> StudySpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}: {where}: invalid YAML ({problem})") from None
    if raw is None:
        raise SpecError(f"{source}: (top level): the file is empty")
    return parse_spec(raw, source)


def spec_to_yaml(spec: StudySpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)


__all__ = [
    "METHODS",
    "PET_FACTOR_OF_METHOD",
    "StudySpec",
    "canonical_json",
    "load_spec",
    "parse_spec",
    "parse_spec_text",
]
