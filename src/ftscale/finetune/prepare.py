"""Everything a finetuning run and its evaluation are built from, given a base model and the task's data: the
encoded training subset and dev slice, the evaluation sets (test split, zero-shot directions, few-shot prompts),
the run's configs from typed method parameters, and the flat metrics of an evaluation.

Shared by the study's finetuning and baseline jobs and by the learning-rate sweep, so that all of them see
identical inputs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ftscale.finetune.params import MethodParams

# Dev loss is evaluated many times per run: a fixed, bounded slice keeps that cheap and identical across runs.
DEV_EXAMPLES = 256


def quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, deprecation notices) out of the study's progress display."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\b.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\b.*")


def encode_examples(task, examples, tokenizer, spec_task: Mapping[str, Any], shots_for=None):
    encoded = []
    kept = []
    for i, example in enumerate(examples):
        shots = shots_for(i) if shots_for else ()
        enc = task.encode(
            example,
            tokenizer,
            max_source_tokens=spec_task["max_source_tokens"],
            max_target_tokens=spec_task["max_target_tokens"],
            overflow="truncate",
            shots=shots,
        )
        if enc is not None:
            encoded.append(enc)
            kept.append(example)
    return encoded, kept


@dataclass
class EvalSets:
    """What a finetuned model and its un-finetuned baseline are scored on, encoded by one code path so both see
    identical inputs: the test split, zero-shot directions and few-shot prompts (prompt ids, references)."""

    test: list[Any]
    refs: list[str]
    tgt_lang: str
    zero_shot: dict[str, tuple[list[list[int]], list[str]]]
    few_shot: dict[int, tuple[list[list[int]], list[str]]]


def eval_sets(
    data, tokenizer, spec_task: Mapping[str, Any], evaluation: Mapping[str, Any], seed: int
) -> EvalSets:
    """Encode the evaluation sets; the few-shot shots are drawn with ``seed`` (the baseline uses seed 0, the seed
    of the finetuning runs that score few-shot prompts)."""
    task = data.task
    test, test_kept = encode_examples(task, data.test, tokenizer, spec_task)
    refs = [example.target for example in test_kept]
    # One tokenisation for the metrics: sacrebleu's "zh" tokenizer also handles non-Chinese text, so a mix with
    # Chinese targets (e.g. De+Zh summarisation) is scored with it.
    target_langs = {example.tgt_lang for example in test_kept}
    tgt_lang = "zh" if "zh" in target_langs else test_kept[0].tgt_lang
    zero_shot = {}
    for direction in evaluation["zero_shot"]:  # directions were checked by preflight
        encoded, kept = encode_examples(task, data.zero_shot[direction], tokenizer, spec_task)
        zero_shot[direction] = ([e.prompt_ids for e in encoded], [e.target for e in kept])
    few_shot = {}
    rng = random.Random(seed)
    for k in evaluation["few_shot"]:
        # Shots come from the training pool (never the test set), drawn per test example with a fixed seed.
        shots = [rng.sample(data.train, k) for _ in test_kept]
        encoded, kept = encode_examples(
            task, test_kept, tokenizer, spec_task, shots_for=lambda i, s=shots: s[i]
        )
        few_shot[k] = ([e.prompt_ids for e in encoded], [e.target for e in kept])
    return EvalSets(test, refs, tgt_lang, zero_shot, few_shot)


def evaluate_metrics(model, tokenizer, sets: EvalSets, evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """Test loss and generation scores of ``model`` as flat metrics (``zs_<direction>_<metric>``,
    ``fs<k>_<metric>``), named alike for finetuning runs and baselines."""
    from ftscale.finetune.evaluate import evaluate_model

    ev = evaluate_model(
        model,
        tokenizer,
        sets.test,
        sets.refs,
        sets.tgt_lang,
        generation=bool(evaluation["generation"]),
        max_eval_examples=evaluation["max_eval_examples"],
        zero_shot=sets.zero_shot or None,
        few_shot=sets.few_shot or None,
        max_new_tokens=evaluation["max_new_tokens"],
    )
    metrics: dict[str, Any] = {
        "loss": ev.test_loss,
        "ppl": ev.test_ppl,
        "n_test_tokens": ev.n_test_tokens,
        "bleu": ev.bleu,
        "chrf": ev.chrf,
        "rougeL": ev.rougeL,
    }
    for name, scores in ev.zero_shot.items():
        for metric, value in scores.items():
            if metric != "n":
                metrics[f"zs_{name}_{metric}"] = value
    for k, scores in ev.few_shot.items():
        for metric, value in scores.items():
            if metric != "n":
                metrics[f"fs{k}_{metric}"] = value
    return metrics


@dataclass
class FinetuneSetup:
    """Everything a finetuning job trains with, built from its params alone: the prepared (PEFT) model, the
    encoded training subset and dev slice, the loop's config. Shared by study jobs and the LR sweep."""

    model: Any
    info: Any
    tokenizer: Any
    data: Any
    train: list[Any]
    dev: list[Any]
    config: Any


def setup_finetune(
    model: Any,
    tokenizer: Any,
    data: Any,
    spec_task: Mapping[str, Any],
    params: MethodParams,
    ft_examples: int,
    seed: int,
    device: str = "auto",
) -> FinetuneSetup:
    """A finetuning run of ``model`` on a seeded subset of ``ft_examples`` training examples with the method's
    typed parameters: the prepared (PEFT) model, the encoded subset and dev slice, the loop's config."""
    from ftscale.data.subsets import subset
    from ftscale.finetune.methods import prepare_model
    from ftscale.finetune.train import FinetuneConfig

    task = data.task
    train_examples = subset(data.train, ft_examples, seed=seed)
    train, _ = encode_examples(task, train_examples, tokenizer, spec_task)
    dev, _ = encode_examples(task, data.dev[:DEV_EXAMPLES], tokenizer, spec_task)
    config = FinetuneConfig.from_params(params, device=device, seed=seed)
    model, info = prepare_model(model, config.method, seed=seed)
    return FinetuneSetup(model, info, tokenizer, data, train, dev, config)
