"""The real job function of ``ftscale study run``: tokenizer → pretraining → baseline (evaluate the base model
as is) → finetune and evaluate.

Each job reads only its own ``params`` (what its id hashes) and the directories of the jobs it depends on, and
returns a flat mapping of metrics that the store records as is. The pieces come from the library's own layers:
``data`` (tasks, subsets, tokenizer), ``models`` (family, pretraining) and ``finetune`` (methods, loop, evaluation).
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftscale.errors import UserError
from ftscale.finetune.params import MethodParams, method_params
from ftscale.study.executors import FinalFailure, JobContext

TOKENIZER_DIR = "tokenizer"
# Sequences must hold the longest formatted example (template + source + target) plus soft-prompt tokens.
MODEL_MAX_SEQ_LEN = 1024
# Dev loss is evaluated many times per run: a fixed, bounded slice keeps that cheap and identical across runs.
DEV_EXAMPLES = 256


def run_job(ctx: JobContext) -> Mapping[str, Any]:
    """Dispatch one job of the plan to its runner."""
    import torch

    _quiet_libraries()
    torch.set_num_threads(max(1, ctx.threads))
    runners = {
        "tokenizer": _tokenizer_job,
        "pretrain": _pretrain_job,
        "baseline": _baseline_job,
        "finetune": _finetune_job,
    }
    return runners[ctx.kind](ctx)


def _quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, deprecation notices) out of the study's progress display."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\b.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\b.*")


# ------------------------------------------------------------------------------------------------ task data


@functools.lru_cache(maxsize=4)
def _task_data_cached(task_json: str):
    from ftscale.data.adapters import load_task

    task = json.loads(task_json)
    options = dict(task.get("options") or {})
    name = task["name"]
    pool = task.get("train_pool")
    if pool is not None and name.startswith("synthetic") and "n_train" not in options:
        options["n_train"] = pool
    data = load_task(name, task.get("data_dir"), **options)
    if pool is not None and len(data.train) > pool:
        from ftscale.data.subsets import subset

        # A fixed, seeded cap of the training pool; finetuning subsets are drawn from it.
        data.train = subset(data.train, pool, seed=0)
    return data


def task_data(task: Mapping[str, Any]):
    """The task's splits, loaded once per process (jobs of one study share them)."""
    return _task_data_cached(json.dumps(task, sort_keys=True))


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


def _interleave(streams: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """Round-robin over several document streams, so a language mix is mixed from the first batch on."""
    iterators = {name: iter(docs) for name, docs in streams.items()}
    while iterators:
        for name in list(iterators):
            doc = next(iterators[name], None)
            if doc is None:
                del iterators[name]
            else:
                yield name, doc


def _balanced(streams: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """Documents from several streams, always taking the next one from the stream with the fewest characters
    emitted so far: an even mix by volume (long Wikipedia articles do not crowd out short sentence documents),
    until a stream runs out and the others go on."""
    iterators = {name: iter(docs) for name, docs in streams.items()}
    emitted = dict.fromkeys(iterators, 0)
    while iterators:
        name = min(iterators, key=lambda key: (emitted[key], key))
        doc = next(iterators[name], None)
        if doc is None:
            del iterators[name]
            continue
        emitted[name] += len(doc)
        yield name, doc


def pretraining_streams(task: Mapping[str, Any], corpus: str | None) -> Iterator[tuple[str, str]]:
    """``(stream, document)`` pairs in the order the base family reads them; the stream is ``"<lang>/<source>"``
    for the shared corpus and the language for the task's own text (see ``pretraining_texts``)."""
    data = task_data(task)
    if corpus == "shared":
        from ftscale.data.adapters import pretraining_corpus

        langs = sorted({lang for lang in data.task.languages} | {"en"})
        shared = pretraining_corpus(task.get("data_dir"), langs=langs, seed=0)
        return _balanced(
            {f"{lang}/{name}": docs for lang in langs for name, docs in shared.by_source[lang].items()}
        )
    if not data.pretraining_text:
        raise UserError(
            f"task {task['name']!r} has no pretraining text of its own; set family.pretrain.corpus: shared"
        )
    return _interleave({lang: make() for lang, make in data.pretraining_text.items()})


def pretraining_texts(task: Mapping[str, Any], corpus: str | None) -> Iterator[str]:
    """Monolingual documents for the base family: the task's own pretraining text (both languages mixed), or
    ``corpus="shared"`` for the multilingual corpus built from the real data's training splits: the task's
    languages and English, every (language, source) stream mixed evenly by characters, so that in-domain
    sentence data is not drowned by Wikipedia articles and a language's smaller source runs out first."""
    return (doc for _, doc in pretraining_streams(task, corpus))


def pretraining_mix(
    task: Mapping[str, Any], corpus: str | None, tokenizer: Any, total_tokens: int, seq_len: int
) -> list[dict[str, Any]]:
    """What a pretraining run of ``total_tokens`` reads, per stream: documents, characters and tokens (with EOS).

    Pretraining tokenises the stream in batches of 512 documents until it holds the tokens it needs, then trains
    on a seeded sample of that head's packed rows, so the shares below are the expected shares of the training
    tokens (``read_tokens`` may exceed ``total_tokens`` by up to one batch of documents)."""
    needed = (total_tokens // seq_len) * seq_len + 1
    rows: dict[str, dict[str, Any]] = {}
    read = 0
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal read
        for (name, doc), n in zip(batch, _token_lengths(tokenizer, [d for _, d in batch]), strict=True):
            row = rows.setdefault(name, {"stream": name, "documents": 0, "characters": 0, "tokens": 0})
            row["documents"] += 1
            row["characters"] += len(doc)
            row["tokens"] += n
            read += n
        batch.clear()

    for item in pretraining_streams(task, corpus):
        batch.append(item)
        if len(batch) == 512:
            flush()
            if read >= needed:
                break
    if batch:
        flush()
    for row in rows.values():
        row["share"] = row["tokens"] / read if read else 0.0
    return sorted(rows.values(), key=lambda row: row["stream"])


def _token_lengths(tokenizer: Any, docs: list[str]) -> list[int]:
    return [len(ids) + 1 for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]]


# ------------------------------------------------------------------------------------------------ tokenizer


def _tokenizer_job(ctx: JobContext) -> Mapping[str, Any]:
    from ftscale.data.tokenizer import tokenizer_hash, train_tokenizer

    params = ctx.params
    data = task_data(params["task"])
    texts = list(data.tokenizer_texts())
    # Add pretraining text so the vocabulary covers what the base models read, capped to keep this fast.
    budget = 4_000_000
    for doc in pretraining_texts(params["task"], params.get("corpus")):
        texts.append(doc)
        budget -= len(doc)
        if budget <= 0:
            break
    tokenizer = train_tokenizer(texts, vocab_size=params["tokenizer"]["vocab_size"])
    tokenizer.save_pretrained(ctx.work_dir / TOKENIZER_DIR)
    # Pretraining jobs read their corpus through this job (their ids hash its id, so the task is covered).
    (ctx.work_dir / "task.json").write_text(
        json.dumps({"task": params["task"], "corpus": params.get("corpus")})
    )
    return {"vocab_size": len(tokenizer), "tokenizer_hash": tokenizer_hash(tokenizer), "n_texts": len(texts)}


def _load_tokenizer(directory: Path):
    from ftscale.data.tokenizer import load_tokenizer

    return load_tokenizer(directory / TOKENIZER_DIR)


# ----------------------------------------------------------------------------------------------- pretraining


def _pretrain_job(ctx: JobContext) -> Mapping[str, Any]:
    from ftscale.models.family import family
    from ftscale.models.pretrain import PretrainConfig, pretrain

    params = ctx.params
    (tokenizer_dir,) = ctx.dep_dirs.values()
    tokenizer = _load_tokenizer(tokenizer_dir)
    pre = params["pretrain"]
    # size names were checked against the ladder when the spec was loaded
    ladder = family(pre.get("ladder", "cpu"), vocab_size=len(tokenizer), max_seq_len=MODEL_MAX_SEQ_LEN)
    steps_total = max(1, pre["total_tokens"] // (pre["batch_size"] * pre["seq_len"]))
    warmup_steps = pre.get("warmup_tokens", 0) // (pre["batch_size"] * pre["seq_len"])
    config = PretrainConfig(
        model=ladder[params["size"]],
        total_tokens=pre["total_tokens"],
        batch_size=pre["batch_size"],
        seq_len=pre["seq_len"],
        lr=pre["lr"],
        min_lr_ratio=pre["min_lr_ratio"],
        warmup_fraction=min(0.5, warmup_steps / steps_total) if warmup_steps else 0.05,
        checkpoint_tokens=params["checkpoint_tokens"],
        anneal=params["annealed_checkpoints"],
        allow_repeat=True,
        seed=pre["seed"],
        device=ctx.device,
    )
    task = _task_of_pretrain(ctx)
    texts = pretraining_texts(task, pre.get("corpus"))
    val_texts = _validation_texts(task)
    result = pretrain(config, tokenizer, texts, ctx.work_dir, val_texts=val_texts, progress=False)
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


def _task_of_pretrain(ctx: JobContext) -> Mapping[str, Any]:
    # The tokenizer job's params carry the task; pretraining jobs reach it through their dependency.
    task = ctx.params.get("task")
    if task is None:
        (tokenizer_dir,) = ctx.dep_dirs.values()
        marker = tokenizer_dir / "task.json"
        task = json.loads(marker.read_text())["task"] if marker.exists() else None
    if task is None:
        raise UserError("pretraining job has no task to read its corpus from")
    return task


def _validation_texts(task: Mapping[str, Any]) -> list[str]:
    """Held-out text for the pretraining validation loss: dev-split sources and targets (never trained on)."""
    data = task_data(task)
    return [text for example in data.dev for text in (example.source, example.target)]


# ------------------------------------------------------------------------------------------------ finetuning


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


def _encode(task, examples, tokenizer, spec_task: Mapping[str, Any], shots_for=None):
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


@dataclass
class EvalSets:
    """What a finetuned model and its un-finetuned baseline are scored on, encoded by one code path so both see
    identical inputs: the test split, zero-shot directions and few-shot prompts (prompt ids, references)."""

    test: list[Any]
    refs: list[str]
    tgt_lang: str
    zero_shot: dict[str, tuple[list[list[int]], list[str]]]
    few_shot: dict[int, tuple[list[list[int]], list[str]]]


def _eval_sets(
    data, tokenizer, spec_task: Mapping[str, Any], evaluation: Mapping[str, Any], seed: int
) -> EvalSets:
    """Encode the evaluation sets; the few-shot shots are drawn with ``seed`` (the baseline uses seed 0, the seed
    of the finetuning runs that score few-shot prompts)."""
    task = data.task
    test, test_kept = _encode(task, data.test, tokenizer, spec_task)
    refs = [example.target for example in test_kept]
    # One tokenisation for the metrics: sacrebleu's "zh" tokenizer also handles non-Chinese text, so a mix with
    # Chinese targets (e.g. De+Zh summarisation) is scored with it.
    target_langs = {example.tgt_lang for example in test_kept}
    tgt_lang = "zh" if "zh" in target_langs else test_kept[0].tgt_lang
    zero_shot = {}
    for direction in evaluation.get("zero_shot") or []:  # directions were checked by preflight
        encoded, kept = _encode(task, data.zero_shot[direction], tokenizer, spec_task)
        zero_shot[direction] = ([e.prompt_ids for e in encoded], [e.target for e in kept])
    few_shot = {}
    rng = random.Random(seed)
    for k in evaluation.get("few_shot") or []:
        # Shots come from the training pool (never the test set), drawn per test example with a fixed seed.
        shots = [rng.sample(data.train, k) for _ in test_kept]
        encoded, kept = _encode(task, test_kept, tokenizer, spec_task, shots_for=lambda i, s=shots: s[i])
        few_shot[k] = ([e.prompt_ids for e in encoded], [e.target for e in kept])
    return EvalSets(test, refs, tgt_lang, zero_shot, few_shot)


def _evaluate(model, tokenizer, sets: EvalSets, evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """Test loss and generation scores of ``model`` as flat metrics (``zs_<direction>_<metric>``,
    ``fs<k>_<metric>``), named alike for finetuning runs and baselines."""
    from ftscale.finetune.evaluate import evaluate_model

    ev = evaluate_model(
        model,
        tokenizer,
        sets.test,
        sets.refs,
        sets.tgt_lang,
        generation=bool(evaluation.get("generation", True)),
        max_eval_examples=evaluation.get("max_eval_examples"),
        zero_shot=sets.zero_shot or None,
        few_shot=sets.few_shot or None,
        max_new_tokens=evaluation.get("max_new_tokens", 64),
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
    evaluation = params["evaluation"]
    sets = _eval_sets(data, tokenizer, spec_task, evaluation, seed=0)
    dev, _ = _encode(data.task, data.dev[:DEV_EXAMPLES], tokenizer, spec_task)
    started = time.perf_counter()
    metrics = _evaluate(model, tokenizer, sets, evaluation)
    metrics.update(
        {
            # the dev loss of the base model: the finetuning curves' starting point at zero finetuning examples
            "dev_loss": target_loss(model, dev).loss,
            "eval_seconds": time.perf_counter() - started,
            "trainable_params": 0,
            "total_params": sum(p.numel() for p in model.parameters()),
            "base_non_embedding_params": model_parameter_counts(model).non_embedding,
        }
    )
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


def job_method_params(params: Mapping[str, Any]) -> MethodParams:
    """A finetuning job's method and hyperparameters, typed again (a job's params travel as JSON)."""
    return method_params(params["method"], params["method_config"])


def prepare_finetune(ctx: JobContext) -> FinetuneSetup:
    """Load the base checkpoint of a finetuning job and set up its run (model, data subset, config)."""
    from ftscale.data.subsets import subset
    from ftscale.finetune.methods import prepare_model
    from ftscale.finetune.train import FinetuneConfig

    params = ctx.params
    spec_task = params["task"]
    data = task_data(spec_task)
    task = data.task
    model, tokenizer = _load_base(ctx)

    seed = params["seed"]
    train_examples = subset(data.train, params["ft_examples"], seed=seed)
    train, _ = _encode(task, train_examples, tokenizer, spec_task)
    dev, _ = _encode(task, data.dev[:DEV_EXAMPLES], tokenizer, spec_task)

    method_params = job_method_params(params)
    config = FinetuneConfig.from_params(
        method_params, device=ctx.device if ctx.device in ("cpu", "cuda", "auto") else "auto", seed=seed
    )
    method_config = config.method
    model, info = prepare_model(model, method_config, seed=seed)
    return FinetuneSetup(model, info, tokenizer, data, train, dev, config)


def _finetune_job(ctx: JobContext) -> Mapping[str, Any]:
    from ftscale.finetune.methods import merged_lora
    from ftscale.finetune.train import finetune

    setup = prepare_finetune(ctx)
    model, info, tokenizer, train = setup.model, setup.info, setup.tokenizer, setup.train
    params = ctx.params
    evaluation = params["evaluation"]
    sets = _eval_sets(setup.data, tokenizer, params["task"], evaluation, seed=params["seed"])
    started = time.perf_counter()
    result = finetune(model, train, setup.dev, setup.config, progress=False)
    train_seconds = time.perf_counter() - started
    if result.status != "done":
        raise FinalFailure(result.status)  # "failed: diverged at step N": a retry would diverge again

    with merged_lora(model):
        scores = _evaluate(model, tokenizer, sets, evaluation)
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
        "n_train_examples": len(train),
        **scores,
    }
    return metrics
