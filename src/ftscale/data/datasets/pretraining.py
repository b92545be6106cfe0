"""The real monolingual pretraining corpus of the base family, from the data sets' training splits only."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftscale.data.datasets.common import dataset_dir, seeded_shuffle
from ftscale.data.datasets.csl import csl_task
from ftscale.data.datasets.klexikon import klexikon_task, klexikon_wiki_documents
from ftscale.data.datasets.monolingual import MONOLINGUAL_SOURCES, monolingual_documents
from ftscale.data.datasets.multi30k import multi30k_task
from ftscale.data.datasets.tatoeba import tatoeba_task
from ftscale.data.sources import (
    check_language,
)
from ftscale.errors import UserError

# What ``corpus: shared`` reads; part of a base family's identity (a study's tokenizer job hashes it), so a
# change of sources gives new family ids. 2: English/Chinese Wikipedia and German novels added.
SHARED_CORPUS_VERSION = 2


@dataclass
class PretrainingCorpus:
    """Monolingual documents per language (shuffled, held-out splits excluded) and where they came from."""

    documents: dict[str, list[str]]
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    # the same documents by language and source ("de" -> {"klexikon-wiki": [...], "multi30k": [...], ...}), each list
    # in the order of ``documents``
    by_source: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def texts(self, langs: Iterable[str] | None = None) -> Iterator[str]:
        for lang in langs or self.documents:
            yield from self.documents[lang]

    def char_counts(self) -> dict[str, int]:
        return {lang: sum(len(doc) for doc in docs) for lang, docs in self.documents.items()}

    def token_counts(self, tokenizer: Any) -> dict[str, int]:
        counts = {}
        for lang, docs in self.documents.items():
            ids = tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []
            counts[lang] = sum(len(x) for x in ids)
        return counts

    def summary(self, tokenizer: Any | None = None) -> str:
        chars = self.char_counts()
        tokens = self.token_counts(tokenizer) if tokenizer is not None else {}
        lines = []
        for lang, docs in self.documents.items():
            token_part = f", {tokens[lang]:,} tokens" if lang in tokens else ""
            origin = ", ".join(f"{name} {n}" for name, n in self.sources.get(lang, {}).items())
            lines.append(f"{lang}: {len(docs):,} documents, {chars[lang]:,} chars{token_part} ({origin})")
        return "\n".join(lines)


def pretraining_corpus(
    data_dir: Path | str | None = None,
    langs: Sequence[str] = ("en", "de"),
    seed: int = 0,
    max_chars_per_language: int | None = None,
    task_options: dict[str, dict[str, Any]] | None = None,
) -> PretrainingCorpus:
    """Monolingual text for the base family from the training splits only.

    German: Klexikon Wikipedia side (train articles; validation/test held out) + Multi30k train German side +
    German novels (ELTeC). English: Multi30k train + Tatoeba train English sides + English Wikipedia. Chinese:
    Tatoeba train Chinese side + CSL train abstracts and titles + Chinese Wikipedia. Sides of parallel data are
    shuffled separately, so no translation pair stays aligned. The Wikipedia and novel text (``monolingual``)
    makes the corpus large enough that a base model reading millions of tokens repeats no stream; its
    overlap with the tasks' test sets is a few short stock phrases (the folders' READMEs).
    Documents of a language are shuffled together and cut at ``max_chars_per_language`` if given.
    ``task_options`` (keyed ``"tatoeba-en-zh"``, ``"csl-zh"``) must match the options the finetuning tasks are
    built with, so that their dev/test examples stay out of pretraining.
    """
    options = task_options or {}
    supported = ("en", "de", "zh")
    for lang in langs:
        check_language(lang, "pretraining_corpus(langs)")
        if lang not in supported:
            raise UserError(
                f"pretraining_corpus: no real monolingual text for {lang!r}; supported: {supported}"
            )
    per_source: dict[str, dict[str, list[str]]] = {lang: {} for lang in langs}
    if {"en", "de"} & set(langs):
        multi30k = multi30k_task(data_dir, "en", "de", zero_shot_sources=(), seed=seed)
        for lang in {"en", "de"} & set(langs):
            per_source[lang]["multi30k"] = list(multi30k.pretraining_text[lang]())
    if {"en", "zh"} & set(langs):
        tatoeba = tatoeba_task(data_dir, **{"seed": seed, **options.get("tatoeba-en-zh", {})})
        for lang in {"en", "zh"} & set(langs):
            per_source[lang]["tatoeba"] = list(tatoeba.pretraining_text[lang]())
    if "de" in langs:
        klexikon_path = dataset_dir(data_dir, "klexikon_de") / "klexikon.jsonl.gz"
        per_source["de"]["klexikon-wiki"] = list(klexikon_wiki_documents(klexikon_path, ("train",)))
    if "zh" in langs:
        csl = csl_task(data_dir, **{"seed": seed, **options.get("csl-zh", {})})
        per_source["zh"]["csl"] = list(csl.pretraining_text["zh"]())
    for lang, source in MONOLINGUAL_SOURCES:
        if lang in langs:
            per_source[lang][source] = monolingual_documents(data_dir, lang, source)
    documents: dict[str, list[str]] = {}
    sources: dict[str, dict[str, int]] = {}
    by_source: dict[str, dict[str, list[str]]] = {}
    for lang in langs:
        tagged = [(name, doc) for name, docs in per_source[lang].items() for doc in docs]
        tagged = seeded_shuffle(tagged, seed + 7)
        if max_chars_per_language is not None:
            kept, total = [], 0
            for name, doc in tagged:
                if total >= max_chars_per_language:
                    break
                kept.append((name, doc[: max_chars_per_language - total]))
                total += len(kept[-1][1])
            tagged = kept
        documents[lang] = [doc for _, doc in tagged]
        grouped: dict[str, list[str]] = {}
        for name, doc in tagged:
            grouped.setdefault(name, []).append(doc)
        by_source[lang] = grouped
        sources[lang] = {name: len(docs) for name, docs in grouped.items()}
    return PretrainingCorpus(documents, sources, by_source)


def shared_validation_texts(
    data_dir: Path | str | None,
    langs: Sequence[str],
    seed: int = 0,
    task_options: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Held-out text for the base family of the shared corpus, the same whatever task it is finetuned on: the dev
    splits of the corpus's task sources in ``langs`` (Multi30k val sides, Tatoeba dev sides, the first two
    sentences of Klexikon's validation Wikipedia articles, CSL dev abstracts), never trained on, interleaved so
    that the head a validation loss reads covers every source. ``task_options`` as for
    :func:`pretraining_corpus`."""
    options = task_options or {}
    groups: list[list[str]] = []
    if {"en", "de"} & set(langs):
        multi30k = multi30k_task(data_dir, "en", "de", zero_shot_sources=(), seed=seed)
        groups += [[e.source for e in multi30k.dev]] if "en" in langs else []
        groups += [[e.target for e in multi30k.dev]] if "de" in langs else []
    if {"en", "zh"} & set(langs):
        tatoeba = tatoeba_task(data_dir, **{"seed": seed, **options.get("tatoeba-en-zh", {})})
        groups += [[e.source for e in tatoeba.dev]] if "en" in langs else []
        groups += [[e.target for e in tatoeba.dev]] if "zh" in langs else []
    if "de" in langs:
        groups.append([e.source for e in klexikon_task(data_dir).dev])
    if "zh" in langs:
        groups.append(
            [e.source for e in csl_task(data_dir, **{"seed": seed, **options.get("csl-zh", {})}).dev]
        )
    longest = max((len(g) for g in groups), default=0)
    return [group[i] for i in range(longest) for group in groups if i < len(group)]
