"""Task templates, the one-sequence encoding, the target-only loss mask, length limits, few-shot and mixes."""

from __future__ import annotations

import pytest

from ftscale.data.tasks import (
    DEFAULT_SUMMARIZATION_TEMPLATE,
    DEFAULT_TRANSLATION_TEMPLATE,
    Task,
    TaskData,
    mix_task_data,
    summarization_task,
    translation_task,
)
from ftscale.data.tokenizer import train_tokenizer
from ftscale.data.types import Example
from ftscale.errors import DataError, UserError

EN_DE = [
    Example("A dog runs in the park.", "Ein Hund rennt im Park.", "en", "de", id="1"),
    Example("Two men are talking.", "Zwei Männer reden.", "en", "de", id="2"),
    Example(
        "A woman reads a long book in a quiet room.",
        "Eine Frau liest ein langes Buch in einem ruhigen Raum.",
        "en",
        "de",
        id="3",
    ),
]
ZH_SUM = Example("本文研究了造纸废水的处理方法。结果表明效果明显。", "造纸废水处理研究", "zh", "zh", id="z1")


@pytest.fixture(scope="module")
def tok():
    texts = [t for e in [*EN_DE, ZH_SUM] for t in (e.source, e.target)]
    texts += [DEFAULT_TRANSLATION_TEMPLATE, DEFAULT_SUMMARIZATION_TEMPLATE, "English German Chinese"]
    return train_tokenizer(texts * 10, vocab_size=500, min_frequency=1)


def test_default_templates_and_format() -> None:
    task = translation_task("en", "de")
    assert task.template == DEFAULT_TRANSLATION_TEMPLATE and task.kind == "translation"
    prompt, target = task.format(EN_DE[0])
    assert prompt == "Translate from English to German:\nA dog runs in the park.\n"
    assert target == "Ein Hund rennt im Park."

    summarize = summarization_task(["de", "zh"])
    prompt, target = summarize.format(ZH_SUM)
    assert (
        prompt == f"Summarize the following document in Chinese:\n{ZH_SUM.source}\n"
        and target == ZH_SUM.target
    )
    german = Example("Langer Text.", "Kurz.", "de", "de")
    assert summarize.format(german)[0].startswith("Summarize the following document in German:\n")


def test_custom_template_and_separator() -> None:
    task = Task(
        "t", "translation", ("en", "de"), template="{src_lang}>{tgt_lang}: {source} =", separator="<sep>"
    )
    assert task.format(EN_DE[1]) == ("en>de: Two men are talking. =<sep>", "Zwei Männer reden.")
    with pytest.raises(UserError, match=r"must contain \{source\} exactly once"):
        Task("t", "translation", ("en", "de"), template="no source here")
    with pytest.raises(UserError, match="unknown placeholder"):
        Task("t", "translation", ("en", "de"), template="{source} {language}")
    for bad in ("{src_name.nope} {source}", "{src_name[x]} {source}", "{{source}}"):
        with pytest.raises(UserError, match="unknown placeholder"):
            Task("t", "translation", ("en", "de"), template=bad)
    with pytest.raises(UserError, match="kind must be"):
        Task("t", "classification", ("en",))  # type: ignore[arg-type]


@pytest.mark.parametrize("separator", ["", "<sep>"])
def test_target_mask_covers_exactly_target_and_eos(tok, separator: str) -> None:
    task = Task("t", "translation", ("en", "de"), separator=separator)
    for example in EN_DE:
        encoded = task.encode(example, tok)
        prompt, target = task.format(example)
        assert encoded.input_ids[0] == tok.bos_token_id and encoded.input_ids[-1] == tok.eos_token_id
        assert list(encoded.input_ids).count(tok.eos_token_id) == 1
        # Token-level check: the masked span decodes to exactly the target text plus EOS, the rest to the prompt.
        assert tok.decode(encoded.target_ids) == target + "</s>"
        assert tok.decode(encoded.target_ids[:-1]) == target
        assert tok.decode(encoded.prompt_ids) == "<s>" + prompt
        assert encoded.target_ids[:-1] == tuple(tok(target, add_special_tokens=False)["input_ids"])
        labels = [t if i >= encoded.target_start else -100 for i, t in enumerate(encoded.input_ids)]
        assert [t for t in labels if t != -100] == list(encoded.target_ids)
        if separator:
            assert encoded.input_ids[encoded.target_start - 1] == tok.sep_token_id


def test_encode_many_matches_encode(tok) -> None:
    task = summarization_task(["zh", "de"])
    examples = [ZH_SUM, Example("Ein langer Text über Hunde.", "Hunde.", "de", "de")]
    batch, report = task.encode_many(examples, tok)
    assert batch == [task.encode(e, tok) for e in examples]
    assert report.n_input == report.n_kept == 2 and report.n_dropped == 0
    assert report.n_target_tokens == sum(e.n_target_tokens for e in batch)
    assert report.max_sequence_length == max(len(e.input_ids) for e in batch)


def test_length_limits_truncate_and_drop(tok) -> None:
    task = translation_task("en", "de")
    lengths = [(len(tok(e.source)["input_ids"]), len(tok(e.target)["input_ids"])) for e in EN_DE]
    max_source = sorted(s for s, _ in lengths)[
        1
    ]  # the longest source exceeds this (strictly, by construction)
    n_long_source = sum(s > max_source for s, _ in lengths)
    max_target = min(
        t for _, t in lengths
    )  # target segment incl. EOS: every target with > max_target-1 tokens is cut
    n_long_target = sum(t + 1 > max_target for _, t in lengths)
    assert n_long_source >= 1 and n_long_target == 3

    kept, report = task.encode_many(EN_DE, tok, max_source_tokens=max_source, max_target_tokens=max_target)
    assert report.n_kept == 3 and report.n_dropped == 0
    assert report.n_source_truncated == n_long_source and report.n_target_truncated == n_long_target
    for encoded in kept:
        assert encoded.n_target_tokens == max_target and encoded.input_ids[-1] == tok.eos_token_id

    dropped, report = task.encode_many(EN_DE, tok, max_source_tokens=max_source, overflow="drop")
    assert report.n_dropped == n_long_source and len(dropped) == 3 - n_long_source
    assert report.n_source_truncated == 0 and "dropped" in report.summary()
    assert task.encode(EN_DE[2], tok, max_target_tokens=3, overflow="drop") is None

    with pytest.raises(UserError, match="overflow must be"):
        task.encode(EN_DE[0], tok, overflow="cut")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="max_target_tokens must be >= 2"):
        task.encode(EN_DE[0], tok, max_target_tokens=1)


def test_few_shot_prompt_and_encoding(tok) -> None:
    task = translation_task("en", "de")
    prompt, target = task.format_few_shot(EN_DE[2], EN_DE[:2])
    assert prompt == (
        "Translate from English to German:\nA dog runs in the park.\nEin Hund rennt im Park.\n\n"
        "Translate from English to German:\nTwo men are talking.\nZwei Männer reden.\n\n"
        "Translate from English to German:\nA woman reads a long book in a quiet room.\n"
    )
    assert target == EN_DE[2].target
    encoded = task.encode(EN_DE[2], tok, shots=EN_DE[:2])
    assert tok.decode(encoded.target_ids) == target + "</s>"
    assert tok.decode(encoded.prompt_ids) == "<s>" + prompt
    assert encoded.target_ids == task.encode(EN_DE[2], tok).target_ids


def test_task_data_and_mix_keep_languages() -> None:
    german = TaskData(
        summarization_task(["de"], "de"), [Example("a", "b", "de", "de")] * 3, [EN_DE[0]], [EN_DE[0]]
    )
    chinese = TaskData(
        summarization_task(["zh"], "zh"),
        [ZH_SUM],
        [ZH_SUM],
        [ZH_SUM],
        pretraining_text={"zh": lambda: ["中文文本"]},
    )
    mixed = mix_task_data("sum-de-zh", [german, chinese])
    assert mixed.task.languages == ("de", "zh") and mixed.task.kind == "summarization"
    assert mixed.language_counts() == {"de": 3, "zh": 1}
    assert list(mixed.pretraining_text["zh"]()) == ["中文文本"]
    assert "languages {'de': 3, 'zh': 1}" in mixed.summary()
    big_german = TaskData(
        summarization_task(["de"], "de"),
        [Example(f"a{i}", "b", "de", "de", id=f"d{i}") for i in range(10)],
        [EN_DE[0]],
        [EN_DE[0]],
    )
    many_chinese = TaskData(
        summarization_task(["zh"], "zh"),
        [Example(f"z{i}", "y", "zh", "zh", id=f"z{i}") for i in range(30)],
        [ZH_SUM],
        [ZH_SUM],
    )
    fixed = mix_task_data("fixed", [big_german, many_chinese], ratios={"de": 1, "zh": 2})
    assert fixed.language_counts() == {"de": 10, "zh": 20}
    assert mix_task_data(
        "fixed", [big_german, many_chinese], ratios={"de": 3, "zh": 1}
    ).language_counts() == {"de": 10, "zh": 3}
    with pytest.raises(UserError, match="must give a positive weight to each language"):
        mix_task_data("bad", [big_german, many_chinese], ratios={"de": 1})
    with pytest.raises(DataError, match="the dev split is empty"):
        TaskData(translation_task("en", "de"), EN_DE, [], EN_DE)
    with pytest.raises(UserError, match="cannot mix task kinds"):
        mix_task_data("bad", [german, TaskData(translation_task("en", "de"), EN_DE, EN_DE, EN_DE)])


def test_mix_ratios_must_be_finite_positive_numbers() -> None:
    """A ratio from a config file given as a string ("0.5") gets a clear error, not a raw TypeError."""
    german = TaskData(
        summarization_task(["de"], "de"), [Example("a", "b", "de", "de", id="d")], [EN_DE[0]], [EN_DE[0]]
    )
    chinese = TaskData(summarization_task(["zh"], "zh"), [ZH_SUM], [ZH_SUM], [ZH_SUM])
    for bad in ("0.5", float("nan"), float("inf"), None, True):
        with pytest.raises(UserError, match=r"task 'mix': ratio for 'zh' is .*; give a finite number > 0"):
            mix_task_data("mix", [german, chinese], ratios={"de": 1, "zh": bad})
    with pytest.raises(UserError, match=r"task 'mix': ratios must map each language to a weight"):
        mix_task_data("mix", [german, chinese], ratios=[1, 1])
    with pytest.raises(UserError, match="must give a positive weight to each language"):
        mix_task_data("mix", [german, chinese], ratios={"de": 1, "zh": -0.5})
