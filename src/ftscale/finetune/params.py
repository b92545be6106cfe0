"""Per-method finetuning hyperparameters: the one place their defaults live.

A study spec's ``methods.fmt`` / ``methods.prompt`` / ``methods.lora`` sections are these models, a finetuning job
carries one (as JSON in its params, validated back into the model on the job side), and
:class:`~ftscale.finetune.methods.MethodConfig` and :class:`~ftscale.finetune.train.FinetuneConfig` fill whatever a
caller leaves unset from them. Light on purpose (pydantic only): loading a spec never imports torch.

Defaults follow the paper (:mod:`ftscale.paper`): its learning rates, 100 virtual tokens, LoRA rank 4, at most 100
epochs with early stopping on the dev loss. The batch is 16 for every method (the paper: 128 for FMT), and a run
stops at 1,000 steps (the paper: 200K), to fit CPU budgets; the presets under ``configs/`` set their own values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ftscale import paper

Method = Literal["fmt", "prompt", "lora"]
METHODS: tuple[Method, ...] = ("fmt", "prompt", "lora")
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class MethodParams(BaseModel):
    """What every method shares: the optimiser's rate and batch, and when a run stops."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: ClassVar[Method]

    lr: PositiveFloat
    batch_size: PositiveInt = 16
    max_steps: PositiveInt = 1000
    max_epochs: PositiveInt = paper.MAX_EPOCHS
    eval_every: PositiveInt = 50
    # also evaluate at least this often in epochs (small D_f: a run must not overfit between two evaluations)
    eval_every_epochs: PositiveFloat | None = None
    patience: PositiveInt = 5
    weight_decay: Annotated[float, Field(ge=0)] = 0.0

    def steps_for(self, n_examples: int) -> int:
        """The optimizer steps a run on ``n_examples`` takes at most (early stopping may end it sooner)."""
        return planned_steps(n_examples, self.batch_size, self.max_steps, self.max_epochs)

    def epochs_for(self, n_examples: int) -> float:
        """The epochs over ``n_examples`` that :meth:`steps_for` allows: the run's budget in passes over its data."""
        return self.steps_for(n_examples) / steps_per_epoch(n_examples, self.batch_size)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``n_examples`` (the last batch may be short; at least one)."""
    return math.ceil(max(1, n_examples) / batch_size)


def planned_steps(n_examples: int, batch_size: int, max_steps: int, max_epochs: float | None) -> int:
    """Steps of a run over ``n_examples`` in batches of ``batch_size``: ``max_steps`` or ``max_epochs`` epochs
    (``None``: no epoch limit), whichever comes first; at least one. The finetuning loop and the study plan's
    budget check both use it."""
    steps = max_steps
    if max_epochs is not None:
        steps = min(steps, max(1, math.ceil(max_epochs * steps_per_epoch(n_examples, batch_size))))
    return steps


# Fields added after studies existed: a job's params leave them out while unset, so that the jobs of earlier
# studies keep their ids (and a study resumes instead of rerunning).
ADDED_WHEN_SET = ("eval_every_epochs",)


def job_method_config(params: MethodParams) -> dict[str, Any]:
    """A method's parameters as a finetuning job carries them (JSON; see :data:`ADDED_WHEN_SET`)."""
    dumped = params.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if not (k in ADDED_WHEN_SET and v is None)}


def eval_cadence(n_examples: int, batch_size: int, eval_every: int, eval_every_epochs: float | None) -> int:
    """Steps between two dev evaluations: ``eval_every``, or fewer where ``eval_every_epochs`` of the run's data
    take fewer steps (at least one). A fixed cadence in examples at large D_f, a fraction of an epoch at small."""
    if eval_every_epochs is None:
        return eval_every
    return max(1, min(eval_every, round(eval_every_epochs * steps_per_epoch(n_examples, batch_size))))


class FmtParams(MethodParams):
    method: ClassVar[Method] = "fmt"
    lr: PositiveFloat = paper.LEARNING_RATES["fmt"]


class PromptParams(MethodParams):
    method: ClassVar[Method] = "prompt"
    lr: PositiveFloat = paper.LEARNING_RATES["prompt"]
    prompt_length: PositiveInt = paper.DEFAULT_PET_SIZE["prompt"]


class LoraParams(MethodParams):
    method: ClassVar[Method] = "lora"
    lr: PositiveFloat = paper.LEARNING_RATES["lora"]
    lora_rank: PositiveInt = paper.DEFAULT_PET_SIZE["lora"]
    lora_alpha: PositiveFloat | None = None  # None: MethodConfig's fixed alpha
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


PARAMS_OF_METHOD: dict[Method, type[MethodParams]] = {
    "fmt": FmtParams,
    "prompt": PromptParams,
    "lora": LoraParams,
}


def method_params(method: str, values: Mapping[str, Any] | None = None) -> MethodParams:
    """The typed parameters of ``method`` from a job's JSON (``None``: all defaults)."""
    if method not in PARAMS_OF_METHOD:
        raise ValueError(f"unknown finetuning method {method!r}; expected one of {', '.join(METHODS)}")
    return PARAMS_OF_METHOD[method].model_validate(dict(values or {}))  # type: ignore[index]


def default_of(method: str, name: str) -> Any:
    """The default of field ``name`` for ``method`` (a shared field when ``method`` lacks it: e.g. FMT's batch)."""
    cls = PARAMS_OF_METHOD.get(method, FmtParams)  # type: ignore[call-overload]
    fields = (
        cls.model_fields
        if name in cls.model_fields
        else {**PromptParams.model_fields, **LoraParams.model_fields}
    )
    return fields[name].default
