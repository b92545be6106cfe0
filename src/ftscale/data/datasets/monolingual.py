"""Monolingual pretraining text that belongs to no task: English and Chinese Wikipedia and German novels (ELTeC).

Each folder holds gzipped JSONL, one article or novel per line with its body in ``text``, one paragraph per line
(see the folder's README). Documents are cut at paragraph boundaries into pieces of about
:data:`DOCUMENT_CHARS` characters, so that one novel (up to 1.7M characters) or one long article does not fill the
head of the mix that a pretraining run reads; the corpus shuffles the pieces.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from ftscale.data.datasets.common import dataset_dir
from ftscale.errors import DataError

# (language, source) -> data set folder; the source names are the stream names of the pretraining mix
MONOLINGUAL_SOURCES = {
    ("en", "wikipedia"): "wikipedia_en",
    ("zh", "wikipedia"): "wikipedia_zh",
    ("de", "eltec"): "eltec_de",
}
DOCUMENT_CHARS = 4000


def paragraph_pieces(text: str, max_chars: int = DOCUMENT_CHARS) -> Iterator[str]:
    """Consecutive non-empty paragraphs (lines) of ``text`` joined into pieces of at most ``max_chars``
    characters; a paragraph longer than that is a piece of its own."""
    piece: list[str] = []
    size = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if piece and size + len(line) + 1 > max_chars:
            yield "\n".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += len(line) + 1
    if piece:
        yield "\n".join(piece)


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, json.loads(line)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read gzipped JSONL ({exc}); restore the file from its source"
        ) from exc


def monolingual_documents(
    data_dir: Path | str | None, lang: str, source: str, max_chars: int = DOCUMENT_CHARS
) -> list[str]:
    """The pieces of every article or novel of a monolingual source, in file order (shards sorted by name)."""
    folder = dataset_dir(data_dir, MONOLINGUAL_SOURCES[(lang, source)])
    shards = sorted(folder.glob("*.jsonl.gz"))
    if not shards:
        raise DataError(f"{folder}: no *.jsonl.gz file; the folder's README names the files it should hold")
    documents: list[str] = []
    for shard in shards:
        for number, row in _rows(shard):
            text = row.get("text")
            if not isinstance(text, str):
                raise DataError(
                    f"{shard}:{number}: no 'text' string; each line must be an object with 'text'"
                )
            documents.extend(paragraph_pieces(text, max_chars))
    return documents
