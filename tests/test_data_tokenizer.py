"""Byte-level BPE tokenizer: fixed special ids, exact round trips (incl. Chinese), cache hits, stable hash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ftscale.data import tokenizer as tokenizer_module
from ftscale.data.tokenizer import load_tokenizer, tokenizer_hash, train_tokenizer
from ftscale.errors import DataError

TEXTS = [
    "A man in an orange hat is staring at something.",
    "Ein Mann mit einem orangefarbenen Hut starrt auf etwas.",
    "Two dogs are playing in the snow.",
    "Zwei Hunde spielen im Schnee.",
    "我们今天去公园散步。",
    "他喜欢看书和听音乐。",
] * 20


def test_special_token_ids_and_round_trip() -> None:
    tok = train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.sep_token_id, tok.unk_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<pad>", "<s>", "</s>", "<sep>", "<unk>"]
    assert len(tok) <= 400
    for text in [
        "Zwei Hunde spielen.",
        "他喜欢音乐。",
        "Unseen wörds ✓ ünïcode 😀",
        " leading space\nnew line",
    ]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert 4 not in ids  # byte-level: never needs <unk>
        assert tok.decode(ids) == text
    # Special tokens written in text are recognised as single ids.
    assert tok("a<sep>b", add_special_tokens=False)["input_ids"].count(3) == 1


def test_cache_hit_returns_same_tokenizer_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = train_tokenizer(TEXTS, vocab_size=400, min_frequency=1, cache_dir=tmp_path)
    cached_dirs = list(tmp_path.glob("tokenizer-*"))
    assert len(cached_dirs) == 1 and (cached_dirs[0] / "tokenizer.json").is_file()

    # A cache hit must not train: make training impossible and load again.
    def no_training(*args, **kwargs):
        raise AssertionError("retrained despite a cache hit")

    monkeypatch.setattr(tokenizer_module.trainers, "BpeTrainer", no_training)
    second = train_tokenizer(TEXTS, vocab_size=400, min_frequency=1, cache_dir=tmp_path)
    assert tokenizer_hash(second) == tokenizer_hash(first)
    assert second("Zwei Hunde")["input_ids"] == first("Zwei Hunde")["input_ids"]
    # Different settings or texts are a miss (and here would try to train).
    with pytest.raises(AssertionError, match="retrained"):
        train_tokenizer(TEXTS, vocab_size=500, min_frequency=1, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="retrained"):
        train_tokenizer([*TEXTS, "extra"], vocab_size=400, min_frequency=1, cache_dir=tmp_path)


def test_hash_is_stable_and_sensitive() -> None:
    a = train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)
    b = train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)
    c = train_tokenizer(TEXTS, vocab_size=350, min_frequency=1)
    assert tokenizer_hash(a) == tokenizer_hash(b)
    assert tokenizer_hash(a) != tokenizer_hash(c)
    assert len(tokenizer_hash(a)) == 16


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    tok = train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)
    tok.save_pretrained(str(tmp_path / "tok"))
    loaded = load_tokenizer(tmp_path / "tok")
    assert tokenizer_hash(loaded) == tokenizer_hash(tok)
    with pytest.raises(DataError, match=r"no tokenizer\.json"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "tok" / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot load the tokenizer"):
        load_tokenizer(tmp_path / "tok")


def test_errors() -> None:
    with pytest.raises(DataError, match="vocab_size=100 is too small"):
        train_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(DataError, match="no text to train the tokenizer"):
        train_tokenizer(["", ""])


def test_cache_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    """A cache_dir pointing at a regular file gets a clear error, not a raw FileExistsError."""
    (tmp_path / "cache").write_text("not a directory")
    with pytest.raises(DataError, match=r"cache: tokenizer cache_dir is an existing file, not a directory"):
        train_tokenizer(TEXTS, vocab_size=400, min_frequency=1, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"sub: cannot create the tokenizer cache_dir"):
        train_tokenizer(TEXTS, vocab_size=400, min_frequency=1, cache_dir=tmp_path / "cache" / "sub")


def test_training_speed_on_a_megabyte() -> None:
    """About 1 MB of mixed text trains in a few seconds (10 MB scales to well under a minute)."""
    words = [w for text in TEXTS[:6] for w in text.split()]
    lines = [
        " ".join(words[(i * 7) % len(words) :] + words[: (i * 7) % len(words)]) + f" {i}" for i in range(3000)
    ]
    text_size = sum(len(line.encode()) for line in lines)
    start = time.perf_counter()
    tok = train_tokenizer(lines * 4, vocab_size=2000)
    elapsed = time.perf_counter() - start
    assert text_size * 4 > 1_000_000 and len(tok) > 300
    assert elapsed < 20, f"tokenizer training took {elapsed:.1f}s for {text_size * 4 / 1e6:.1f} MB"
