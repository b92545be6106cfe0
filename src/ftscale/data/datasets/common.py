"""Where the data sets live and the helpers every data set shares: the data root, shuffling, sentences."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftscale.errors import DataError

DATA_DIR_ENV = "FTSCALE_DATA_DIR"


DEFAULT_DATA_DIR = Path("..") / "shared" / "data"


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


def dataset_dir(data_dir: Path | str | None, name: str) -> Path:
    root = resolve_data_dir(data_dir)
    path = root / name
    if not path.is_dir():
        raise DataError(f"{path}: data set folder not found; the data directory {root} must contain {name}/")
    return path


def seeded_shuffle(items: Sequence[Any], seed: int) -> list[Any]:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


def documents_from_lines(lines: Sequence[str], seed: int, lines_per_document: int = 32) -> list[str]:
    """Shuffle single sentences (breaking any pairing with another language) and group them into documents."""
    lines = seeded_shuffle([line for line in lines if line.strip()], seed)
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
