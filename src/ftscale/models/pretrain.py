"""Causal-LM pretraining of a family member, with checkpoints at token budgets (the pretraining-data axis).

Read top to bottom, like nanoGPT: tokenize the documents (joined with EOS) and pack them into fixed-length
sequences; build the model and AdamW (or Adafactor) with warm-up + cosine decay; train, evaluating held-out
loss now and then. What is written to ``out_dir``, and when:

* at each token budget (``checkpoint_tokens`` and ``total_tokens``): ``ckpt-<tokens>/`` (``save_pretrained``
  model + tokenizer + ``ftscale_meta.json``), optionally an *annealed* twin ``ckpt-<tokens>-annealed/`` (a short
  decay of the LR to its minimum, so every pretraining-data point is a finished model), then the training
  state ``resume.pt`` and the log ``train_log.jsonl``;
* between budgets, periodically: ``resume.pt`` and ``train_log.jsonl`` alone, every ``save_state_every_s``
  seconds of wall-clock time (default :data:`SAVE_STATE_EVERY_S`, 5 minutes: one ``torch.save`` per interval)
  and/or every ``save_state_every_steps`` steps; both are arguments of :func:`pretrain`, not of the config,
  as they do not change results. Every model size gets them, also one with no intermediate budget.

``resume.pt`` holds everything the rest of the run depends on: weights, optimizer and LR-schedule state, RNG
states, the step (the data order is a fixed function of seed and step), the log history and the losses not
yet checked since the last sync point. Rerunning after an interruption continues from the newest state and
ends with bit-identical checkpoints, metadata and log (on the same hardware). Every file is written to a
``*.tmp`` sibling and renamed into place, so it is whole or absent; a failed write (a full disk) removes its
temp and raises :class:`CheckpointWriteError`, and stale temps of a crashed run are removed at the start.

fp32 on CPU, bf16 autocast on GPU, same code. Seeded: same config + data → same losses on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ftscale.data.tokenizer import tokenizer_hash
from ftscale.errors import DataError, SpecError, UserError
from ftscale.models.family import ModelSpec, ParamCounts, build_model, parameter_counts
from ftscale.models.runtime import resolve_device

META_FILE = "ftscale_meta.json"
RESUME_FILE = "resume.pt"
LOG_FILE = "train_log.jsonl"
TMP_SUFFIX = ".tmp"  # files and checkpoint folders are written under this suffix, then renamed into place
# Default wall-clock interval (seconds) between periodic saves of ``resume.pt``: one torch.save per interval.
SAVE_STATE_EVERY_S = 300.0


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointWriteError(UserError):
    """A checkpoint or the training state could not be written (a full disk, no permission): the message says
    which file, why, and that rerunning resumes from the last saved state. Its temp file has been removed."""


class PretrainConfig(BaseModel):
    """Everything that determines a pretraining run (and so its checkpoints)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec
    total_tokens: int = Field(gt=0, description="tokens to train on; the final checkpoint's budget")
    batch_size: int = Field(default=16, ge=1, description="micro-batch, sequences")
    grad_accum_steps: int = Field(default=1, ge=1)
    seq_len: int = Field(default=128, ge=8)
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    lr: float = Field(default=3e-3, gt=0)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1, description="share of steps with linear warm-up")
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="cosine decays lr to lr × this")
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, ge=0, description="max grad norm; 0 disables clipping")
    checkpoint_tokens: list[int] = Field(default_factory=list, description="intermediate token budgets")
    anneal: bool = False
    anneal_fraction: float = Field(default=0.1, gt=0, le=1, description="anneal length ÷ tokens so far")
    eval_every: int = Field(
        default=0, ge=0, description="steps between held-out evaluations; 0 = at checkpoints"
    )
    eval_sequences: int = Field(default=64, ge=1)
    log_every: int = Field(default=10, ge=1, description="steps between loss checks (host syncs)")
    allow_repeat: bool = Field(default=False, description="reuse data for more than one epoch if it runs out")
    seed: int = 0
    device: str = "auto"
    compile: bool = False

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        if self.seq_len > self.model.max_seq_len:
            raise SpecError(
                f"pretrain.seq_len={self.seq_len} exceeds model.max_seq_len={self.model.max_seq_len}; lower it"
            )
        for budget in self.checkpoint_tokens:
            if not 0 < budget <= self.total_tokens:
                raise SpecError(
                    f"pretrain.checkpoint_tokens has {budget}; budgets must lie in (0, total_tokens={self.total_tokens}]"
                )
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.seq_len

    @property
    def total_steps(self) -> int:
        return math.ceil(self.total_tokens / self.tokens_per_step)

    def step_of(self, budget_tokens: int) -> int:
        return max(1, math.ceil(budget_tokens / self.tokens_per_step))

    def anneal_steps_after(self, step: int) -> int:
        return max(1, math.ceil(self.anneal_fraction * step))


@dataclass(frozen=True)
class CheckpointInfo:
    """One written checkpoint, as read back from its ``ftscale_meta.json``."""

    path: Path
    budget_tokens: int  # the nominal pretraining-data budget (X on the pretraining axis for plain ckpts)
    tokens_seen: int  # all tokens trained on, anneal tokens included
    anneal_tokens: int
    step: int
    annealed: bool
    train_loss: float | None
    val_loss: float | None
    params: ParamCounts


@dataclass
class PretrainResult:
    out_dir: Path
    checkpoints: list[CheckpointInfo]
    steps: int
    tokens_seen: int
    final_train_loss: float | None
    final_val_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StepInfo:
    """Passed to the optional ``on_step`` callback after every optimizer step."""

    step: int
    tokens_seen: int
    lr: float
    model: torch.nn.Module


# ---------------------------------------------------------------------------------------------- data


def tokenize_documents(tokenizer, texts: Iterable[str], max_tokens: int | None = None) -> np.ndarray:
    """Token ids of the documents, each followed by EOS, concatenated (stops once ``max_tokens`` are in)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos_token; train it with an '</s>' special token")
    pieces: list[np.ndarray] = []
    n_tokens = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal n_tokens
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            pieces.append(np.asarray([*ids, eos], dtype=np.int32))
            n_tokens += len(ids) + 1
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == 512:
            flush()
            if max_tokens is not None and n_tokens >= max_tokens:
                break
    if batch:
        flush()
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)


def pack_sequences(token_ids: np.ndarray, seq_len: int) -> torch.Tensor:
    """Cut a token stream into ``[n, seq_len]`` rows (documents run across rows; the tail is dropped)."""
    n_rows = len(token_ids) // seq_len
    return torch.from_numpy(np.ascontiguousarray(token_ids[: n_rows * seq_len], dtype=np.int64)).view(
        n_rows, seq_len
    )


def _as_token_array(tokenizer, texts, max_tokens: int | None, vocab_size: int) -> np.ndarray:
    if isinstance(texts, np.ndarray | torch.Tensor):
        ids = np.asarray(texts, dtype=np.int32).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
            raise DataError(
                f"the token-id array holds ids in [{ids.min()}, {ids.max()}] but model.vocab_size={vocab_size}; "
                "tokenize with the run's tokenizer or raise vocab_size"
            )
        return ids
    return tokenize_documents(tokenizer, texts, max_tokens)


def _row_order(n_rows: int, n_needed: int, seed: int) -> np.ndarray:
    """A seeded shuffle of row indices, one fresh permutation per epoch, ``n_needed`` long."""
    rng = np.random.default_rng(seed)
    epochs = [rng.permutation(n_rows) for _ in range(math.ceil(n_needed / n_rows))]
    return np.concatenate(epochs)[:n_needed]


class PackedBatches:
    """Micro-batch ``(step, micro)`` of a run: a fixed function of the seed, so resuming needs only the step."""

    def __init__(self, rows: torch.Tensor, order: np.ndarray, batch_size: int, grad_accum_steps: int):
        self.rows, self.order = rows, torch.from_numpy(order)
        self.batch_size, self.grad_accum_steps = batch_size, grad_accum_steps

    def get(self, step: int, micro: int) -> torch.Tensor:
        start = (step * self.grad_accum_steps + micro) * self.batch_size
        return self.rows[self.order[start : start + self.batch_size]]


# ---------------------------------------------------------------------------------------------- optim


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (nanoGPT's split), or Adafactor at a fixed external LR."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            params, lr=config.lr, scale_parameter=False, relative_step=False, warmup_init=False,
            weight_decay=config.weight_decay,
        )  # fmt: skip
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused is one kernel for all parameters (CPU and CUDA); it matters for many small tensors
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def autocast_for(device: torch.device):
    """bf16 autocast on GPU; plain fp32 on CPU (bf16 matmuls are not faster on these CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, rows: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Mean next-token NLL (nats) over the held-out rows."""
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), device=device), 0
    for start in range(0, len(rows), batch_size):
        x = rows[start : start + batch_size].to(device)
        with autocast_for(device):
            loss = model(input_ids=x, labels=x).loss
        total += loss.float() * len(x)
        count += len(x)
    model.train(was_training)
    return float(total / count)


# ---------------------------------------------------------------------------------------------- files


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_error(path: Path, exc: BaseException) -> CheckpointWriteError | None:
    """A clear error for a failed write when it is an I/O problem (``None`` otherwise: re-raise as is).

    A full disk does not always surface as ``OSError(ENOSPC)``: torch.save raises a bare ``RuntimeError`` and
    safetensors its own error, so the free space is also checked (while the partial temp still takes its room).
    """
    if not isinstance(exc, Exception):
        return None  # KeyboardInterrupt and the like pass through unchanged
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    text = str(exc)
    full = (
        getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in text
        or "os error 28" in text
        or (free is not None and free < 2**20)
    )
    if not (full or isinstance(exc, OSError)):
        return None
    why = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    then = f"and rerun: training resumes from the last state saved in {path.parent}"
    if full:
        room = f", {free / 2**20:.0f} MiB free" if free is not None else ""
        return CheckpointWriteError(
            f"cannot write {path}: the disk is full ({why}{room}); free disk space {then}"
        )
    return CheckpointWriteError(f"cannot write {path}: {why}; fix this {then}")


@contextlib.contextmanager
def _written_atomically(path: Path) -> Iterator[Path]:
    """Yield a temp path to write ``path``'s content to, then rename it into place: ``path`` is whole or absent.

    On failure the temp is removed, and an I/O error (a full disk) is raised as :class:`CheckpointWriteError`.
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty folder
        os.replace(tmp, path)
    except BaseException as exc:
        error = _write_error(path, exc)
        _remove(tmp)
        if error is None:
            raise
        raise error from exc


def _remove_stale_temps(out_dir: Path) -> None:
    """Remove the temps of writes a crash or a full disk interrupted (only the names this module writes)."""
    for tmp in out_dir.glob(f"*{TMP_SUFFIX}"):
        name = tmp.name.removesuffix(TMP_SUFFIX)
        if name in (RESUME_FILE, LOG_FILE) or name.startswith("ckpt-"):
            _remove(tmp)


def _write_checkpoint(path: Path, model, tokenizer, meta: dict[str, Any]) -> None:
    """Write model + tokenizer + metadata into a temp dir, then rename: a checkpoint is whole or absent."""
    with _written_atomically(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with _written_atomically(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename, so a power loss cannot leave an empty resume.pt


def _save_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write ``resume.pt`` and the log: the one code path for budget and periodic saves."""
    _atomic_torch_save(state, out_dir / RESUME_FILE)
    with _written_atomically(out_dir / LOG_FILE) as tmp:
        tmp.write_text("".join(json.dumps(h) + "\n" for h in state["history"]))


def checkpoint_name(budget_tokens: int, annealed: bool = False) -> str:
    return f"ckpt-{budget_tokens}" + ("-annealed" if annealed else "")


def list_checkpoints(out_dir: str | Path) -> list[CheckpointInfo]:
    """Checkpoints written under ``out_dir``, by budget (plain before annealed)."""
    infos = []
    for meta_path in sorted(Path(out_dir).glob(f"ckpt-*/{META_FILE}")):
        meta = json.loads(meta_path.read_text())
        infos.append(
            CheckpointInfo(
                path=meta_path.parent,
                budget_tokens=meta["budget_tokens"],
                tokens_seen=meta["tokens_seen"],
                anneal_tokens=meta["anneal_tokens"],
                step=meta["step"],
                annealed=meta["annealed"],
                train_loss=meta["train_loss"],
                val_loss=meta["val_loss"],
                params=ParamCounts(**meta["params"]),
            )
        )
    return sorted(infos, key=lambda c: (c.budget_tokens, c.annealed))


def _comparable(config: PretrainConfig) -> dict[str, Any]:
    """The config fields that change results (device and compilation do not, on the same hardware)."""
    return config.model_dump(mode="json", exclude={"device", "compile", "eval_every", "log_every"})


# ---------------------------------------------------------------------------------------------- loop


def pretrain(
    config: PretrainConfig,
    tokenizer,
    texts: Iterable[str] | np.ndarray | torch.Tensor,
    out_dir: str | Path,
    val_texts: Iterable[str] | np.ndarray | torch.Tensor | None = None,
    progress: bool = True,
    on_step: Callable[[StepInfo], None] | None = None,
    *,
    save_state_every_s: float | None = SAVE_STATE_EVERY_S,
    save_state_every_steps: int | None = None,
) -> PretrainResult:
    """Pretrain ``config.model`` on ``texts`` (documents, or a token-id array); resume if ``out_dir`` has a run.

    Besides at every token budget, ``resume.pt`` is saved once ``save_state_every_s`` seconds have passed since
    the last save and at every multiple of ``save_state_every_steps`` steps (``None`` turns either off). They
    only set how much work an interruption can lose; results do not depend on them.
    """
    if save_state_every_s is not None and not save_state_every_s > 0:
        raise ValueError(f"save_state_every_s must be positive or None, not {save_state_every_s}")
    if save_state_every_steps is not None and save_state_every_steps < 1:
        raise ValueError(f"save_state_every_steps must be at least 1 or None, not {save_state_every_steps}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out_dir)
    device = resolve_device(config.device, setting="pretrain.device")
    spec = config.model
    if len(tokenizer) > spec.vocab_size:
        raise SpecError(
            f"tokenizer has {len(tokenizer)} tokens but model.vocab_size={spec.vocab_size}; raise vocab_size"
        )

    # -- schedule: which steps end at a token budget, and how long the anneals after them run
    total_steps = config.total_steps
    budget_at_step: dict[int, int] = {}
    for budget in sorted({*config.checkpoint_tokens, config.total_tokens}):
        step = config.step_of(budget)
        if step in budget_at_step:
            raise SpecError(
                f"pretrain.checkpoint_tokens {budget_at_step[step]} and {budget} fall on the same step "
                f"({config.tokens_per_step} tokens per step); space them further apart"
            )
        budget_at_step[step] = budget
    anneal_after = (
        {s: config.anneal_steps_after(s) for s in budget_at_step if s < total_steps} if config.anneal else {}
    )
    steps_of_data = max([total_steps, *(s + n for s, n in anneal_after.items())])

    # -- data: documents → EOS-joined token stream → packed rows → seeded order of micro-batches
    rows_needed = steps_of_data * config.grad_accum_steps * config.batch_size
    # Only the first tokens the run needs are read, so the order of ``texts`` (e.g. an evenly mixed stream) is the
    # mix trained on; with ``allow_repeat`` a shorter stream is repeated for further epochs.
    limit = rows_needed * config.seq_len + 1
    train_ids = _as_token_array(tokenizer, texts, limit, spec.vocab_size)
    rows = pack_sequences(train_ids, config.seq_len)
    if len(rows) == 0 or (len(rows) < rows_needed and not config.allow_repeat):
        raise DataError(
            f"the pretraining texts give {len(rows) * config.seq_len} tokens but the run needs "
            f"{rows_needed * config.seq_len}; give more text, lower total_tokens, or set allow_repeat"
        )
    data_sha = hashlib.sha256(rows.numpy().tobytes()).hexdigest()
    batches = PackedBatches(rows, _row_order(len(rows), rows_needed, config.seed), config.batch_size,
                            config.grad_accum_steps)  # fmt: skip
    val_rows = None
    if val_texts is not None:
        val_rows = pack_sequences(
            _as_token_array(
                tokenizer, val_texts, (config.eval_sequences + 1) * config.seq_len, spec.vocab_size
            ),
            config.seq_len,
        )[: config.eval_sequences]
        if len(val_rows) == 0:
            raise DataError(
                f"validation texts give fewer than seq_len={config.seq_len} tokens; give more text"
            )

    # -- model, optimizer, LR schedule
    model = build_model(spec, seed=config.seed).to(device)
    model.train()
    counts = parameter_counts(model)
    optimizer = make_optimizer(model, config)
    warmup_steps = round(config.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, total_steps, warmup_steps, config.min_lr_ratio)
    )
    forward = torch.compile(model) if config.compile else model

    # -- resume from out_dir/resume.pt when a previous run of the same config wrote one
    resume_path = out_dir / RESUME_FILE
    start_step, history, state = 0, [], {}
    torch.manual_seed(config.seed)
    if resume_path.exists():
        try:
            state = torch.load(resume_path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise UserError(
                f"cannot read {resume_path} ({exc}); delete it to restart the run from step 0"
            ) from exc
        if state["config"] != _comparable(config) or state["data_sha256"] != data_sha:
            raise UserError(
                f"{out_dir} holds a run with a different config or data; use a new out_dir or delete {resume_path}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"])
        start_step, history = state["step"], state["history"]

    tok_hash = tokenizer_hash(tokenizer)  # identifies the vocabulary a checkpoint expects
    base_meta = {"params": asdict(counts), "tokenizer_hash": tok_hash, "data_sha256": data_sha,
                 "config": config.model_dump(mode="json")}  # fmt: skip
    last_good = max(list_checkpoints(out_dir), key=lambda c: c.step, default=None)
    # per-step losses stay on the device until the next sync point: no .item() (host sync) per step
    # a periodic state can fall between sync points: it carries the losses not yet checked (older files do not)
    window: list[torch.Tensor] = list(state.get("window", torch.zeros(0)).to(device).unbind())
    window_start = state.get("window_start", start_step)
    train_loss = history[-1]["train_loss"] if history else None
    val_loss = state.get("val_loss")
    amp = autocast_for(device)

    def save_state(done: int) -> None:
        _save_state(out_dir, {
            "step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "config": _comparable(config), "data_sha256": data_sha, "history": history,
            "window": torch.stack(window).cpu() if window else torch.zeros(0), "window_start": window_start,
            "val_loss": val_loss,
        })  # fmt: skip

    def state_is_finite() -> bool:
        finite = [torch.isfinite(p).all() for p in model.parameters()]
        finite += [torch.isfinite(loss) for loss in window]
        return bool(torch.stack(finite).all())

    last_save = time.monotonic()

    with _progress_bar(progress, total_steps, start_step, config.tokens_per_step) as bar:
        for step in range(start_step, total_steps):
            # one optimizer step: grad_accum_steps micro-batches of packed rows
            for micro in range(config.grad_accum_steps):
                x = batches.get(step, micro).to(device, non_blocking=True)
                with amp:
                    loss = forward(input_ids=x, labels=x).loss
                (loss / config.grad_accum_steps).backward()
                window.append(loss.detach())
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if on_step is not None:
                on_step(StepInfo(step=done, tokens_seen=done * config.tokens_per_step, lr=lr, model=model))

            at_budget = done in budget_at_step
            at_eval = config.eval_every > 0 and done % config.eval_every == 0
            if at_budget or at_eval or done % config.log_every == 0 or done == total_steps:
                # sync point: check the losses since the last one, then log
                losses = torch.stack(window).float().view(-1, config.grad_accum_steps).mean(1).cpu()
                bad = (~torch.isfinite(losses)).nonzero()
                if len(bad):
                    first = window_start + int(bad[0]) + 1
                    raise _diverged(first, f"loss {float(losses[bad[0]]):.3g}", last_good, config)
                train_loss = float(losses.mean())
                window, window_start = [], done
                if val_rows is not None and (at_eval or at_budget):
                    val_loss = evaluate_loss(model, val_rows, config.batch_size, device)
                history.append({"step": done, "tokens": done * config.tokens_per_step, "lr": lr,
                                "train_loss": train_loss, "val_loss": val_loss if (at_eval or at_budget) else None})  # fmt: skip
                bar.set_loss(train_loss, val_loss)
            bar.advance()

            if at_budget:
                # a step can turn weights non-finite while its loss was still finite; never save those
                if not torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all():
                    raise _diverged(done, "non-finite weights", last_good, config)
                budget = budget_at_step[done]
                meta = {**base_meta, "budget_tokens": budget, "tokens_seen": done * config.tokens_per_step,
                        "anneal_tokens": 0, "step": done, "annealed": False, "lr": lr,
                        "train_loss": train_loss, "val_loss": val_loss}  # fmt: skip
                path = out_dir / checkpoint_name(budget)
                _write_checkpoint(path, model, tokenizer, meta)
                if done in anneal_after:
                    _write_annealed(model, optimizer, config, batches, done, anneal_after[done],
                                    optimizer.param_groups[0]["lr"], val_rows, device, tokenizer, meta, out_dir)  # fmt: skip
                last_good = CheckpointInfo(path, budget, meta["tokens_seen"], 0, done, False, train_loss,
                                           val_loss, counts)  # fmt: skip
                save_state(done)
                last_save = time.monotonic()
            elif (
                (save_state_every_steps is not None and done % save_state_every_steps == 0)
                or (save_state_every_s is not None and time.monotonic() - last_save >= save_state_every_s)
            ) and state_is_finite():
                # periodic state between budgets (never a diverged one: the next sync point raises instead)
                save_state(done)
                last_save = time.monotonic()

    return PretrainResult(out_dir=out_dir, checkpoints=list_checkpoints(out_dir), steps=total_steps,
                          tokens_seen=total_steps * config.tokens_per_step, final_train_loss=train_loss,
                          final_val_loss=history[-1]["val_loss"] if history else None, history=history)  # fmt: skip


def _diverged(
    step: int, what: str, last_good: CheckpointInfo | None, config: PretrainConfig
) -> TrainingDiverged:
    kept = f"last good checkpoint: {last_good.path}" if last_good else "no checkpoint was written"
    return TrainingDiverged(
        f"training diverged at step {step} ({what}); {kept}; "
        f"lower pretrain.lr (now {config.lr}) or raise warmup_fraction"
    )


def _write_annealed(model, optimizer, config: PretrainConfig, batches: PackedBatches, step: int, n_steps: int,
                    start_lr: float, val_rows, device, tokenizer, meta: dict[str, Any], out_dir: Path) -> None:  # fmt: skip
    """Branch off the main run: ``n_steps`` more steps with the LR decaying linearly to its minimum.

    Works on copies (model, optimizer state) and restores the RNG, so the main run is unaffected.
    """
    annealed = copy.deepcopy(model)
    anneal_opt = make_optimizer(annealed, config)
    anneal_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # deep copy: load may alias tensors
    min_lr = config.lr * config.min_lr_ratio
    losses = []
    with torch.random.fork_rng(devices=[]):
        for i in range(n_steps):
            for group in anneal_opt.param_groups:
                group["lr"] = start_lr + (min_lr - start_lr) * (i + 1) / n_steps
            for micro in range(config.grad_accum_steps):
                x = batches.get(step + i, micro).to(device)
                with autocast_for(device):
                    loss = annealed(input_ids=x, labels=x).loss
                (loss / config.grad_accum_steps).backward()
                losses.append(loss.detach())
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(annealed.parameters(), config.grad_clip, foreach=True)
            anneal_opt.step()
            anneal_opt.zero_grad(set_to_none=True)
    train_loss = float(torch.stack(losses[-config.grad_accum_steps * max(1, n_steps // 4) :]).float().mean())
    if not math.isfinite(train_loss):
        raise TrainingDiverged(
            f"the anneal after step {step} diverged (loss {train_loss}); lower pretrain.lr"
        )
    anneal_tokens = n_steps * config.tokens_per_step
    val_loss = evaluate_loss(annealed, val_rows, config.batch_size, device) if val_rows is not None else None
    annealed_meta = {**meta, "tokens_seen": meta["tokens_seen"] + anneal_tokens, "anneal_tokens": anneal_tokens,
                     "annealed": True, "lr": min_lr, "train_loss": train_loss, "val_loss": val_loss}  # fmt: skip
    _write_checkpoint(out_dir / checkpoint_name(meta["budget_tokens"], annealed=True), annealed, tokenizer,
                      annealed_meta)  # fmt: skip


# ---------------------------------------------------------------------------------------------- progress


class _ProgressBar:
    """A rich progress bar with tokens/s and ETA; a no-op when disabled."""

    def __init__(self, enabled: bool, total_steps: int, start_step: int, tokens_per_step: int):
        self.enabled, self.tokens_per_step = enabled, tokens_per_step
        self.progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[loss]}"),
            )  # fmt: skip
            self.task = self.progress.add_task("pretrain", total=total_steps, completed=start_step,
                                               speed="", loss="")  # fmt: skip
            self.t0, self.steps = time.perf_counter(), 0

    def __enter__(self) -> _ProgressBar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def advance(self) -> None:
        if self.progress is None:
            return
        self.steps += 1
        speed = self.steps * self.tokens_per_step / max(1e-9, time.perf_counter() - self.t0)
        self.progress.update(self.task, advance=1, speed=f"{speed:,.0f} tok/s")

    def set_loss(self, train_loss: float, val_loss: float | None) -> None:
        if self.progress is not None:
            text = f"loss {train_loss:.3f}" + (f" val {val_loss:.3f}" if val_loss is not None else "")
            self.progress.update(self.task, loss=text)


def _progress_bar(enabled: bool, total_steps: int, start_step: int, tokens_per_step: int) -> _ProgressBar:
    return _ProgressBar(enabled, total_steps, start_step, tokens_per_step)
