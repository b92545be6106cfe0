"""What a study's task reads: its splits, loaded once per process from the spec's ``task`` mapping, and the
pretraining corpus of its base family (the task's own text or the shared multilingual corpus) with its mix.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ftscale.errors import UserError


@functools.lru_cache(maxsize=4)
def _task_data_cached(task_json: str):
    from ftscale.data.datasets import load_task

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


def interleave(streams: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """Round-robin over several document streams, so a language mix is mixed from the first batch on."""
    iterators = {name: iter(docs) for name, docs in streams.items()}
    while iterators:
        for name in list(iterators):
            doc = next(iterators[name], None)
            if doc is None:
                del iterators[name]
            else:
                yield name, doc


def balanced(streams: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
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


def shared_family_corpus(task: Mapping[str, Any]) -> dict[str, Any]:
    """What the shared corpus of a task's base family is made of: its languages (the task's and English) and the
    data directory. Two tasks with the same languages share one family (``small`` and ``small-sum``)."""
    from ftscale.data.datasets.registry import task_languages

    return {"langs": sorted(set(task_languages(task["name"])) | {"en"}), "data_dir": task.get("data_dir")}


def shared_streams(corpus: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``("<lang>/<source>", document)`` pairs of the shared corpus described by :func:`shared_family_corpus`,
    every stream mixed evenly by characters."""
    from ftscale.data.datasets import pretraining_corpus

    langs = corpus["langs"]
    shared = pretraining_corpus(corpus.get("data_dir"), langs=langs, seed=0)
    return balanced(
        {f"{lang}/{name}": docs for lang in langs for name, docs in shared.by_source[lang].items()}
    )


def pretraining_streams(task: Mapping[str, Any], corpus: str | None) -> Iterator[tuple[str, str]]:
    """``(stream, document)`` pairs in the order the base family reads them; the stream is ``"<lang>/<source>"``
    for the shared corpus and the language for the task's own text (see ``pretraining_texts``)."""
    if corpus == "shared":
        return shared_streams(shared_family_corpus(task))
    data = task_data(task)
    if not data.pretraining_text:
        raise UserError(
            f"task {task['name']!r} has no pretraining text of its own; set family.pretrain.corpus: shared"
        )
    return interleave({lang: make() for lang, make in data.pretraining_text.items()})


def pretraining_texts(task: Mapping[str, Any], corpus: str | None) -> Iterator[str]:
    """Monolingual documents for the base family: the task's own pretraining text (both languages mixed), or
    ``corpus="shared"`` for the multilingual corpus built from the real data's training splits: the task's
    languages and English, every (language, source) stream mixed evenly by characters, so that in-domain
    sentence data is not drowned by Wikipedia articles and a language's smaller source runs out first."""
    return (doc for _, doc in pretraining_streams(task, corpus))


def pretraining_mix(
    task: Mapping[str, Any], corpus: str | None, tokenizer: Any, total_tokens: int, seq_len: int
) -> list[dict[str, Any]]:
    """What a pretraining run of ``total_tokens`` reads, per stream: documents, characters and tokens (with EOS) of
    the text it trains on, the stream's whole text in tokens (``available_tokens``) and the ``epochs`` the run
    makes over it.

    Pretraining tokenises the stream in batches of 512 documents until it holds the tokens it needs, then trains
    on a seeded sample of that head's packed rows, so the shares below are the expected shares of the training
    tokens (``read_tokens`` may exceed ``total_tokens`` by up to one batch of documents). When the whole corpus
    holds fewer tokens than the run needs, every row is repeated ``needed / read`` times (``allow_repeat``): that
    is each stream's epochs; otherwise a stream's epochs are the part of its text in the head (at most 1)."""
    needed = (total_tokens // seq_len) * seq_len + 1
    rows: dict[str, dict[str, Any]] = {}
    read = 0
    in_head = True
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal read
        for (name, doc), n in zip(batch, _token_lengths(tokenizer, [d for _, d in batch]), strict=True):
            row = rows.setdefault(
                name,
                {"stream": name, "documents": 0, "characters": 0, "tokens": 0, "available_tokens": 0},
            )
            row["available_tokens"] += n
            if in_head:
                row["documents"] += 1
                row["characters"] += len(doc)
                row["tokens"] += n
                read += n
        batch.clear()

    for item in pretraining_streams(task, corpus):  # the whole corpus: a stream's epochs need its full size
        batch.append(item)
        if len(batch) == 512:
            flush()
            in_head = in_head and read < needed
    if batch:
        flush()
    repeat = max(1.0, needed / read) if read else 0.0
    for row in rows.values():
        row["share"] = row["tokens"] / read if read else 0.0
        row["epochs"] = row["tokens"] * repeat / row["available_tokens"] if row["available_tokens"] else 0.0
    return sorted(rows.values(), key=lambda row: row["stream"])


def _token_lengths(tokenizer: Any, docs: list[str]) -> list[int]:
    return [len(ids) + 1 for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]]


def validation_texts(task: Mapping[str, Any]) -> list[str]:
    """Held-out text for the pretraining validation loss: dev-split sources and targets (never trained on)."""
    data = task_data(task)
    return [text for example in data.dev for text in (example.source, example.target)]
