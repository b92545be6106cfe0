"""Klexikon (Aumiller & Gertz 2022): German Wikipedia → children's encyclopedia summaries, authors' splits."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from ftscale.data.datasets.common import dataset_dir, split_sentences
from ftscale.data.sources import (
    LoadReport,
    _open_bytes,
)
from ftscale.data.tasks import Task, TaskData
from ftscale.data.types import Example
from ftscale.errors import DataError, UserError

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
    path = dataset_dir(data_dir, "klexikon_de") / "klexikon.jsonl.gz"
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
