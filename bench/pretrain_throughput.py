"""Pretraining throughput per family size: our loop (ftscale.models.pretrain) vs a plain reference loop.

Each measurement runs in its own subprocess, alternating reference and ours per size, so both see the same
machine conditions. Utilisation = every matrix-product FLOP of a training step per token (the linear layers'
forward and both backward products, the output layer's, and attention's score and value products) × useful
tokens/s ÷ the measured fp32 matmul peak (a 1024³ torch.matmul timed in the same process, just before the loop).
The ceiling is the rate of the step's own products timed back to back at their shapes ÷ that peak: what a
step that did nothing but its matrix products would score; ``ours / ceiling`` says how close the loop gets.

- ours: ``pretrain()`` itself on a packed token stream (no padding), fused AdamW, no per-step host sync,
  tcmalloc preloaded via ``maybe_reexec_with_tcmalloc()``.
- reference: the obvious loop: one document per row padded to the max length with an attention mask,
  default allocator, default AdamW, ``loss.item()`` every step. Only non-pad tokens count as useful.

Usage: ``PYTHONPATH=src python bench/pretrain_throughput.py [--ladder cpu] [--sizes xs,s,m,l,xl] [--vocab 1024]
[--steps 30] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def matmul_peak_flops(n: int = 1024, seconds: float = 1.0) -> float:
    """Best fp32 matmul rate (FLOP/s) of an n×n×n product over ``seconds`` of repeats."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def model_gemms(spec, tokens: int) -> list[tuple[int, int, int, str]]:
    """Every matrix product of one training step on ``tokens`` tokens: (m, k, n, part) for the forward product
    and the two backward ones (input and weight gradient) of each linear layer, and the attention products."""
    d, kv, ff = spec.d_model, spec.n_kv_heads * spec.head_dim, spec.intermediate_size
    linears = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]  # q k v o gate up down
    gemms = []
    for k, n in linears * spec.n_layers:
        gemms += [
            (tokens, k, n, "non-embedding"),
            (tokens, n, k, "non-embedding"),
            (k, tokens, n, "non-embedding"),
        ]
    # the tied output projection (logits) with its two gradients
    gemms += [(tokens, d, spec.vocab_size, "output"), (tokens, spec.vocab_size, d, "output"),
              (d, tokens, spec.vocab_size, "output")]  # fmt: skip
    return gemms


def attention_flops_per_token(spec, seq: int) -> float:
    """Causal attention score and value products, forward + backward (3x), per token: 6 · L · d · seq
    (QK^T and AV each 2 · seq · d per token, halved by the causal mask, times 3 for the backward)."""
    return 6 * spec.n_layers * spec.d_model * seq


def gemm_rate(gemms: list[tuple[int, int, int, str]], repeats: int = 3) -> float:
    """Best-of-``repeats`` FLOP/s of running the step's products back to back at their own shapes (no other work):
    the fastest these shapes go on this machine."""
    import torch

    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n, _ in gemms]
    flops = sum(2 * m * k * n for m, k, n, _ in gemms)
    for a, b in operands:
        torch.matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a, b in operands:
            torch.matmul(a, b)
        best = max(best, flops / (time.perf_counter() - t0))
    return best


def ceiling(ladder: str, size: str, batch: int, seq: int, vocab: int) -> dict:
    """Where the utilisation target sits for this shape: the step's FLOPs by part, the rate of its own matrix
    products, and the utilisation a step would reach if it did nothing but those products at that rate."""
    from ftscale.models.family import parameter_counts

    spec = ladder_spec(ladder, size, vocab)
    tokens = batch * seq
    gemms = model_gemms(spec, tokens)
    per_token = {part: sum(2 * m * k * n for m, k, n, p in gemms if p == part) / tokens
                 for part in ("non-embedding", "output")}  # fmt: skip
    per_token["attention"] = attention_flops_per_token(spec, seq)
    non_embedding = parameter_counts(spec).non_embedding
    peak = matmul_peak_flops()
    rate = gemm_rate(gemms)
    total = sum(per_token.values())
    return {
        "size": size, "non_embedding": non_embedding, "flops_per_token": per_token,
        "six_n_share": 6 * non_embedding / total, "peak_flops": peak, "gemm_rate": rate,
        # every FLOP at the 1024^3 peak / at the step's own GEMM rate
        "ceiling_at_peak": 6 * non_embedding / total, "ceiling_at_gemm_rate": 6 * non_embedding / total * rate / peak,
    }  # fmt: skip


def ladder_spec(ladder: str, size: str, vocab: int):
    from ftscale.models.family import family

    return family(ladder)[size].with_vocab(vocab)


def step_flops_per_token(spec, batch: int, seq: int) -> float:
    """Every matrix-product FLOP of one training step, per token: linear layers, output layer, attention."""
    tokens = batch * seq
    return sum(
        2 * m * k * n for m, k, n, _ in model_gemms(spec, tokens)
    ) / tokens + attention_flops_per_token(spec, seq)


def document_lengths(n_docs: int, max_len: int, seed: int) -> np.ndarray:
    """Document lengths in tokens (uniform 16…max_len): what a plain loop pads each row up to max_len."""
    return np.random.default_rng(seed).integers(16, max_len + 1, size=n_docs)


def token_stream(n_tokens: int, vocab: int, seed: int) -> np.ndarray:
    """Zipf-like token ids (the loss values do not matter for speed, the shapes do)."""
    rng = np.random.default_rng(seed)
    return (rng.zipf(1.2, size=n_tokens) % (vocab - 4) + 4).astype(np.int32)


def run_ours(
    ladder: str, size: str, steps: int, warmup: int, batch: int, seq: int, vocab: int, compile_model: bool
) -> dict:
    import torch

    from ftscale.models.family import parameter_counts
    from ftscale.models.pretrain import PretrainConfig, pretrain
    from ftscale.models.runtime import tcmalloc_loaded

    spec = ladder_spec(ladder, size, vocab)
    total = (warmup + steps) * batch * seq
    config = PretrainConfig(model=spec, total_tokens=total, batch_size=batch, seq_len=seq, device="cpu",
                            compile=compile_model, log_every=50)  # fmt: skip
    stamps: dict[int, float] = {}
    tokenizer = _tiny_tokenizer(vocab)
    peak = matmul_peak_flops()
    with tempfile.TemporaryDirectory() as out:
        pretrain(config, tokenizer, token_stream(total + seq, vocab, 0), out, progress=False,
                 on_step=lambda info: stamps.__setitem__(info.step, time.perf_counter()))  # fmt: skip
    elapsed = stamps[warmup + steps] - stamps[warmup]
    tokens = steps * batch * seq
    gemm = gemm_rate(model_gemms(spec, batch * seq))
    return {"variant": "ours" + ("+compile" if compile_model else ""), "size": size,
            "non_embedding": parameter_counts(spec).non_embedding, "total_params": parameter_counts(spec).total,
            "flops_per_token": step_flops_per_token(spec, batch, seq), "tokens_per_s": tokens / elapsed,
            "peak_flops": peak, "gemm_rate": gemm, "tcmalloc": tcmalloc_loaded(),
            "threads": torch.get_num_threads()}  # fmt: skip


def run_plain(ladder: str, size: str, steps: int, warmup: int, batch: int, seq: int, vocab: int) -> dict:
    import torch

    from ftscale.models.family import build_model, parameter_counts
    from ftscale.models.runtime import tcmalloc_loaded

    spec = ladder_spec(ladder, size, vocab)
    model = build_model(spec, seed=0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    lengths = document_lengths((warmup + steps) * batch, seq, seed=0)
    ids = token_stream(int(lengths.sum()), vocab, 0)
    docs = np.split(ids, np.cumsum(lengths)[:-1])
    peak = matmul_peak_flops()
    useful, t_start = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            t_start = time.perf_counter()
        rows = docs[step * batch : (step + 1) * batch]
        input_ids = torch.zeros(batch, seq, dtype=torch.long)
        mask = torch.zeros(batch, seq, dtype=torch.long)
        for i, doc in enumerate(rows):
            input_ids[i, : len(doc)] = torch.from_numpy(doc.astype(np.int64))
            mask[i, : len(doc)] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        _ = loss.item()  # the usual per-step logging
        if step >= warmup:
            useful += int(mask.sum())
    elapsed = time.perf_counter() - t_start
    return {"variant": "plain", "size": size, "non_embedding": parameter_counts(spec).non_embedding,
            "total_params": parameter_counts(spec).total, "flops_per_token": step_flops_per_token(spec, batch, seq),
            "tokens_per_s": useful / elapsed, "peak_flops": peak, "tcmalloc": tcmalloc_loaded(),
            "threads": torch.get_num_threads()}  # fmt: skip


def _tiny_tokenizer(vocab: int):
    """A stand-in tokenizer of the right size (the benchmark feeds token ids, so only len() and eos matter)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(4, vocab)}
    words.update({"<pad>": 0, "<s>": 1, "</s>": 2, "<sep>": 3})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<pad>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def worker(args: argparse.Namespace) -> None:
    if args.worker == "ours":
        from ftscale.models.runtime import configure_threads, maybe_reexec_with_tcmalloc

        maybe_reexec_with_tcmalloc()
        configure_threads()
        result = run_ours(
            args.ladder, args.size, args.steps, args.warmup, args.batch, args.seq, args.vocab, args.compile
        )
    else:
        result = run_plain(args.ladder, args.size, args.steps, args.warmup, args.batch, args.seq, args.vocab)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(variant: str, size: str, args: argparse.Namespace, compile_model: bool = False) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LD_PRELOAD", None)
    env.pop("FTSCALE_TCMALLOC_REEXEC", None)
    if variant == "plain":
        env["FTSCALE_TCMALLOC"] = "0"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--size", size, "--ladder", args.ladder,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
           "--seq", str(args.seq), "--vocab", str(args.vocab)] + (["--compile"] if compile_model else [])  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{variant} {size} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", default="cpu", help="cpu | demo")
    parser.add_argument("--sizes", default="xs,s,m,l,xl")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=1024, help="the cpu ladder's (the small* presets')")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats per size; best is kept")
    parser.add_argument("--compile", action="store_true", help="also measure ours with torch.compile")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    parser.add_argument(
        "--ceiling", action="store_true", help="only the FLOP accounting and GEMM-rate ceiling per size"
    )
    parser.add_argument("--worker", choices=["ours", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    if args.ceiling:
        print("| size | 6N / token | output layer / token | attention / token | 6N share | 1024³ peak GFLOP/s "
              "| step GEMMs GFLOP/s | ceiling: all FLOPs at peak | ceiling: at the step's GEMM rate |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for size in args.sizes.split(","):
            c = ceiling(args.ladder, size, args.batch, args.seq, args.vocab)
            f = c["flops_per_token"]
            print(f"| {size} | {f['non-embedding'] / 1e6:.1f}M | {f['output'] / 1e6:.1f}M | {f['attention'] / 1e6:.1f}M "
                  f"| {c['six_n_share']:.0%} | {c['peak_flops'] / 1e9:.0f} | {c['gemm_rate'] / 1e9:.0f} "
                  f"| {c['ceiling_at_peak']:.0%} | {c['ceiling_at_gemm_rate']:.0%} |", flush=True)  # fmt: skip
        return

    variants = ["plain", "ours"] + (["ours+compile"] if args.compile else [])
    results = []
    for size in args.sizes.split(","):
        for _ in range(args.repeats):
            for variant in variants:
                results.append(
                    spawn(variant.split("+")[0], size, args, compile_model=variant == "ours+compile")
                )
                r = results[-1]
                print(f"  {size:3s} {r['variant']:13s} {r['tokens_per_s']:9.0f} tok/s  util {util(r):5.1%}  "
                      f"peak {r['peak_flops'] / 1e9:5.0f} GFLOP/s  tcmalloc={r['tcmalloc']}", flush=True)  # fmt: skip
    print("\n| size | non-emb / total params | FLOPs / token | plain tok/s | plain util | ours tok/s | ours util "
          "| ceiling | ours ÷ ceiling | speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        best = {}
        for variant in variants:
            rs = [r for r in results if r["size"] == size and r["variant"] == variant]
            best[variant] = max(rs, key=lambda r: r["tokens_per_s"])
        plain, ours = best["plain"], best[variants[-1]]
        ceil = ours["gemm_rate"] / ours["peak_flops"]
        print(f"| {size} | {plain['non_embedding'] / 1e3:,.0f}k / {plain['total_params'] / 1e3:,.0f}k "
              f"| {plain['flops_per_token'] / 1e6:.2f}M | {plain['tokens_per_s']:,.0f} | {util(plain):.0%} "
              f"| {ours['tokens_per_s']:,.0f} | {util(ours):.0%} | {ceil:.0%} | {util(ours) / ceil:.0%} "
              f"| {ours['tokens_per_s'] / plain['tokens_per_s']:.2f}× |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def util(r: dict) -> float:
    """Every matrix-product FLOP per token × tokens/s ÷ the 1024³ matmul peak of the same process."""
    return r["flops_per_token"] * r["tokens_per_s"] / r["peak_flops"]


if __name__ == "__main__":
    main()
