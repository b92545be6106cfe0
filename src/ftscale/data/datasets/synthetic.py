"""The embedded synthetic bilingual corpus as a task (translation or summarisation): the fresh-machine default."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ftscale.data.tasks import Task, TaskData
from ftscale.data.types import Example
from ftscale.errors import UserError


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
