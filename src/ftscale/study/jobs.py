"""The job functions of ``ftscale study run`` and their dispatch: tokenizer → pretraining → baseline (evaluate the
base model as is) → finetune and evaluate.

Each job reads only its own ``params`` (what its id hashes) and the directories of the jobs it depends on, and
returns a flat mapping of metrics that the store records as is. The pieces come from the library's own layers:
``data`` (tasks, subsets, tokenizer), ``models`` (family, pretraining) and ``finetune`` (methods, loop, evaluation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ftscale.data.corpus import pretraining_texts, shared_streams, task_data, validation_texts
from ftscale.errors import UserError
from ftscale.finetune.params import MethodParams, method_params
from ftscale.finetune.prepare import (
    DEV_EXAMPLES,
    FinetuneSetup,
    encode_examples,
    eval_sets,
    evaluate_metrics,
    quiet_libraries,
    setup_finetune,
)
from ftscale.study.executors import FinalFailure, JobContext
from ftscale.study.spec import EvaluationSpec, PretrainSpec

TOKENIZER_DIR = "tokenizer"
# What the tokenizer job read, for the pretraining jobs that depend on it (named before families could be shared
# between tasks; the name stays so that families already in a cache still resolve).
CORPUS_MARKER = "task.json"


# Sequences must hold the longest formatted example (template + source + target) plus soft-prompt tokens.
MODEL_MAX_SEQ_LEN = 1024


def run_job(ctx: JobContext) -> Mapping[str, Any]:
    """Dispatch one job of the plan to its runner."""
    import torch

    quiet_libraries()
    torch.set_num_threads(max(1, ctx.threads))
    runners = {
        "tokenizer": _tokenizer_job,
        "pretrain": _pretrain_job,
        "baseline": _baseline_job,
        "finetune": _finetune_job,
    }
    runner = runners[ctx.kind]
    if ctx.cached:
        from ftscale.study.cache import run_cached

        return run_cached(
            ctx.kind,
            ctx.params,
            ctx.work_dir,
            lambda: runner(ctx),
            on_wait=lambda: ctx.report_progress(0.0, "waiting: another study is building it"),
        )
    return runner(ctx)


def preflight(spec: Any) -> None:
    """Load the study's task data once before anything is written, so missing or malformed data files, zero-shot
    directions the task does not have and finetuning sizes larger than its training pool end the run with a
    one-line error and no study directory; the jobs then reuse the loaded splits."""
    data = task_data(spec.task.model_dump(mode="json"))
    problems = _data_problems(spec, data)
    if problems:
        from ftscale.study.spec import spec_error

        raise spec_error(getattr(spec, "source", "study.yaml"), problems)


def _data_problems(spec: Any, data: Any) -> list[tuple[str, str]]:
    """(YAML path, message) for each part of the spec that the loaded task data cannot serve."""
    problems: list[tuple[str, str]] = []
    name = data.task.name
    available = ", ".join(sorted(data.zero_shot)) or "none"
    for i, direction in enumerate(spec.evaluation.zero_shot):
        if direction not in data.zero_shot:
            problems.append(
                (
                    f"evaluation.zero_shot[{i}]",
                    f"task {name!r} has no {direction!r} test set; available: {available} "
                    "(remove it or use one of those)",
                )
            )
    # Finetuning subsets and few-shot prompts are drawn from ``data.train``: the split after the loader's own
    # carve-outs (e.g. a dev split cut from the training file) and the ``task.train_pool`` cap.
    pool = len(data.train)
    pool_rule = _pool_description(spec.task.train_pool, pool)
    for method, sizes in spec.factors.ft_sizes.items():
        for i, n in enumerate(sizes):
            if n > pool:
                problems.append(
                    (
                        f"factors.ft_sizes.{method}[{i}]",
                        f"{n} finetuning examples requested but task {name!r} has only {pool} training "
                        f"examples{pool_rule}; use sizes <= {pool} in factors.ft_sizes.{method} "
                        "(or give the task more training data)",
                    )
                )
    for i, k in enumerate(spec.evaluation.few_shot):
        if k > pool:
            problems.append(
                (
                    f"evaluation.few_shot[{i}]",
                    f"{k}-shot prompts need {k} training examples but task {name!r} has only {pool}"
                    f"{pool_rule}; use shot counts <= {pool}",
                )
            )
    return problems


def _pool_description(train_pool: int | None, available: int) -> str:
    if train_pool is None:
        return " (task.train_pool is unset: the whole training split)"
    if train_pool > available:
        return f" (task.train_pool ({train_pool}) is larger than the training split)"
    return f" (task.train_pool ({train_pool}))"


def _tokenizer_job(ctx: JobContext) -> Mapping[str, Any]:
    from ftscale.data.tokenizer import tokenizer_hash, train_tokenizer

    params = ctx.params
    if params.get("corpus") == "shared":
        # a family of the shared corpus serves every task of its languages: its tokenizer reads that corpus only
        texts, budget = [], 8_000_000
        docs: Iterable[str] = (doc for _, doc in shared_streams(params["shared"]))
    else:
        texts = list(task_data(params["task"]).tokenizer_texts())
        # add pretraining text so the vocabulary covers what the base models read, capped to keep this fast
        budget = 4_000_000
        docs = pretraining_texts(params["task"], params.get("corpus"))
    for doc in docs:
        texts.append(doc)
        budget -= len(doc)
        if budget <= 0:
            break
    tokenizer = train_tokenizer(texts, vocab_size=params["tokenizer"]["vocab_size"])
    tokenizer.save_pretrained(ctx.work_dir / TOKENIZER_DIR)
    # Pretraining jobs read their corpus through this job (their ids hash its id, so the corpus is covered).
    (ctx.work_dir / CORPUS_MARKER).write_text(
        json.dumps(
            {"task": params.get("task"), "corpus": params.get("corpus"), "shared": params.get("shared")}
        )
    )
    return {"vocab_size": len(tokenizer), "tokenizer_hash": tokenizer_hash(tokenizer), "n_texts": len(texts)}


def _load_tokenizer(directory: Path):
    from ftscale.data.tokenizer import load_tokenizer

    return load_tokenizer(directory / TOKENIZER_DIR)


def _pretrain_job(ctx: JobContext) -> Mapping[str, Any]:
    from ftscale.models.family import family
    from ftscale.models.pretrain import PretrainConfig, pretrain

    params = ctx.params
    (tokenizer_dir,) = ctx.dep_dirs.values()
    tokenizer = _load_tokenizer(tokenizer_dir)
    # typed again (a job's params travel as JSON): the spec's PretrainSpec, for this job's size
    pre = PretrainSpec.model_validate({**params["pretrain"], "sizes": [params["size"]]})
    # size names were checked against the ladder when the spec was loaded
    ladder = family(pre.ladder, vocab_size=len(tokenizer), max_seq_len=MODEL_MAX_SEQ_LEN)
    steps_total = max(1, pre.total_tokens // (pre.batch_size * pre.seq_len))
    warmup_steps = pre.warmup_tokens // (pre.batch_size * pre.seq_len)
    config = PretrainConfig(
        model=ladder[params["size"]],
        total_tokens=pre.total_tokens,
        batch_size=pre.batch_size,
        seq_len=pre.seq_len,
        lr=pre.lr,
        min_lr_ratio=pre.min_lr_ratio,
        warmup_fraction=min(0.5, warmup_steps / steps_total) if warmup_steps else 0.05,
        checkpoint_tokens=params["checkpoint_tokens"],
        anneal=params["annealed_checkpoints"],
        allow_repeat=True,
        seed=pre.seed,
        device=ctx.device,
    )
    texts, val_texts = _corpus_of_pretrain(ctx, pre.corpus)
    result = pretrain(
        config,
        tokenizer,
        texts,
        ctx.work_dir,
        val_texts=val_texts,
        progress=False,
        on_step=lambda info: ctx.report_progress(info.tokens_seen / config.total_tokens, f"step {info.step}"),
    )
    final = max(result.checkpoints, key=lambda c: (c.budget_tokens, not c.annealed))
    return {
        "non_embedding_params": final.params.non_embedding,
        "total_params": final.params.total,
        "embedding_params": final.params.embedding,
        "tokens_seen": result.tokens_seen,
        "steps": result.steps,
        "final_train_loss": result.final_train_loss,
        "final_val_loss": result.final_val_loss,
        "checkpoints": [
            {"budget": c.budget_tokens, "annealed": c.annealed, "val_loss": c.val_loss}
            for c in result.checkpoints
        ],
    }


def _corpus_of_pretrain(ctx: JobContext, corpus: str | None) -> tuple[Iterable[str], list[str]]:
    """(training documents, validation texts) of a pretraining job, from what its tokenizer job recorded: the
    shared corpus with its own held-out text, or a task's own pretraining text with the task's dev split."""
    (tokenizer_dir,) = ctx.dep_dirs.values()
    marker = tokenizer_dir / CORPUS_MARKER
    if not marker.exists():
        raise UserError(f"{marker}: missing; rerun the study's tokenizer job (ftscale study reset, then run)")
    recorded = json.loads(marker.read_text())
    if corpus == "shared":
        from ftscale.data.datasets.pretraining import shared_validation_texts

        shared = recorded["shared"]
        texts = (doc for _, doc in shared_streams(shared))
        return texts, shared_validation_texts(shared.get("data_dir"), shared["langs"])
    task = recorded["task"]
    return pretraining_texts(task, corpus), validation_texts(task)


def _base_checkpoint(ctx: JobContext) -> Path | str:
    base = ctx.params["base"]
    if base["source"] == "hf":
        return base["model_id"]
    from ftscale.models.pretrain import checkpoint_name

    pretrain_dir = ctx.dep_dirs[base["pretrain_job"]]
    annealed = base["checkpoint"] == "annealed"
    path = pretrain_dir / checkpoint_name(base["tokens"], annealed=annealed)
    if not path.is_dir():
        raise FileNotFoundError(f"base checkpoint missing: {path.name} in the pretraining job's directory")
    return path


def _load_base(ctx: JobContext):
    """The job's base checkpoint as ``(model, tokenizer)``: our own pretraining checkpoint or a published model."""
    from transformers import AutoModelForCausalLM

    from ftscale.data.tokenizer import load_tokenizer

    base_path = _base_checkpoint(ctx)
    if isinstance(base_path, Path):
        return AutoModelForCausalLM.from_pretrained(base_path), load_tokenizer(base_path)
    from ftscale.models.family import load_base_model

    model, tokenizer, _ = load_base_model(base_path, ctx.params["base"].get("revision"))
    return model, tokenizer


def _baseline_job(ctx: JobContext) -> Mapping[str, Any]:
    """The base checkpoint as is, no training: the paper's "Baseline" of the zero-/few-shot comparison, scored
    on exactly the prompts of the seed-0 finetuning runs."""
    from ftscale.finetune.evaluate import target_loss
    from ftscale.models.family import model_parameter_counts
    from ftscale.models.runtime import resolve_device

    params = ctx.params
    spec_task = params["task"]
    data = task_data(spec_task)
    model, tokenizer = _load_base(ctx)
    model.to(resolve_device(ctx.device, setting="execution.device"))
    evaluation = job_evaluation(params)
    sets = eval_sets(data, tokenizer, spec_task, evaluation, seed=0)
    dev, _ = encode_examples(data.task, data.dev[:DEV_EXAMPLES], tokenizer, spec_task)
    counts = model_parameter_counts(model)
    started = time.perf_counter()
    metrics = evaluate_metrics(model, tokenizer, sets, evaluation)
    metrics.update(
        {
            # the dev loss of the base model: the finetuning curves' starting point at zero finetuning examples
            "dev_loss": target_loss(model, dev).loss,
            "eval_seconds": time.perf_counter() - started,
            "trainable_params": 0,
            "total_params": sum(p.numel() for p in model.parameters()),
            "base_non_embedding_params": counts.non_embedding,
            "base_total_params": counts.total,
        }
    )
    return metrics


def job_evaluation(params: Mapping[str, Any]) -> dict[str, Any]:
    """A job's evaluation settings typed again by the spec's EvaluationSpec (every setting present)."""
    return EvaluationSpec.model_validate(params["evaluation"]).model_dump(mode="json")


def job_method_params(params: Mapping[str, Any]) -> MethodParams:
    """A finetuning job's method and hyperparameters, typed again (a job's params travel as JSON)."""
    return method_params(params["method"], params["method_config"])


def prepare_finetune(ctx: JobContext) -> FinetuneSetup:
    """Load the base checkpoint of a finetuning job and set up its run (model, data subset, config)."""
    params = ctx.params
    model, tokenizer = _load_base(ctx)
    return setup_finetune(
        model,
        tokenizer,
        task_data(params["task"]),
        params["task"],
        job_method_params(params),
        ft_examples=params["ft_examples"],
        seed=params["seed"],
        device=ctx.device if ctx.device in ("cpu", "cuda", "auto") else "auto",
    )


def _finetune_job(ctx: JobContext) -> Mapping[str, Any]:
    from ftscale.finetune.methods import merged_lora
    from ftscale.finetune.train import finetune

    setup = prepare_finetune(ctx)
    model, info, tokenizer, train = setup.model, setup.info, setup.tokenizer, setup.train
    params = ctx.params
    evaluation = job_evaluation(params)
    sets = eval_sets(setup.data, tokenizer, params["task"], evaluation, seed=params["seed"])
    started = time.perf_counter()
    result = finetune(
        model,
        train,
        setup.dev,
        setup.config,
        progress=False,
        on_step=lambda step, total: ctx.report_progress(step / total, f"step {step}/{total}"),
    )
    train_seconds = time.perf_counter() - started
    if result.status != "done":
        raise FinalFailure(result.status)  # "failed: diverged at step N": a retry would diverge again

    with merged_lora(model):
        scores = evaluate_metrics(model, tokenizer, sets, evaluation)
    metrics: dict[str, Any] = {
        "loss": scores.pop("loss"),
        "ppl": scores.pop("ppl"),
        "n_test_tokens": scores.pop("n_test_tokens"),
        "dev_loss": result.best_dev_loss,
        "best_step": result.best_step,
        "steps_run": result.steps_run,
        "stopped_early": result.stopped_early,
        "train_tokens": result.train_tokens,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": train_seconds,
        "trainable_params": info.trainable,
        "total_params": info.total,
        "base_non_embedding_params": info.base_non_embedding,
        "base_total_params": info.base_total,
        "n_train_examples": len(train),
        **scores,
    }
    return metrics
