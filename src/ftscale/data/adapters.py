"""Ready-made tasks on the real data sets (Multi30k, Tatoeba En-Zh, Klexikon, CSL), the synthetic corpus,
the monolingual pretraining corpus, and the ``load_task(name)`` registry.

The data root is the ``data_dir`` argument, else ``$FTSCALE_DATA_DIR``, else ``../shared/data`` relative to the
current directory. Every split is deterministic: the same arguments give the same examples in the same order.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftscale.data.sources import (
    LoadReport,
    _open_bytes,
    check_language,
    find_parallel_file,
    load_hf_dataset,
    load_parallel_text,
    load_tsv,
    read_lines,
)
from ftscale.data.tasks import Task, TaskData, mix_task_data
from ftscale.data.types import Example
from ftscale.errors import DataError, UserError

DATA_DIR_ENV = "FTSCALE_DATA_DIR"
DEFAULT_DATA_DIR = Path("..") / "shared" / "data"
MULTI30K_LANGUAGES = ("en", "de", "fr", "cs")


def resolve_data_dir(data_dir: Path | str | None = None) -> Path:
    """``data_dir`` if given, else ``$FTSCALE_DATA_DIR``, else ``../shared/data``; it must exist."""
    if data_dir is not None:
        path, origin = Path(data_dir), "data_dir"
    elif os.environ.get(DATA_DIR_ENV):
        path, origin = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        path, origin = DEFAULT_DATA_DIR, "the default ../shared/data"
    if not path.is_dir():
        raise DataError(
            f"{path}: data directory not found (from {origin}); pass data_dir or set ${DATA_DIR_ENV} "
            f"to the folder holding multi30k/, tatoeba_eng_cmn/, klexikon_de/, csl_title_zh/"
        )
    return path


def _dataset_dir(data_dir: Path | str | None, name: str) -> Path:
    root = resolve_data_dir(data_dir)
    path = root / name
    if not path.is_dir():
        raise DataError(f"{path}: data set folder not found; the data directory {root} must contain {name}/")
    return path


def _shuffled(items: Sequence[Any], seed: int) -> list[Any]:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


def _documents_from_lines(lines: Sequence[str], seed: int, lines_per_document: int = 32) -> list[str]:
    """Shuffle single sentences (breaking any pairing with another language) and group them into documents."""
    lines = _shuffled([line for line in lines if line.strip()], seed)
    return ["\n".join(lines[i : i + lines_per_document]) for i in range(0, len(lines), lines_per_document)]


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[\"'„“»(\[]?[A-ZÄÖÜÀ-Ý0-9])|(?<=[。！？])")


def split_sentences(text: str, limit: int | None = None) -> list[str]:
    """Split text into sentences: at line breaks (Klexikon is one sentence per line), and within a line at
    ``. ! ? …`` followed by whitespace and a capital/digit, or after ``。！？``. Simple by design: abbreviations
    followed by a capital ("Dr. Meier") are split too. ``limit`` stops after that many sentences (fast on long
    articles).
    """
    sentences: list[str] = []
    start = 0
    while start < len(text) and (limit is None or len(sentences) < limit):
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
        line = text[start:end].strip()
        start = end + 1
        if line:
            sentences.extend(part.strip() for part in _SENTENCE_END.split(line) if part.strip())
    return sentences if limit is None else sentences[:limit]


# --------------------------------------------------------------------------------------------------------------
# Multi30k


def _multi30k_split(directory: Path, split: str, src: str, tgt: str) -> tuple[list[Example], LoadReport]:
    return load_parallel_text(
        find_parallel_file(directory, split, src),
        find_parallel_file(directory, split, tgt),
        src,
        tgt,
        id_prefix=f"multi30k-{split}",
    )


def multi30k_task(
    data_dir: Path | str | None = None,
    src: str = "en",
    tgt: str = "de",
    test_split: str = "test_2016_flickr",
    zero_shot_sources: Sequence[str] = ("fr", "cs"),
    template: str = "",
    separator: str = "",
    seed: int = 0,
) -> TaskData:
    """Multi30k translation: train / val / ``test_split``; zero-shot test sets translate the other
    ``zero_shot_sources`` into ``tgt`` (key ``"fr-de"``). Pretraining text: each side of train, shuffled."""
    directory = _dataset_dir(data_dir, "multi30k")
    for lang, role in ((src, "src"), (tgt, "tgt")):
        if lang not in MULTI30K_LANGUAGES:
            raise UserError(f"multi30k: {role}={lang!r} is not one of {MULTI30K_LANGUAGES}")
    train, train_report = _multi30k_split(directory, "train", src, tgt)
    dev, dev_report = _multi30k_split(directory, "val", src, tgt)
    test, test_report = _multi30k_split(directory, test_split, src, tgt)
    reports = [train_report, dev_report, test_report]
    zero_shot = {}
    for other in zero_shot_sources:
        if other in (src, tgt):
            continue
        examples, report = _multi30k_split(directory, test_split, other, tgt)
        zero_shot[f"{other}-{tgt}"] = examples
        reports.append(report)
    train_src = [e.source for e in train]
    train_tgt = [e.target for e in train]
    return TaskData(
        task=Task(f"multi30k-{src}-{tgt}", "translation", (src, tgt), template, separator),
        train=train,
        dev=dev,
        test=test,
        zero_shot=zero_shot,
        pretraining_text={
            src: lambda: _documents_from_lines(train_src, seed),
            tgt: lambda: _documents_from_lines(train_tgt, seed + 1),
        },
        reports=reports,
    )


# --------------------------------------------------------------------------------------------------------------
# Tatoeba En-Zh


def _read_tatoeba(path: Path) -> tuple[list[Example], LoadReport]:
    lines, n_trailing = read_lines(path)
    report = LoadReport(source=str(path), n_rows=len(lines), n_trailing_blank_lines=n_trailing)
    examples = []
    for line_number, line in enumerate(lines, start=1):
        cells = line.split("\t")
        if len(cells) < 2:
            raise DataError(
                f"{path}:{line_number}: expected 'English<TAB>Chinese<TAB>attribution', got {len(cells)} column(s)"
            )
        english, chinese = cells[0].strip(), cells[1].strip()
        if not english or not chinese:
            raise DataError(
                f"{path}:{line_number}: empty {'source' if not english else 'target'}; fix the line"
            )
        attribution = cells[2].strip() if len(cells) > 2 else ""
        examples.append(
            Example(
                english, chinese, "en", "zh", id=f"tatoeba:{line_number}", meta={"attribution": attribution}
            )
        )
    report.n_loaded = len(examples)
    return examples, report


def _split_tatoeba(examples: list[Example], seed: int, n_dev: int, n_test: int) -> tuple[list[Example], ...]:
    """Random split by English sentence: pairs sharing an English sentence stay in one split (no test leakage).
    The file is sorted by length, so the groups are shuffled first."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.source, []).append(example)
    if n_dev + n_test >= len(groups):
        raise DataError(
            f"tatoeba: n_dev + n_test = {n_dev + n_test} leaves no training data ({len(groups)} English sentences)"
        )
    order = _shuffled(list(groups), seed)
    test: list[Example] = []
    dev: list[Example] = []
    train: list[Example] = []
    for english in order:
        bucket = test if len(test) < n_test else dev if len(dev) < n_dev else train
        bucket.extend(groups[english])
    return train, dev, test


def tatoeba_task(
    data_dir: Path | str | None = None,
    seed: int = 0,
    n_dev: int = 1000,
    n_test: int = 1000,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """Tatoeba En→Zh (``cmn.txt.gz``), shuffled with ``seed`` and split into train / dev / test by English
    sentence (about ``n_dev`` / ``n_test`` pairs)."""
    path = _dataset_dir(data_dir, "tatoeba_eng_cmn") / "cmn.txt.gz"
    examples, report = _read_tatoeba(path)
    train, dev, test = _split_tatoeba(examples, seed, n_dev, n_test)
    report.notes.append(f"split by English sentence with seed {seed}: {len(train)}/{len(dev)}/{len(test)}")
    train_en = [e.source for e in train]
    train_zh = [e.target for e in train]
    return TaskData(
        task=Task("tatoeba-en-zh", "translation", ("en", "zh"), template, separator),
        train=train,
        dev=dev,
        test=test,
        pretraining_text={
            "en": lambda: _documents_from_lines(train_en, seed),
            "zh": lambda: _documents_from_lines(train_zh, seed + 1),
        },
        reports=[report],
    )


# --------------------------------------------------------------------------------------------------------------
# Klexikon (German summarisation)

KLEXIKON_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def _klexikon_articles(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream ``(line, article)`` from ``klexikon.jsonl.gz``, validating each row."""
    _open_bytes(path)  # existence and readability, with a DataError
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_number}: invalid JSON ({exc.msg})") from None
                missing = [key for key in ("title", "split", "wiki", "klexikon") if key not in row]
                if missing:
                    raise DataError(
                        f"{path}:{line_number}: missing field(s) {missing}; see klexikon_de/README.md"
                    )
                if row["split"] not in KLEXIKON_SPLITS.values():
                    raise DataError(f"{path}:{line_number}: unknown split {row['split']!r}")
                yield line_number, row
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-download the file") from None


def klexikon_task(
    data_dir: Path | str | None = None,
    k_wiki_sentences: int = 2,
    n_summary_sentences: int = 1,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """German summarisation pairs: the first ``k_wiki_sentences`` of each Wikipedia article → the first
    ``n_summary_sentences`` of its Klexikon article (the lead is usually a one-line definition). Splits are the
    authors' train / validation / test. Pretraining text: the Wikipedia side of the train articles only."""
    if k_wiki_sentences < 1 or n_summary_sentences < 1:
        raise UserError("klexikon: k_wiki_sentences and n_summary_sentences must be >= 1")
    path = _dataset_dir(data_dir, "klexikon_de") / "klexikon.jsonl.gz"
    splits: dict[str, list[Example]] = {name: [] for name in KLEXIKON_SPLITS.values()}
    report = LoadReport(source=str(path))
    for line_number, row in _klexikon_articles(path):
        report.n_rows += 1
        wiki = split_sentences(row["wiki"], limit=k_wiki_sentences)
        summary = split_sentences(row["klexikon"], limit=n_summary_sentences)
        if not wiki or not summary:
            report.n_skipped_empty += 1
            continue
        splits[row["split"]].append(
            Example(
                " ".join(wiki),
                " ".join(summary),
                "de",
                "de",
                id=f"klexikon:{line_number}",
                meta={"title": row["title"]},
            )
        )
    report.n_loaded = sum(len(v) for v in splits.values())
    report.notes.append(
        f"first {k_wiki_sentences} wiki sentence(s) -> first {n_summary_sentences} Klexikon sentence(s)"
    )
    return TaskData(
        task=Task("klexikon-de", "summarization", ("de",), template, separator),
        train=splits["train"],
        dev=splits["validation"],
        test=splits["test"],
        pretraining_text={"de": lambda: klexikon_wiki_documents(path, splits=("train",))},
        reports=[report],
    )


def klexikon_wiki_documents(path: Path, splits: Sequence[str] = ("train",)) -> Iterator[str]:
    """Wikipedia articles of the given Klexikon splits (validation/test held out by default), one per item."""
    for _, row in _klexikon_articles(path):
        if row["split"] in splits:
            text = "\n".join(line for line in row["wiki"].splitlines() if line.strip())
            if text:
                yield text


# --------------------------------------------------------------------------------------------------------------
# CSL (Chinese abstract -> title)


def csl_task(
    data_dir: Path | str | None = None,
    seed: int = 0,
    n_dev: int = 100,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """Chinese summarisation as abstract → title. Only CSL's dev and test files exist here, so ``ts_dev`` is the
    training pool (minus ``n_dev`` examples held out as dev, chosen with ``seed``) and ``ts_test`` the test set."""
    directory = _dataset_dir(data_dir, "csl_title_zh")
    pool, pool_report = load_tsv(directory / "ts_dev.tsv.gz", 1, 2, "zh", "zh", id_prefix="csl-ts_dev")
    test, test_report = load_tsv(directory / "ts_test.tsv.gz", 1, 2, "zh", "zh", id_prefix="csl-ts_test")
    if not 0 < n_dev < len(pool):
        raise UserError(f"csl: n_dev must be between 1 and {len(pool) - 1}, got {n_dev}")
    shuffled = _shuffled(pool, seed)
    dev, train = shuffled[:n_dev], shuffled[n_dev:]
    pool_report.notes.append(f"{len(train)} train / {len(dev)} dev (seed {seed})")
    train_texts = [text for e in train for text in (e.source, e.target)]
    return TaskData(
        task=Task("csl-zh", "summarization", ("zh",), template, separator),
        train=train,
        dev=dev,
        test=test,
        pretraining_text={"zh": lambda: _documents_from_lines(train_texts, seed, lines_per_document=8)},
        reports=[pool_report, test_report],
    )


def sum_de_zh_task(
    data_dir: Path | str | None = None,
    seed: int = 0,
    k_wiki_sentences: int = 2,
    n_summary_sentences: int = 1,
    n_dev_zh: int = 100,
    ratios: dict[str, float] | None = None,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """Multilingual summarisation, Klexikon (De) + CSL (Zh) concatenated like the paper's MLSum mix; subsets
    keep the pool's De:Zh ratio, or ``ratios`` (e.g. ``{"de": 1, "zh": 1}``) fixes it."""
    german = klexikon_task(data_dir, k_wiki_sentences, n_summary_sentences, template, separator)
    chinese = csl_task(data_dir, seed, n_dev_zh, template, separator)
    return mix_task_data("sum-de-zh", [german, chinese], languages=("de", "zh"), ratios=ratios, seed=seed)


# --------------------------------------------------------------------------------------------------------------
# Synthetic corpus


def synthetic_task(
    kind: str = "translation",
    src: str = "en",
    tgt: str = "de",
    n_train: int = 4000,
    n_dev: int = 200,
    n_test: int = 500,
    config: Any | None = None,
    seed: int = 0,
    pretraining_tokens: int = 2_000_000,
    zero_shot_sources: Sequence[str] = ("fr",),
    template: str = "",
    separator: str = "",
) -> TaskData:
    """A task on the embedded synthetic corpus (no files needed). ``config`` is a ``SyntheticConfig``; without
    one, ``SyntheticConfig(seed=seed)``. For summarisation, ``tgt`` is the language. Translation gets zero-shot
    test sets from each of ``zero_shot_sources`` into ``tgt`` (the corpus is multi-way parallel, so they share
    the test set's targets). Pretraining text per language: ``pretraining_tokens`` whitespace tokens of train
    documents."""
    from ftscale.data.synthetic import LANGUAGES, SyntheticConfig, SyntheticCorpus

    if kind not in ("translation", "summarization"):
        raise UserError(f"synthetic_task: kind must be 'translation' or 'summarization', got {kind!r}")
    if isinstance(config, dict):  # from a study file: the generator's knobs as a mapping
        try:
            config = SyntheticConfig(**{"seed": seed, **config})
        except TypeError as exc:
            raise UserError(
                f"synthetic_task: bad corpus option in config ({exc}); see SyntheticConfig"
            ) from None
    corpus = SyntheticCorpus(config if config is not None else SyntheticConfig(seed=seed))
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    splits: dict[str, list[Example]] = {}
    for split, n in sizes.items():
        if n < 1:
            raise UserError(f"synthetic_task: n_{split} must be >= 1, got {n}")
        if kind == "translation":
            pairs = corpus.sentence_pairs(src, tgt, n, split=split)
            source_lang = src
        else:
            pairs = corpus.summary_pairs(tgt, n, split=split)
            source_lang = tgt
        splits[split] = [
            Example(source, target, source_lang, tgt, id=f"synthetic-{split}:{i}")
            for i, (source, target) in enumerate(pairs)
        ]
    zero_shot: dict[str, list[Example]] = {}
    if kind == "translation":
        for other in zero_shot_sources:
            if other in (src, tgt) or other not in LANGUAGES:
                continue
            pairs = corpus.sentence_pairs(other, tgt, n_test, split="test")
            zero_shot[f"{other}-{tgt}"] = [
                Example(source, target, other, tgt, id=f"synthetic-test-{other}:{i}")
                for i, (source, target) in enumerate(pairs)
            ]
    langs = (src, tgt) if kind == "translation" else (tgt,)
    pretraining_langs = tuple(dict.fromkeys((src, tgt)))
    name = f"synthetic-{src}-{tgt}" if kind == "translation" else f"synthetic-sum-{tgt}"

    def text_for(lang: str) -> Callable[[], Iterable[str]]:
        return lambda: corpus.pretraining_text(langs=(lang,), n_tokens=pretraining_tokens, split="train")

    return TaskData(
        task=Task(name, kind, langs, template, separator),  # type: ignore[arg-type]
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        zero_shot=zero_shot,
        pretraining_text={lang: text_for(lang) for lang in pretraining_langs},
    )


# --------------------------------------------------------------------------------------------------------------
# Monolingual pretraining corpus for the base model family


@dataclass
class PretrainingCorpus:
    """Monolingual documents per language (shuffled, held-out splits excluded) and where they came from."""

    documents: dict[str, list[str]]
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    # the same documents by language and source ("de" -> {"klexikon-wiki": [...], "multi30k": [...]}), each list
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

    German: Klexikon Wikipedia side (train articles; validation/test held out) + Multi30k train German side.
    English: Multi30k train + Tatoeba train English sides. Chinese: Tatoeba train Chinese side + CSL train
    abstracts and titles. Sides of parallel data are shuffled separately, so no translation pair stays aligned.
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
        klexikon_path = _dataset_dir(data_dir, "klexikon_de") / "klexikon.jsonl.gz"
        per_source["de"]["klexikon-wiki"] = list(klexikon_wiki_documents(klexikon_path, ("train",)))
    if "zh" in langs:
        csl = csl_task(data_dir, **{"seed": seed, **options.get("csl-zh", {})})
        per_source["zh"]["csl"] = list(csl.pretraining_text["zh"]())
    documents: dict[str, list[str]] = {}
    sources: dict[str, dict[str, int]] = {}
    by_source: dict[str, dict[str, list[str]]] = {}
    for lang in langs:
        tagged = [(name, doc) for name, docs in per_source[lang].items() for doc in docs]
        tagged = _shuffled(tagged, seed + 7)
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


# --------------------------------------------------------------------------------------------------------------
# Registry


def _synthetic_translation(name: str) -> Callable[..., TaskData] | None:
    match = re.fullmatch(r"synthetic-([a-z]{2})-([a-z]{2})", name)
    if not match:
        return None
    src, tgt = match.groups()
    return lambda data_dir=None, **kw: synthetic_task("translation", src, tgt, **kw)


def _synthetic_summarization(name: str) -> Callable[..., TaskData] | None:
    match = re.fullmatch(r"synthetic-sum-([a-z]{2})", name)
    if not match:
        return None
    lang = match.group(1)
    return lambda data_dir=None, **kw: synthetic_task("summarization", lang, lang, **kw)


def _multi30k(name: str) -> Callable[..., TaskData] | None:
    match = re.fullmatch(r"multi30k-([a-z]{2})-([a-z]{2})", name)
    if not match or not set(match.groups()) <= set(MULTI30K_LANGUAGES) or match.group(1) == match.group(2):
        return None
    src, tgt = match.groups()
    return lambda data_dir=None, **kw: multi30k_task(data_dir, src, tgt, **kw)


# The paper's translation sets on the Hugging Face hub: (dataset id, config, dev split, test split).
WMT_SETS = {
    "wmt14-en-de": ("wmt/wmt14", "de-en", "validation", "test"),
    "wmt19-en-zh": ("wmt/wmt19", "zh-en", "validation", "validation"),
}


def wmt_task(
    data_dir: Path | str | None = None,
    src: str = "en",
    tgt: str = "de",
    dataset: str | None = None,
    n_train: int | None = None,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """WMT translation (the paper's WMT14 En-De / WMT19 En-Zh) through Hugging Face ``datasets``: a hub id, or
    ``dataset`` = a local copy (``save_to_disk`` folder or data file) for machines without network. ``n_train``
    keeps the first N training pairs (the full sets hold millions)."""
    set_name = f"wmt{'14' if tgt == 'de' else '19'}-{src}-{tgt}"
    if set_name not in WMT_SETS:
        raise UserError(f"wmt: no WMT set for {src}->{tgt}; available: {sorted(WMT_SETS)}")
    hub_id, config, dev_split, test_split = WMT_SETS[set_name]
    source = dataset or hub_id
    fields = {"source_field": f"translation.{src}", "target_field": f"translation.{tgt}"}
    train, r1 = load_hf_dataset(
        source, "train", src_lang=src, tgt_lang=tgt, config_name=config, max_rows=n_train, **fields
    )
    dev, r2 = load_hf_dataset(source, dev_split, src_lang=src, tgt_lang=tgt, config_name=config, **fields)
    test, r3 = load_hf_dataset(source, test_split, src_lang=src, tgt_lang=tgt, config_name=config, **fields)
    return TaskData(
        task=Task(f"wmt-{src}-{tgt}", "translation", (src, tgt), template, separator),
        train=train,
        dev=dev,
        test=test,
        pretraining_text={
            src: lambda: _documents_from_lines([e.source for e in train], 0),
            tgt: lambda: _documents_from_lines([e.target for e in train], 1),
        },
        reports=[r1, r2, r3],
    )


def _wmt(name: str) -> Callable[..., TaskData] | None:
    if name not in WMT_SETS:
        return None
    src, tgt = name.split("-")[1:]
    return lambda data_dir=None, **kw: wmt_task(data_dir, src, tgt, **kw)


TASKS: dict[str, Callable[..., TaskData]] = {
    "tatoeba-en-zh": tatoeba_task,
    "klexikon-de": klexikon_task,
    "csl-zh": csl_task,
    "sum-de-zh": sum_de_zh_task,
}
# Families of names, with the function that takes their keyword arguments (for error messages).
TASK_PATTERNS: dict[str, tuple[Callable[[str], Callable[..., TaskData] | None], Callable[..., TaskData]]] = {
    "synthetic-<src>-<tgt> (e.g. synthetic-en-de)": (_synthetic_translation, synthetic_task),
    "synthetic-sum-<lang> (e.g. synthetic-sum-de)": (_synthetic_summarization, synthetic_task),
    "multi30k-<src>-<tgt> (en, de, fr, cs; e.g. multi30k-en-de)": (_multi30k, multi30k_task),
    "wmt14-en-de, wmt19-en-zh (Hugging Face datasets; option dataset= for a local copy)": (_wmt, wmt_task),
}


def task_names() -> list[str]:
    """Valid task names and name patterns, for help texts and error messages."""
    return [*TASKS, *TASK_PATTERNS]


def known_task(name: str) -> bool:
    """Whether ``name`` names a task of the registry (without loading anything)."""
    return name in TASKS or any(matcher(name) is not None for matcher, _ in TASK_PATTERNS.values())


def _resolve(name: str) -> tuple[Callable[..., TaskData], Callable[..., TaskData]] | None:
    """(factory, function whose signature lists the options) of a registered task name, or None."""
    if name in TASKS:
        return TASKS[name], TASKS[name]
    for matcher, function in TASK_PATTERNS.values():
        factory = matcher(name)
        if factory is not None:
            return factory, function
    return None


def task_options(name: str) -> list[str] | None:
    """The option keys a task accepts (``task.options`` of a study file), sorted; None for an unknown name.

    The name fixes the data directory, the languages and (synthetic tasks) the kind, so those are not options.
    """
    resolved = _resolve(name)
    if resolved is None:
        return None
    function = resolved[1]
    fixed = {"data_dir", "kind", "src", "tgt"} if function is synthetic_task else {"data_dir", "src", "tgt"}
    return sorted(set(inspect.signature(function).parameters) - fixed)


def load_task(name: str, data_dir: Path | str | None = None, **kwargs: Any) -> TaskData:
    """Build a task by name, e.g. ``load_task("multi30k-en-de")`` or ``load_task("synthetic-en-de", n_train=2000)``.

    ``kwargs`` go to the task's function (see :func:`multi30k_task`, :func:`synthetic_task`, ...).
    """
    resolved = _resolve(name)
    if resolved is None:
        raise UserError(f"unknown task {name!r}; valid names: {', '.join(task_names())}")
    factory = resolved[0]
    allowed = task_options(name) or []
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UserError(f"task {name!r}: unknown option(s) {unknown}; allowed: {allowed}")
    return factory(data_dir=data_dir, **kwargs)
