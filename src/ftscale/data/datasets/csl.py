"""CSL (Li et al. 2022): Chinese abstract → title; and the German + Chinese summarisation mix."""

from __future__ import annotations

from pathlib import Path

from ftscale.data.datasets.common import dataset_dir, documents_from_lines, seeded_shuffle
from ftscale.data.datasets.klexikon import klexikon_task
from ftscale.data.sources import (
    load_tsv,
)
from ftscale.data.tasks import Task, TaskData, mix_task_data
from ftscale.errors import UserError


def csl_task(
    data_dir: Path | str | None = None,
    seed: int = 0,
    n_dev: int = 100,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """Chinese summarisation as abstract → title. Only CSL's dev and test files exist here, so ``ts_dev`` is the
    training pool (minus ``n_dev`` examples held out as dev, chosen with ``seed``) and ``ts_test`` the test set."""
    directory = dataset_dir(data_dir, "csl_title_zh")
    pool, pool_report = load_tsv(directory / "ts_dev.tsv.gz", 1, 2, "zh", "zh", id_prefix="csl-ts_dev")
    test, test_report = load_tsv(directory / "ts_test.tsv.gz", 1, 2, "zh", "zh", id_prefix="csl-ts_test")
    if not 0 < n_dev < len(pool):
        raise UserError(f"csl: n_dev must be between 1 and {len(pool) - 1}, got {n_dev}")
    shuffled = seeded_shuffle(pool, seed)
    dev, train = shuffled[:n_dev], shuffled[n_dev:]
    pool_report.notes.append(f"{len(train)} train / {len(dev)} dev (seed {seed})")
    train_texts = [text for e in train for text in (e.source, e.target)]
    return TaskData(
        task=Task("csl-zh", "summarization", ("zh",), template, separator),
        train=train,
        dev=dev,
        test=test,
        pretraining_text={"zh": lambda: documents_from_lines(train_texts, seed, lines_per_document=8)},
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
