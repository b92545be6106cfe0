"""Finetuning throughput (tokens/s) of ftscale against Hugging Face ``Trainer`` + PEFT doing the same work.

Same tiny Llama (d_model 128, 8 layers, multi-query attention: ~2M non-embedding parameters, vocabulary 8k), same
synthetic data (source 10-60 and target 10-60 tokens, so 20-120 per example), same batch size, learning rate,
cosine schedule, gradient clipping, number of steps, dev evaluation cadence and best-by-dev-loss checkpoint
selection, for FMT, LoRA and prompt tuning, measured in one process. The training set holds exactly
``steps * batch_size`` examples, so both sides process exactly the same tokens (one epoch).

Tokens/s = non-padding tokens of the training set / wall time from model preparation to the end of training
(dev evaluations included). ftscale evaluates the dev loss at step 0 too (the starting weights are a candidate
checkpoint), so the Trainer is given ``eval_on_start=True``: both sides run the same evaluations.

    python bench/finetune_throughput.py [--steps 60] [--repeats 1]

Columns: tok/s of the best repeat per side and their ratio, then every repeat's paired ratio (ftscale and the
Trainer run back to back) and their median.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import random
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models
from transformers import (
    DataCollatorForSeq2Seq,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from ftscale.data.types import EncodedExample
from ftscale.finetune.methods import MethodConfig, prepare_model
from ftscale.finetune.train import FinetuneConfig, finetune
from ftscale.models.family import model_parameter_counts

VOCAB = 8000
PAD, BOS, EOS = 0, 1, 2

# The configurations RESULTS.md reports (CPU-scale rates and batches, 16 virtual tokens), fixed here so that a
# change of the library's defaults never changes what this benchmark measures.
MEASURED_CONFIGS: dict[str, dict[str, float | int]] = {
    "fmt": {"learning_rate": 1e-3, "batch_size": 16},
    "prompt": {"learning_rate": 3e-2, "batch_size": 8, "prompt_length": 16},
    "lora": {"learning_rate": 3e-3, "batch_size": 8, "lora_rank": 4},
}


def base_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=8,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    return LlamaForCausalLM(config)


def synthetic_pairs(n: int, seed: int) -> list[EncodedExample]:
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        source = [rng.randrange(3, VOCAB) for _ in range(rng.randint(9, 59))]
        target = [rng.randrange(3, VOCAB) for _ in range(rng.randint(9, 59))]
        prompt = [BOS, *source]
        examples.append(EncodedExample(tuple(prompt + target + [EOS]), target_start=len(prompt)))
    return examples


def hf_dataset(examples: list[EncodedExample]) -> Dataset:
    return Dataset.from_dict(
        {
            "input_ids": [list(e.input_ids) for e in examples],
            "attention_mask": [[1] * len(e.input_ids) for e in examples],
            "labels": [[-100] * e.target_start + list(e.target_ids) for e in examples],
        }
    )


def padding_tokenizer() -> PreTrainedTokenizerFast:
    """Only used by the data collator to pad; ids are already tokens."""
    vocab = {str(i): i for i in range(VOCAB)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="3"))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="0", bos_token="1", eos_token="2")


def run_ftscale(method: MethodConfig, train, dev, steps: int, eval_every: int) -> tuple[float, float]:
    start = time.perf_counter()
    model, _ = prepare_model(base_model(), method)
    config = FinetuneConfig(
        method=method,
        max_steps=steps,
        eval_every=eval_every,
        eval_batch_size=16,
        patience=None,
        device="cpu",
        grad_clip=1.0,
    )
    result = finetune(model, train, dev, config, progress=False)
    return time.perf_counter() - start, result.best_dev_loss


def run_trainer(
    method: MethodConfig, train, dev, steps: int, eval_every: int, sampling: str
) -> tuple[float, float]:
    train_set, dev_set = hf_dataset(train), hf_dataset(dev)
    collator = DataCollatorForSeq2Seq(padding_tokenizer(), padding=True, label_pad_token_id=-100)
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        model, _ = prepare_model(base_model(), method)
        args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=method.batch_size,
            per_device_eval_batch_size=16,
            max_steps=steps,
            learning_rate=method.learning_rate,
            weight_decay=method.weight_decay,
            lr_scheduler_type="cosine",
            warmup_steps=0,
            max_grad_norm=1.0,
            optim="adamw_torch",
            eval_strategy="steps",
            eval_steps=eval_every,
            eval_on_start=True,  # the same cadence as ftscale, which evaluates the starting weights too
            save_strategy="steps",
            save_steps=eval_every,
            save_only_model=True,
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
            logging_steps=eval_every,
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
            dataloader_num_workers=0,
            train_sampling_strategy=sampling,
            prediction_loss_only=True,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train_set, eval_dataset=dev_set, data_collator=collator
        )
        with contextlib.redirect_stdout(io.StringIO()):  # Trainer prints its log dicts
            trainer.train()
        elapsed = time.perf_counter() - start
        dev_loss = min(row["eval_loss"] for row in trainer.state.log_history if "eval_loss" in row)
    return elapsed, dev_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default="fmt,lora,prompt")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads for both sides (0: torch default)"
    )
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"non-embedding parameters: {model_parameter_counts(base_model()).non_embedding:,}; threads {torch.get_num_threads()}"
    )
    dev = synthetic_pairs(args.dev, seed=1)
    print(
        "| method | batch | ftscale tok/s | Trainer tok/s | ratio | Trainer group_by_length tok/s | ratio |"
        " paired ratios (median) | paired ratios, group_by_length (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.methods.split(","):
        method = MethodConfig(method=name, **MEASURED_CONFIGS[name])
        train = synthetic_pairs(args.steps * method.batch_size, seed=0)
        tokens = sum(len(e.input_ids) for e in train)
        times: dict[str, list[float]] = {"ftscale": [], "random": [], "group_by_length": []}
        # Untimed warm-up of both code paths (lazy imports, first-call kernel setup).
        run_ftscale(copy.deepcopy(method), train[: 2 * method.batch_size], dev[:8], 2, 1)
        run_trainer(method, train[: 2 * method.batch_size], dev[:8], 2, 1, "random")
        for _ in range(args.repeats):
            # Alternate order inside a repeat so slow drifts of the shared machine hit every side.
            times["ftscale"].append(
                run_ftscale(copy.deepcopy(method), train, dev, args.steps, args.eval_every)[0]
            )
            for sampling in ("random", "group_by_length"):
                times[sampling].append(
                    run_trainer(method, train, dev, args.steps, args.eval_every, sampling)[0]
                )
        # Best of the repeats per side, and the ratio of each repeat's back-to-back runs (robust to slow drifts).
        rate = {side: tokens / min(values) for side, values in times.items()}
        paired = {
            side: sorted(other / ours for ours, other in zip(times["ftscale"], times[side], strict=True))
            for side in ("random", "group_by_length")
        }
        shown = {
            side: f"{' / '.join(f'{r:.2f}' for r in ratios)} ({statistics.median(ratios):.2f}x)"
            for side, ratios in paired.items()
        }
        print(
            f"| {name} | {method.batch_size} | {rate['ftscale']:,.0f} | {rate['random']:,.0f} | "
            f"{rate['ftscale'] / rate['random']:.2f}x | {rate['group_by_length']:,.0f} | "
            f"{rate['ftscale'] / rate['group_by_length']:.2f}x | {shown['random']} | {shown['group_by_length']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
