"""Multi30k (Elliott et al. 2016): En/De/Fr/Cs captions, train / val / test_2016_flickr, zero-shot Fr/Cs→De."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ftscale.data.datasets.common import dataset_dir, documents_from_lines
from ftscale.data.sources import (
    LoadReport,
    find_parallel_file,
    load_parallel_text,
)
from ftscale.data.tasks import Task, TaskData
from ftscale.data.types import Example
from ftscale.errors import UserError

MULTI30K_LANGUAGES = ("en", "de", "fr", "cs")


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
    directory = dataset_dir(data_dir, "multi30k")
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
            src: lambda: documents_from_lines(train_src, seed),
            tgt: lambda: documents_from_lines(train_tgt, seed + 1),
        },
        reports=reports,
    )
