"""Finetuning tasks: prompt templates, the one-sequence format with a target-only loss mask, and task datasets.

An example becomes ONE token sequence ``<s> prompt(source) separator target </s>``. The prompt is the task's
template rendered with the source text; its default ends with a newline, which is the separator between source
and target (set ``Task.separator="<sep>"`` to add the special token as well). The boundary is kept as
``EncodedExample.target_start`` so the loss covers exactly the target tokens and EOS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ftscale.data.types import EncodedExample, Example
from ftscale.errors import DataError, UserError

TaskKind = Literal["translation", "summarization"]
OverflowPolicy = Literal["truncate", "drop"]

DEFAULT_TRANSLATION_TEMPLATE = "Translate from {src_name} to {tgt_name}:\n{source}\n"
# The paper's MLSum prefix ("Summarize the following document in {lang}:"), source on its own line.
DEFAULT_SUMMARIZATION_TEMPLATE = "Summarize the following document in {lang_name}:\n{source}\n"
# Between few-shot demonstrations (each one is prompt + target).
FEW_SHOT_DELIMITER = "\n\n"

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}
_TEMPLATE_FIELDS = {"source", "src_name", "tgt_name", "lang_name", "src_lang", "tgt_lang"}


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code for prompts; unknown codes fall back to the code itself."""
    return LANGUAGE_NAMES.get(code, code)


@dataclass(frozen=True)
class LengthReport:
    """How length limits changed a batch of encoded examples."""

    n_input: int
    n_kept: int
    n_dropped: int
    n_source_truncated: int
    n_target_truncated: int
    max_sequence_length: int
    n_target_tokens: int

    def summary(self) -> str:
        return (
            f"{self.n_kept}/{self.n_input} examples kept, {self.n_dropped} dropped, "
            f"{self.n_source_truncated} source / {self.n_target_truncated} target truncated; "
            f"longest sequence {self.max_sequence_length} tokens, {self.n_target_tokens} target tokens"
        )


@dataclass(frozen=True)
class Task:
    """A finetuning task: how an :class:`Example` is turned into prompt and target text, and then into tokens.

    ``template`` is a ``str.format`` pattern with ``{source}`` and any of ``{src_name}``, ``{tgt_name}``,
    ``{lang_name}`` (= target language name), ``{src_lang}``, ``{tgt_lang}``; it is rendered per example, so a
    multilingual task (summarisation into De and Zh) names each example's own language. ``languages`` lists
    the task's languages (translation: source then target; summarisation: the target languages of the mix).
    """

    name: str
    kind: TaskKind
    languages: tuple[str, ...]
    template: str = ""
    separator: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("translation", "summarization"):
            raise UserError(
                f"task {self.name!r}: kind must be 'translation' or 'summarization', got {self.kind!r}"
            )
        if not self.template:
            default = (
                DEFAULT_TRANSLATION_TEMPLATE if self.kind == "translation" else DEFAULT_SUMMARIZATION_TEMPLATE
            )
            object.__setattr__(self, "template", default)
        object.__setattr__(self, "languages", tuple(self.languages))
        if self.template.count("{source}") != 1:
            raise UserError(
                f"task {self.name!r}: template must contain {{source}} exactly once: {self.template!r}"
            )
        try:
            # Head and tail are rendered separately (see prompt_parts), so check them the same way.
            for part in self.template.split("{source}"):
                part.format(**dict.fromkeys(_TEMPLATE_FIELDS, "x"))
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise UserError(
                f"task {self.name!r}: template {self.template!r} has an unknown placeholder ({exc}); "
                f"allowed: {sorted(_TEMPLATE_FIELDS)}"
            ) from None

    # ---- text ------------------------------------------------------------------------------------------------

    def _fields(self, example: Example) -> dict[str, str]:
        return {
            "src_name": language_name(example.src_lang),
            "tgt_name": language_name(example.tgt_lang),
            "lang_name": language_name(example.tgt_lang),
            "src_lang": example.src_lang,
            "tgt_lang": example.tgt_lang,
        }

    def prompt_parts(self, example: Example) -> tuple[str, str]:
        """The prompt text before and after the source (the part after includes the separator)."""
        head, tail = self.template.split("{source}")
        fields = self._fields(example)
        return head.format(**fields), tail.format(**fields) + self.separator

    def format(self, example: Example) -> tuple[str, str]:
        """``(prompt_text, target_text)``: the prompt ends with the separator, the target follows it directly."""
        head, tail = self.prompt_parts(example)
        return head + example.source + tail, example.target

    def format_few_shot(self, example: Example, shots: Sequence[Example]) -> tuple[str, str]:
        """Prompt with ``shots`` as complete demonstrations (prompt + target), then the example's own prompt."""
        prompt, target = self.format(example)
        return self.demonstrations(shots) + prompt, target

    def demonstrations(self, shots: Sequence[Example]) -> str:
        """Few-shot demonstrations as text: each shot's prompt and target, then :data:`FEW_SHOT_DELIMITER`."""
        return "".join(prompt + target + FEW_SHOT_DELIMITER for prompt, target in map(self.format, shots))

    # ---- tokens ----------------------------------------------------------------------------------------------

    def encode(
        self,
        example: Example,
        tokenizer: Any,
        max_source_tokens: int | None = None,
        max_target_tokens: int | None = None,
        overflow: OverflowPolicy = "truncate",
        shots: Sequence[Example] = (),
    ) -> EncodedExample | None:
        """One example as ids ``[BOS] (shots) prompt target [EOS]`` with ``target_start`` at the target.

        ``max_source_tokens`` limits the source text's tokens (template tokens are not counted);
        ``max_target_tokens`` limits the target segment including EOS. Too-long examples are truncated
        (EOS is kept) or, with ``overflow="drop"``, return None.
        """
        encoded, _, _ = _encode_one(
            self, example, tokenizer, max_source_tokens, max_target_tokens, overflow, shots
        )
        return encoded

    def encode_many(
        self,
        examples: Iterable[Example],
        tokenizer: Any,
        max_source_tokens: int | None = None,
        max_target_tokens: int | None = None,
        overflow: OverflowPolicy = "truncate",
    ) -> tuple[list[EncodedExample], LengthReport]:
        """Encode a list, batching the tokenizer calls; the report counts dropped and truncated examples."""
        examples = list(examples)
        _check_limits(max_source_tokens, max_target_tokens, overflow)
        sources = _batch_ids(tokenizer, [e.source for e in examples])
        targets = _batch_ids(tokenizer, [e.target for e in examples])
        prompt_cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        encoded: list[EncodedExample] = []
        n_dropped = n_source_truncated = n_target_truncated = 0
        for example, source_ids, target_ids in zip(examples, sources, targets, strict=True):
            key = (example.src_lang, example.tgt_lang)
            if key not in prompt_cache:
                head, tail = self.prompt_parts(example)
                prompt_cache[key] = (_ids(tokenizer, head), _ids(tokenizer, tail))
            head_ids, tail_ids = prompt_cache[key]
            result = _assemble(
                tokenizer,
                [],
                head_ids,
                source_ids,
                tail_ids,
                target_ids,
                max_source_tokens,
                max_target_tokens,
                overflow,
            )
            if result is None:
                n_dropped += 1
                continue
            item, source_cut, target_cut = result
            n_source_truncated += source_cut
            n_target_truncated += target_cut
            encoded.append(item)
        report = LengthReport(
            n_input=len(examples),
            n_kept=len(encoded),
            n_dropped=n_dropped,
            n_source_truncated=n_source_truncated,
            n_target_truncated=n_target_truncated,
            max_sequence_length=max((len(e.input_ids) for e in encoded), default=0),
            n_target_tokens=sum(e.n_target_tokens for e in encoded),
        )
        return encoded, report


def _check_limits(max_source: int | None, max_target: int | None, overflow: str) -> None:
    if overflow not in ("truncate", "drop"):
        raise UserError(f"overflow must be 'truncate' or 'drop', got {overflow!r}")
    if max_source is not None and max_source < 1:
        raise UserError(f"max_source_tokens must be >= 1, got {max_source}")
    if max_target is not None and max_target < 2:
        raise UserError(
            f"max_target_tokens must be >= 2 (at least one target token plus EOS), got {max_target}"
        )


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _batch_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _assemble(
    tokenizer: Any,
    shot_ids: list[int],
    head_ids: list[int],
    source_ids: list[int],
    tail_ids: list[int],
    target_ids: list[int],
    max_source: int | None,
    max_target: int | None,
    overflow: str,
) -> tuple[EncodedExample, bool, bool] | None:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise UserError("the tokenizer has no BOS/EOS token; use ftscale.data.tokenizer.train_tokenizer")
    source_cut = max_source is not None and len(source_ids) > max_source
    target_cut = max_target is not None and len(target_ids) + 1 > max_target
    if (source_cut or target_cut) and overflow == "drop":
        return None
    if source_cut:
        source_ids = source_ids[:max_source]
    if target_cut:
        target_ids = target_ids[: max_target - 1]
    if not target_ids:
        raise DataError(
            "an example has an empty target after tokenisation; remove empty targets from the data"
        )
    prompt = [bos, *shot_ids, *head_ids, *source_ids, *tail_ids]
    return (
        EncodedExample(tuple(prompt + target_ids + [eos]), target_start=len(prompt)),
        source_cut,
        target_cut,
    )


def _encode_one(
    task: Task,
    example: Example,
    tokenizer: Any,
    max_source: int | None,
    max_target: int | None,
    overflow: str,
    shots: Sequence[Example],
) -> tuple[EncodedExample | None, bool, bool]:
    _check_limits(max_source, max_target, overflow)
    shot_ids = _ids(tokenizer, task.demonstrations(shots)) if shots else []
    head, tail = task.prompt_parts(example)
    result = _assemble(
        tokenizer,
        shot_ids,
        _ids(tokenizer, head),
        _ids(tokenizer, example.source),
        _ids(tokenizer, tail),
        _ids(tokenizer, example.target),
        max_source,
        max_target,
        overflow,
    )
    if result is None:
        return None, False, False
    return result


def translation_task(
    src: str, tgt: str, name: str | None = None, template: str = "", separator: str = ""
) -> Task:
    return Task(name or f"translation-{src}-{tgt}", "translation", (src, tgt), template, separator)


def summarization_task(
    languages: Sequence[str], name: str | None = None, template: str = "", separator: str = ""
) -> Task:
    return Task(
        name or f"summarization-{'-'.join(languages)}", "summarization", tuple(languages), template, separator
    )


# --------------------------------------------------------------------------------------------------------------
# Task datasets


TextStream = Callable[[], Iterable[str]]


@dataclass
class TaskData:
    """A task with its splits. Train is the pool finetuning subsets are drawn from; dev and test never change.

    ``zero_shot`` holds test sets with other source languages into the same target (key ``"fr-de"``);
    ``pretraining_text`` maps a language to a zero-argument callable yielding monolingual text for the base model;
    ``reports`` say what the loaders read and skipped.
    """

    task: Task
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    zero_shot: dict[str, list[Example]] = field(default_factory=dict)
    pretraining_text: dict[str, TextStream] = field(default_factory=dict)
    reports: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        for split_name in ("train", "dev", "test"):
            if not getattr(self, split_name):
                raise DataError(
                    f"task {self.task.name!r}: the {split_name} split is empty; check the data source"
                )

    def language_counts(self, split: str = "train") -> dict[str, int]:
        counts: dict[str, int] = {}
        for example in getattr(self, split):
            counts[example.tgt_lang] = counts.get(example.tgt_lang, 0) + 1
        return counts

    def tokenizer_texts(self) -> list[str]:
        """Train-split sources and targets (what a tokenizer for this task should be trained on, plus pretraining)."""
        return [text for example in self.train for text in (example.source, example.target)]

    def summary(self) -> str:
        parts = [f"{self.task.name}: train {len(self.train)}, dev {len(self.dev)}, test {len(self.test)}"]
        if len(self.task.languages) > 1 and self.task.kind == "summarization":
            parts.append(f"languages {self.language_counts()}")
        if self.zero_shot:
            parts.append("zero-shot " + ", ".join(f"{k} {len(v)}" for k, v in self.zero_shot.items()))
        return "; ".join(parts)


def mix_task_data(
    name: str,
    parts: Sequence[TaskData],
    languages: Sequence[str] | None = None,
    ratios: dict[str, float] | None = None,
    seed: int = 0,
) -> TaskData:
    """Concatenate several single-language task datasets (as the paper concatenates MLSum's languages).

    The mix's language ratio is that of the concatenated training pools, or ``ratios`` (target language →
    weight): then the largest training pool with exactly those proportions is kept (a seeded choice within each
    language). :func:`ftscale.data.subsets.subset` keeps the ratio when drawing smaller sets.
    """
    if not parts:
        raise UserError(f"task {name!r}: nothing to mix")
    kinds = {part.task.kind for part in parts}
    if len(kinds) != 1:
        raise UserError(f"task {name!r}: cannot mix task kinds {sorted(kinds)}")
    languages = tuple(languages or dict.fromkeys(lang for part in parts for lang in part.task.languages))
    first = parts[0].task
    task = Task(name, first.kind, languages, first.template, first.separator)
    merged_text: dict[str, list[TextStream]] = {}
    for part in parts:
        for lang, stream in part.pretraining_text.items():
            merged_text.setdefault(lang, []).append(stream)

    def chain(streams: list[TextStream]) -> TextStream:
        return lambda: (text for stream in streams for text in stream())

    train = [e for part in parts for e in part.train]
    if ratios:
        train = _reweight(name, train, ratios, seed)
    return TaskData(
        task=task,
        train=train,
        dev=[e for part in parts for e in part.dev],
        test=[e for part in parts for e in part.test],
        zero_shot={k: v for part in parts for k, v in part.zero_shot.items()},
        pretraining_text={lang: chain(streams) for lang, streams in merged_text.items()},
        reports=[r for part in parts for r in part.reports],
    )


def _reweight(name: str, train: list[Example], ratios: dict[str, float], seed: int) -> list[Example]:
    import random

    by_language: dict[str, list[Example]] = {}
    for example in train:
        by_language.setdefault(example.tgt_lang, []).append(example)
    if not isinstance(ratios, Mapping):
        raise UserError(
            f"task {name!r}: ratios must map each language to a weight, e.g. {{'de': 1, 'zh': 1}}; "
            f"got {type(ratios).__name__} {ratios!r}"
        )
    for lang, weight in ratios.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise UserError(
                f"task {name!r}: ratio for {lang!r} is {weight!r} ({type(weight).__name__}); "
                f"give a finite number > 0, e.g. 0.5 without quotes"
            )
    if set(ratios) != set(by_language) or any(weight <= 0 for weight in ratios.values()):
        raise UserError(
            f"task {name!r}: ratios {ratios} must give a positive weight to each language {sorted(by_language)}"
        )
    total_weight = sum(ratios.values())
    shares = {lang: weight / total_weight for lang, weight in ratios.items()}
    # The largest total whose every language share fits into that language's pool.
    total = min(int(len(pool) / shares[lang]) for lang, pool in by_language.items())
    mixed = []
    for lang in sorted(by_language):
        pool = list(by_language[lang])
        random.Random(f"{seed}:{lang}").shuffle(pool)
        mixed.extend(pool[: round(total * shares[lang])])
    return mixed
