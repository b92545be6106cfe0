"""Runs of one base model side by side: is a batched multi-run finetuning step worth building?

Tiny models on a CPU spend much of a step outside large matrix products, so training N runs of one base model as
one step (seeds, PET sizes or data subsets side by side) could amortise that cost. This measures the lever before
anyone builds it, on the demo ladder's smallest and largest sizes (512-token vocabulary, as the ``tiny`` preset),
for each method, with N runs of batch 8 × 80 tokens (41 logits kept, as a synthetic translation example):

- ``separate``: N prepared models, one training step each (forward, backward, fused AdamW): today's cost.
- ``vmap``: the batched path ``torch.func`` offers: the N runs' trainable parameters stacked, the frozen ones
  shared, ``vmap(functional_call(...))`` forward and backward, one fused AdamW over the stacked tensors. The
  first line per configuration checks that it computes the same losses as the separate runs.
- ``one batch``: one model stepping on all N × 8 rows at once. No side-by-side path can be cheaper than this (it
  is what sharing every weight would cost), so its ratio bounds what any batched implementation could gain.

Ratios are separate ÷ batched time per round of N steps (above 1: the batched path is faster), measured in one
process, alternating, best of ``--repeats``.

    python bench/multirun_throughput.py [--runs 4,8] [--sizes t1,t4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from ftscale.finetune.methods import MethodConfig, prepare_model
from ftscale.models.family import build_model, family

VOCAB = 512
BATCH, WIDTH, KEEP = 8, 80, 41
METHOD_SETTINGS = {"fmt": {}, "lora": {"lora_rank": 4}, "prompt": {"prompt_length": 8}}


def _loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    predictions = logits[..., :-1, :]
    return F.cross_entropy(
        predictions.reshape(-1, predictions.shape[-1]), ids[..., -(KEEP - 1) :].reshape(-1)
    )


def _prepared(size: str, method: str, seed: int):
    spec = family("demo", vocab_size=VOCAB)[size]
    base = build_model(spec, seed=0)
    base.config._attn_implementation = "eager"  # torch.func has no batching rule for CPU flash attention
    model, _ = prepare_model(base, MethodConfig(method=method, **METHOD_SETTINGS[method]), seed=seed)
    return model


def _timed(step, repeats: int, inner: int) -> float:
    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            step()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def measure(size: str, method: str, n_runs: int, repeats: int, inner: int) -> dict[str, float]:
    runs = [_prepared(size, method, seed) for seed in range(n_runs)]
    ids = torch.randint(3, VOCAB, (n_runs, BATCH, WIDTH), generator=torch.Generator().manual_seed(0))

    optimizers = [
        torch.optim.AdamW([p for p in run.parameters() if p.requires_grad], lr=1e-3, fused=True)
        for run in runs
    ]

    def separate() -> None:
        for run, optimizer, x in zip(runs, optimizers, ids, strict=True):
            _loss(run(input_ids=x, logits_to_keep=KEEP).logits, x).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    shared = runs[0]
    trainable = [name for name, p in shared.named_parameters() if p.requires_grad]
    frozen = {name: p for name, p in shared.named_parameters() if not p.requires_grad}
    stacked = {
        name: torch.stack([dict(run.named_parameters())[name].detach() for run in runs]).requires_grad_()
        for name in trainable
    }
    stacked_optimizer = torch.optim.AdamW(list(stacked.values()), lr=1e-3, fused=True)

    def one_run(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out = functional_call(shared, {**params, **frozen}, (), {"input_ids": x, "logits_to_keep": KEEP})
        return _loss(out.logits, x)

    batched_loss = vmap(one_run, randomness="different")
    with torch.no_grad():
        reference = torch.stack(
            [_loss(run(input_ids=x, logits_to_keep=KEEP).logits, x) for run, x in zip(runs, ids, strict=True)]
        )
        difference = (batched_loss(stacked, ids) - reference).abs().max().item()

    def vmapped() -> None:
        batched_loss(stacked, ids).sum().backward()
        stacked_optimizer.step()
        stacked_optimizer.zero_grad(set_to_none=True)

    flat = ids.reshape(n_runs * BATCH, WIDTH)
    single = runs[0]
    single_optimizer = optimizers[0]

    def one_batch() -> None:
        _loss(single(input_ids=flat, logits_to_keep=KEEP).logits, flat).backward()
        single_optimizer.step()
        single_optimizer.zero_grad(set_to_none=True)

    times = {"separate": float("inf"), "vmap": float("inf"), "one batch": float("inf")}
    for _ in range(repeats):  # alternate, so that all three see the same machine conditions
        times["separate"] = min(times["separate"], _timed(separate, 1, inner))
        times["vmap"] = min(times["vmap"], _timed(vmapped, 1, inner))
        times["one batch"] = min(times["one batch"], _timed(one_batch, 1, inner))
    return {**times, "max |loss difference|": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="4,8", help="runs side by side (comma-separated)")
    parser.add_argument("--sizes", default="t1,t4", help="demo ladder sizes")
    parser.add_argument("--methods", default="fmt,lora,prompt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inner", type=int, default=5, help="rounds per timing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}; batch {BATCH} x {WIDTH} tokens per run, vocabulary {VOCAB}")
    print(
        "| size | method | runs | separate ms/round | vmap ms | ratio | one batch ms | ratio (bound) | max loss diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for method in args.methods.split(","):
            for n_runs in (int(n) for n in args.runs.split(",")):
                r = measure(size, method, n_runs, args.repeats, args.inner)
                print(
                    f"| {size} | {method} | {n_runs} | {r['separate'] * 1e3:.0f} | {r['vmap'] * 1e3:.0f} | "
                    f"{r['separate'] / r['vmap']:.2f}x | {r['one batch'] * 1e3:.0f} | "
                    f"{r['separate'] / r['one batch']:.2f}x | {r['max |loss difference|']:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
