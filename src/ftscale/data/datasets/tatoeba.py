"""Tatoeba En-Zh: shuffled sentence pairs split by English sentence, so that no test sentence is trained on."""

from __future__ import annotations

from pathlib import Path

from ftscale.data.datasets.common import dataset_dir, documents_from_lines, seeded_shuffle
from ftscale.data.sources import (
    LoadReport,
    read_lines,
)
from ftscale.data.tasks import Task, TaskData
from ftscale.data.types import Example
from ftscale.errors import DataError


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
    order = seeded_shuffle(list(groups), seed)
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
    path = dataset_dir(data_dir, "tatoeba_eng_cmn") / "cmn.txt.gz"
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
            "en": lambda: documents_from_lines(train_en, seed),
            "zh": lambda: documents_from_lines(train_zh, seed + 1),
        },
        reports=[report],
    )
