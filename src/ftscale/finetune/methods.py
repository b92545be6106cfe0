"""Finetuning methods behind one config: full-model tuning (FMT), prompt tuning and LoRA through Hugging Face PEFT.

``prepare_model(base_model, MethodConfig(...))`` is the single entry point that turns a base causal LM into a
trainable one, and reports how many parameters are trained. What a caller leaves unset comes from the per-method
defaults in :mod:`ftscale.finetune.params` (the same a study spec uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import PreTrainedModel

from ftscale.errors import UserError
from ftscale.finetune.params import Method, MethodParams, default_of
from ftscale.models.family import model_parameter_counts

if TYPE_CHECKING:
    from ftscale.data.types import EncodedExample

# LoRA's alpha is fixed across ranks (scaling alpha/r), as Hu et al., who set it once and did not retune it.
LORA_ALPHA = 8.0
# LoRA on attention AND feed-forward projections (the paper applies it to both; names follow Llama).
LLAMA_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


class MethodConfig(BaseModel):
    """How a base model is finetuned.

    - ``method``: ``fmt`` (all parameters), ``prompt`` (soft prompt of ``prompt_length`` vectors, initialised
      from sampled vocabulary embeddings, only the prompt trained) or ``lora`` (rank ``lora_rank`` adapters).
    - ``prompt_length`` |P| (PET-size axis for prompt tuning) and ``lora_rank`` r (PET-size axis for LoRA).
      ``lora_alpha`` (:data:`LORA_ALPHA`) is fixed across ranks; ``lora_dropout`` 0 (the paper states none). LoRA
      init is PEFT's standard: A Kaiming-uniform, B = 0, so training starts at the base model.
    - ``learning_rate`` / ``batch_size`` / ``weight_decay``: the optimiser is AdamW.

    Every field left ``None`` takes the method's default from :mod:`ftscale.finetune.params`; use
    :meth:`from_params` to build the config of a study job from its typed parameters.
    """

    model_config = ConfigDict(extra="forbid")

    method: Method = "fmt"
    prompt_length: int | None = Field(None, ge=1)
    lora_rank: int | None = Field(None, ge=1)
    lora_alpha: float = Field(LORA_ALPHA, gt=0)
    lora_dropout: float | None = Field(None, ge=0, lt=1)
    lora_target_modules: tuple[str, ...] = LLAMA_LORA_TARGETS
    learning_rate: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    weight_decay: float | None = Field(None, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)

    @model_validator(mode="after")
    def _fill_method_defaults(self) -> MethodConfig:
        for name, param in _PARAM_OF_FIELD.items():
            if getattr(self, name) is None:
                setattr(self, name, default_of(self.method, param))
        return self

    @classmethod
    def from_params(cls, params: MethodParams) -> MethodConfig:
        """The config of a run with a study's typed method parameters (every value given, nothing restated)."""
        values = params.model_dump(exclude_none=True)
        fields = {name: values[param] for name, param in _PARAM_OF_FIELD.items() if param in values}
        if "lora_alpha" in values:
            fields["lora_alpha"] = values["lora_alpha"]
        return cls(method=params.method, **fields)

    @property
    def pet_size(self) -> int | None:
        """The PET-size axis value X of the paper: |P| for prompt tuning, r for LoRA, None for FMT."""
        return {"prompt": self.prompt_length, "lora": self.lora_rank}.get(self.method)


# MethodConfig field -> its name in the per-method parameters (ftscale.finetune.params)
_PARAM_OF_FIELD = {
    "prompt_length": "prompt_length",
    "lora_rank": "lora_rank",
    "lora_dropout": "lora_dropout",
    "learning_rate": "lr",
    "batch_size": "batch_size",
    "weight_decay": "weight_decay",
}


@dataclass(frozen=True)
class TrainableInfo:
    """Parameter counts of a prepared model: ``trainable`` (what the optimiser updates), ``total`` (base plus any
    PET parameters), ``base_non_embedding`` (the model-size X of the paper; PET parameters never enter it) and
    ``base_total`` (the base model's parameters, embeddings included: its tokens-per-parameter denominator)."""

    trainable: int
    total: int
    base_non_embedding: int
    base_total: int

    def to_dict(self) -> dict:
        return asdict(self)


def _requires_grad_count(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def prepare_model(
    base_model: PreTrainedModel, method_config: MethodConfig, seed: int = 0
) -> tuple[torch.nn.Module, TrainableInfo]:
    """Turn ``base_model`` into a trainable model for ``method_config.method``.

    PEFT injects adapters into ``base_model`` in place, so pass a fresh copy per run. ``seed`` fixes the random
    parts of the setup (LoRA A init, the vocabulary rows that initialise the soft prompt) without touching the
    caller's global RNG state.
    """
    if not isinstance(base_model, PreTrainedModel):
        raise UserError(
            f"prepare_model needs a transformers PreTrainedModel, got {type(base_model).__name__}"
        )
    base_counts = model_parameter_counts(base_model)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if method_config.method == "fmt":
            model: torch.nn.Module = base_model
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        elif method_config.method == "prompt":
            peft_config = PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=method_config.prompt_length,
                prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
            )
            model = get_peft_model(base_model, peft_config)
        else:
            present = {name.rsplit(".", 1)[-1] for name, _ in base_model.named_modules()}
            missing = sorted(set(method_config.lora_target_modules) - present)
            if missing:
                raise UserError(
                    f"lora_target_modules {missing} not found in {type(base_model).__name__}; "
                    f"set method.lora_target_modules to module names of the model"
                )
            peft_config = LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=method_config.lora_rank,
                lora_alpha=method_config.lora_alpha,
                lora_dropout=method_config.lora_dropout,
                target_modules=list(method_config.lora_target_modules),
                init_lora_weights=True,
                bias="none",
            )
            model = get_peft_model(base_model, peft_config)

    direct_trainable, direct_total = _requires_grad_count(model)
    if isinstance(model, PeftModel):
        trainable, total = model.get_nb_trainable_parameters()
        if (trainable, total) != (direct_trainable, direct_total):
            raise RuntimeError(
                f"PEFT counts {trainable}/{total} trainable/total parameters but requires_grad sums give "
                f"{direct_trainable}/{direct_total}"
            )
    else:
        trainable, total = direct_trainable, direct_total
    return model, TrainableInfo(
        trainable=trainable,
        total=total,
        base_non_embedding=base_counts.non_embedding,
        base_total=base_counts.total,
    )


@contextmanager
def merged_lora(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, a LoRA model's adapters are folded into its base weights (PEFT ``merge_adapter``), so
    forward passes cost what the base model's do: dev and test evaluations and generation skip the low-rank
    product of every adapted projection. On exit the adapters are unmerged and the base weights restored
    bit for bit from a copy (unmerging alone subtracts B·A again, which leaves rounding residue in weights that
    are meant to stay frozen). Any other model passes through unchanged. Not for training: inside the block the
    adapters get no gradient.
    """
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)] if isinstance(model, PeftModel) else []
    if not layers:
        yield
        return
    saved = [layer.get_base_layer().weight.detach().clone() for layer in layers]
    with torch.no_grad():
        model.base_model.merge_adapter()
    try:
        yield
    finally:
        with torch.no_grad():
            model.base_model.unmerge_adapter()
            for layer, weight in zip(layers, saved, strict=True):
                layer.get_base_layer().weight.copy_(weight)


def lr_sweep(
    base_model_factory: Callable[[], PreTrainedModel],
    method: Method,
    train: Sequence[EncodedExample],
    dev: Sequence[EncodedExample],
    lrs: Sequence[float],
    steps: int,
    **finetune_overrides,
) -> dict[float, float]:
    """Best dev loss (mean target NLL, nats) after ``steps`` steps for each learning rate; a diverged run scores
    ``inf``. Run it on the smallest model, as the paper tuned each method on its smallest (1B) model, and pick
    ``min(result, key=result.get)``. ``finetune_overrides`` go to ``FinetuneConfig`` (e.g. ``seed``)."""
    from ftscale.finetune.train import FinetuneConfig, finetune

    if not lrs:
        raise UserError("lr_sweep needs at least one learning rate in lrs")
    finetune_overrides.setdefault("eval_every", max(1, steps // 4))
    results: dict[float, float] = {}
    for lr in lrs:
        config = FinetuneConfig(
            method=MethodConfig(method=method, learning_rate=lr), max_steps=steps, **finetune_overrides
        )
        result = finetune(base_model_factory(), list(train), list(dev), config, progress=False)
        results[lr] = result.best_dev_loss if result.status == "done" else float("inf")
    return results
