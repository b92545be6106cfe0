"""The finetuning loop: target-only loss on length-bucketed batches, cosine LR, periodic dev loss, best-checkpoint
selection by dev loss with early stopping, and divergence reported as a status instead of an exception.

It reads top to bottom: config, setup, the loop, the result. The same code runs on CPU (fp32) and GPU (bf16
autocast). Losses are accumulated on the device; the host reads them only at evaluation times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import get_cosine_schedule_with_warmup

from ftscale.data.types import EncodedExample
from ftscale.errors import DataError
from ftscale.finetune.batches import bucketed_batches, contiguous_head_input, target_nll_sum
from ftscale.finetune.evaluate import batches_loss
from ftscale.finetune.methods import MethodConfig, merged_lora
from ftscale.finetune.params import MethodParams, default_of, eval_cadence, planned_steps
from ftscale.models.runtime import resolve_device


class FinetuneConfig(BaseModel):
    """One finetuning run. Training stops at ``max_steps`` or ``max_epochs``, whichever comes first (the paper:
    200K steps or 100 epochs), or when the dev loss has not improved for ``patience`` evaluations.

    The learning rate warms up linearly for ``warmup_steps`` and then follows a cosine to zero at the last step
    (the paper reuses a cosine schedule). Every ``eval_every`` steps (or ``eval_every_epochs`` epochs, if that
    is sooner) the dev loss is measured and the best weights kept.
    """

    model_config = ConfigDict(extra="forbid")

    method: MethodConfig = Field(default_factory=MethodConfig)
    max_steps: int = Field(default_of("fmt", "max_steps"), ge=1)
    max_epochs: float | None = Field(default_of("fmt", "max_epochs"), gt=0)  # None: no epoch limit
    warmup_steps: int = Field(0, ge=0)
    eval_every: int = Field(default_of("fmt", "eval_every"), ge=1)
    eval_every_epochs: float | None = Field(default_of("fmt", "eval_every_epochs"), gt=0)
    # evaluations without improvement; None disables early stopping
    patience: int | None = Field(default_of("fmt", "patience"), ge=1)
    eval_batch_size: int = Field(16, ge=1)  # small batches of length-sorted examples waste little padding
    grad_clip: float | None = Field(1.0, gt=0)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    bf16: bool = True  # autocast to bfloat16 on CUDA; CPU always trains in fp32
    seed: int = 0

    @classmethod
    def from_params(cls, params: MethodParams, **run: object) -> FinetuneConfig:
        """The config of a run with a study's typed method parameters; ``run`` adds ``device``, ``seed``, ..."""
        stops = params.model_dump(
            include={"max_steps", "max_epochs", "eval_every", "eval_every_epochs", "patience"}
        )
        return cls(method=MethodConfig.from_params(params), **stops, **run)

    @model_validator(mode="after")
    def _warmup_fits(self) -> FinetuneConfig:
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")
        return self


@dataclass
class FinetuneResult:
    """What a run did. ``status`` is ``"done"`` or ``"failed: diverged at step N"``; the model holds the weights of
    ``best_step`` (step 0 = the untouched starting weights). ``history`` rows are (step, mean train loss since the
    previous evaluation or None at step 0, dev loss). ``train_tokens`` counts non-padding tokens fed to the model."""

    status: str
    best_step: int
    best_dev_loss: float
    steps_run: int
    train_tokens: int
    tokens_per_s: float
    history: list[tuple[int, float | None, float]] = field(default_factory=list)
    trainable_params: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, parameter in model.named_parameters():
        if name in state:
            parameter.copy_(state[name])


def finetune(
    model: torch.nn.Module,
    train: list[EncodedExample],
    dev: list[EncodedExample],
    config: FinetuneConfig,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
) -> FinetuneResult:
    """Train the ``requires_grad`` parameters of ``model`` (from ``methods.prepare_model``) on ``train``'s targets.

    Returns with the best-by-dev-loss weights loaded into ``model``. Never raises on divergence. ``on_step(step,
    max_steps)`` is called after every optimizer step (e.g. a study job's progress report).
    """
    if not train:
        raise DataError("finetune got an empty training set; give at least one training example")
    if not dev:
        raise DataError(
            "finetune got an empty dev set; the dev loss selects the checkpoint, give dev examples"
        )

    # -- setup ---------------------------------------------------------------------------------------------------
    torch.manual_seed(config.seed)
    shuffler = torch.Generator().manual_seed(config.seed)
    device = resolve_device(config.device, setting="FinetuneConfig.device")
    model.to(device)
    model.train()
    autocast = device.type == "cuda" and config.bf16
    method = config.method
    parameters = [p for p in model.parameters() if p.requires_grad]
    trainable_params = sum(p.numel() for p in parameters)
    optimizer = torch.optim.AdamW(
        parameters,
        lr=method.learning_rate,
        betas=method.adam_betas,
        weight_decay=method.weight_decay,
        fused=True,  # one kernel over all parameters, on CPU too: LoRA has two small tensors per projection
    )
    total_steps = planned_steps(len(train), method.batch_size, config.max_steps, config.max_epochs)
    eval_every = eval_cadence(len(train), method.batch_size, config.eval_every, config.eval_every_epochs)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, min(config.warmup_steps, total_steps - 1), total_steps
    )

    # The dev batches do not change between evaluations: collate them once.
    dev_batches = bucketed_batches(dev, config.eval_batch_size)
    # Step 0 is a candidate too: if finetuning never beats the starting weights, those are kept.
    with merged_lora(model):
        best_dev_loss = batches_loss(model, dev_batches).loss
    best_step, best_state = 0, _trainable_state(model)
    history: list[tuple[int, float | None, float]] = [(0, None, best_dev_loss)]
    evals_without_improvement = 0
    status, stopped_early = "done", False

    # Device-side accumulators: reading them forces a sync, so the host does it only at evaluation times.
    loss_sum = torch.zeros((), device=device)
    loss_count = torch.zeros((), device=device)
    first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
    train_tokens = 0
    step = 0
    epoch_batches: list = []

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=not progress,
        transient=True,
    )
    task = bar.add_task(f"finetune {method.method}", total=total_steps, info=f"dev {best_dev_loss:.3f}")
    started = time.perf_counter()

    # -- the loop ------------------------------------------------------------------------------------------------
    with bar, contiguous_head_input(model):
        while step < total_steps:
            if not epoch_batches:
                epoch_batches = bucketed_batches(train, method.batch_size, shuffler)
                epoch_batches.reverse()  # pop() from the end walks the epoch in order
            batch = epoch_batches.pop().to(device)
            step += 1

            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = target_nll_sum(model, batch) / batch.n_target_tokens
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip, foreach=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            detached = loss.detach()
            loss_sum += detached
            loss_count += 1
            diverged_now = ~torch.isfinite(detached) & (first_bad_step < 0)
            first_bad_step = torch.where(diverged_now, step, first_bad_step)
            train_tokens += batch.n_tokens
            bar.update(task, advance=1)
            if on_step is not None:
                on_step(step, total_steps)

            if step % eval_every != 0 and step != total_steps:
                continue
            # -- evaluation: the only place the host waits for the device ------------------------------------
            if first_bad_step.item() >= 0:
                status = f"failed: diverged at step {first_bad_step.item()}"
                break
            train_loss = (loss_sum / loss_count).item()
            loss_sum.zero_()
            loss_count.zero_()
            with merged_lora(model):  # evaluation at the base model's cost; training resumes unmerged
                dev_loss = batches_loss(model, dev_batches).loss
            history.append((step, train_loss, dev_loss))
            if not math.isfinite(dev_loss):
                status = f"failed: diverged at step {step}"
                break
            if dev_loss < best_dev_loss:
                best_dev_loss, best_step, best_state = dev_loss, step, _trainable_state(model)
                evals_without_improvement = 0
            else:
                evals_without_improvement += 1
            bar.update(
                task, info=f"train {train_loss:.3f} dev {dev_loss:.3f} best {best_dev_loss:.3f}@{best_step}"
            )
            if config.patience is not None and evals_without_improvement >= config.patience:
                stopped_early = True
                break

    elapsed = time.perf_counter() - started
    # -- result: the best weights go back into the model, whatever ended the run ---------------------------------
    _restore(model, best_state)
    return FinetuneResult(
        status=status,
        best_step=best_step,
        best_dev_loss=best_dev_loss,
        steps_run=step,
        train_tokens=train_tokens,
        tokens_per_s=train_tokens / elapsed if elapsed > 0 else 0.0,
        history=history,
        trainable_params=trainable_params,
        stopped_early=stopped_early,
    )
