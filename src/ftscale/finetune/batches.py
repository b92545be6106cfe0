"""Length-bucketed batches of EncodedExample and the target-only loss shared by training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ftscale.data.types import EncodedExample

# Buckets of this many batches are sorted by length before being cut into batches: enough to make batches of
# near-equal length (little padding), few enough that batch composition still changes from epoch to epoch.
BUCKET_BATCHES = 32
IGNORE_INDEX = -100


@dataclass
class Batch:
    """A right-padded batch: ``labels`` hold the token ids at target positions and -100 everywhere else."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    first_target: int  # smallest target_start in the batch: logits before it are never needed
    n_tokens: int  # non-padding tokens
    n_target_tokens: int

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            self.first_target,
            self.n_tokens,
            self.n_target_tokens,
        )


def collate(examples: Sequence[EncodedExample], pad_id: int = 0) -> Batch:
    """Right-pad ``examples`` to the longest one; padding is masked out of attention and loss, so any id works."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        ids = torch.tensor(example.input_ids, dtype=torch.long)
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        labels[row, example.target_start : len(ids)] = ids[example.target_start :]
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        first_target=min(e.target_start for e in examples),
        n_tokens=sum(len(e.input_ids) for e in examples),
        n_target_tokens=sum(e.n_target_tokens for e in examples),
    )


def bucketed_batches(
    examples: Sequence[EncodedExample], batch_size: int, generator: torch.Generator | None = None
) -> list[Batch]:
    """Cut ``examples`` into batches of similar length.

    With a ``generator`` (training): shuffle, sort within buckets of ``BUCKET_BATCHES`` batches by length, cut,
    and shuffle the batch order. Without one (evaluation): sort everything by length, which is deterministic and
    wastes the least padding.
    """
    if generator is None:
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
        chunks = [order]
    else:
        order = torch.randperm(len(examples), generator=generator).tolist()
        span = batch_size * BUCKET_BATCHES
        chunks = [
            sorted(order[i : i + span], key=lambda j: len(examples[j].input_ids))
            for i in range(0, len(order), span)
        ]
    index_batches = [chunk[i : i + batch_size] for chunk in chunks for i in range(0, len(chunk), batch_size)]
    if generator is not None:
        index_batches = [index_batches[i] for i in torch.randperm(len(index_batches), generator=generator)]
    return [collate([examples[i] for i in batch]) for batch in index_batches]


def target_nll_sum(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed NLL (nats, fp32) of the batch's target tokens, each predicted from the tokens before it.

    Only the last ``width - first_target + 1`` positions get logits (``logits_to_keep``): with right padding they
    cover every target prediction, and the vocabulary projection of the source positions is skipped. A PEFT soft
    prompt is prepended on the left, so counting from the right stays correct for prompt tuning too.

    No attention mask is passed: with right padding and causal attention, a real token never sees a pad (pads
    only follow it), and pad positions carry no label. Without a mask, attention takes its fused causal path
    instead of materialising a (batch, 1, width, width) mask.
    """
    width = batch.input_ids.shape[1]
    keep = width - batch.first_target + 1
    logits = model(input_ids=batch.input_ids, logits_to_keep=keep).logits
    # logits[:, j] predicts token (width - keep + 1 + j); the last position predicts nothing.
    predictions = logits[:, -keep:-1, :]
    targets = batch.labels[:, batch.first_target :]
    return F.cross_entropy(
        predictions.reshape(-1, predictions.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


@contextmanager
def contiguous_head_input(model: torch.nn.Module) -> Iterator[None]:
    """While active, the output projection gets a contiguous copy of its input.

    ``logits_to_keep`` hands the head a slice ``hidden[:, -keep:]``, which is not contiguous. When that slice
    requires grad, ``torch.matmul`` does not fold it into one (batch·keep, d) × (d, vocab) product but runs a
    batched product against the weight expanded per row, forward and backward. A contiguous copy (a few hundred
    KB) folds, with bit-identical results: a LoRA training step got 12 % faster, FMT 3 %, prompt tuning 4 %
    (``bench/RESULTS.md``, finetune_throughput). Without grad matmul folds anyway, so evaluation gains nothing.
    """
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, torch.nn.Module):
        yield
        return
    handle = head.register_forward_pre_hook(_contiguous_input)
    try:
        yield
    finally:
        handle.remove()
