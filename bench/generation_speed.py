"""Greedy generation of a prompt-tuning model: ftscale's padded batches against one-length batches.

PEFT's own ``generate`` prepends the soft prompt to the already padded ids, which puts the padding between prompt
and text; the safe way around that (ftscale before this change, and the reference here) is to batch only prompts
of equal length, which gives many small batches. ``ftscale.finetune.evaluate.generate`` now places the soft prompt
between the padding and the text and batches prompts of any length. Both sides decode the same prompts with the
same model, greedy with the KV cache, in one process, and the script prints the time ratio.

The reference is a speed baseline only: with transformers 5.x and PEFT 0.21, PEFT's own prompt-tuning ``generate``
does not reproduce plain greedy decoding even without padding (on a trained 0.17M model it agreed with a
step-by-step greedy decode without cache on 0 of 12 prompts; ours on 12 of 12; the unit test
``test_batched_left_padded_generation_equals_plain_greedy`` checks ours). So the script checks ours batched against
ours one prompt at a time, not against the reference.

    python bench/generation_speed.py [--prompts 64] [--max-new-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time
import warnings

import torch

from finetune_throughput import BOS, EOS, PAD, VOCAB, base_model, padding_tokenizer
from ftscale.finetune.evaluate import generate
from ftscale.finetune.methods import MethodConfig, prepare_model


def one_length_generate(
    model, prompts: list[list[int]], max_new_tokens: int, batch_size: int
) -> list[list[int]]:
    """The reference: PEFT's own generate on batches whose prompts all have one length (no padding)."""
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    outputs: list[list[int]] = [[] for _ in prompts]
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            ids = torch.tensor([prompts[i] for i in batch])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    eos_token_id=EOS,
                    pad_token_id=PAD,
                )
            for row, i in enumerate(batch):
                tokens = out[row, ids.shape[1] :].tolist()
                outputs[i] = tokens[: tokens.index(EOS)] if EOS in tokens else tokens
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = random.Random(0)
    prompts = [
        [BOS, *(rng.randrange(3, VOCAB) for _ in range(rng.randint(9, 40)))] for _ in range(args.prompts)
    ]
    model, _ = prepare_model(base_model(), MethodConfig(method="prompt", prompt_length=8))
    model.eval()
    tokenizer = padding_tokenizer()

    best = {"one-length batches": float("inf"), "ftscale": float("inf")}
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            reference = one_length_generate(model, prompts, args.max_new_tokens, args.batch_size)
        best["one-length batches"] = min(best["one-length batches"], time.perf_counter() - start)
        start = time.perf_counter()
        ours = generate(
            model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        )
        best["ftscale"] = min(best["ftscale"], time.perf_counter() - start)
    del reference
    single = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=1)
    same = sum(a == b for a, b in zip(ours, single, strict=True))
    lengths = sorted(len(p) for p in prompts)
    print(f"{args.prompts} prompts of {lengths[0]}-{lengths[-1]} tokens, {args.max_new_tokens} new tokens, "
          f"{args.threads} thread(s); batched == one at a time: {same}/{len(prompts)}")  # fmt: skip
    for name, seconds in best.items():
        print(f"  {name:20s} {seconds:6.2f} s")
    print(f"speed-up: {best['one-length batches'] / best['ftscale']:.2f}x")


if __name__ == "__main__":
    main()
