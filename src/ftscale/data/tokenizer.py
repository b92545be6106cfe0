"""Byte-level BPE tokenizer shared by a model family: trained with ``tokenizers``, used as a ``transformers`` tokenizer.

Special tokens have fixed ids so every model and checkpoint agrees on them: ``<pad>`` 0, ``<s>`` 1 (BOS),
``</s>`` 2 (EOS), ``<sep>`` 3, ``<unk>`` 4 (byte-level BPE never needs it, but some tools expect one).
Training is cached by a sha256 of the texts and settings, so the same corpus gives the same tokenizer for free.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ftscale.errors import DataError

PAD, BOS, EOS, SEP, UNK = "<pad>", "<s>", "</s>", "<sep>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, SEP, UNK)
# Bump when the training recipe changes, so cached tokenizers from an older recipe are not reused.
RECIPE_VERSION = "bytebpe-v1"


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        sep_token=SEP,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def _content_hash(texts: list[str], vocab_size: int, min_frequency: int) -> str:
    digest = hashlib.sha256()
    digest.update(f"{RECIPE_VERSION}|{vocab_size}|{min_frequency}|{len(texts)}\n".encode())
    for text in texts:
        encoded = text.encode("utf-8")
        # Length-prefix each text so ["ab", "c"] and ["a", "bc"] hash differently.
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 2,
    cache_dir: Path | str | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` (all languages the family will see) and return it with fixed specials.

    With ``cache_dir``, a tokenizer trained before on the same texts and settings is loaded instead of retrained.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise DataError(
            f"vocab_size={vocab_size} is too small: byte-level BPE needs at least 261 (256 bytes + specials)"
        )
    texts = [text for text in texts if text]
    if not texts:
        raise DataError("no text to train the tokenizer on; pass the training texts of the task(s)")
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise DataError(
            f"{cache_dir}: tokenizer cache_dir is an existing file, not a directory; "
            f"point cache_dir at a directory or remove the file"
        )
    key = _content_hash(texts, vocab_size, min_frequency)
    cached = Path(cache_dir) / f"tokenizer-{key[:20]}" if cache_dir is not None else None
    if cached is not None and (cached / "tokenizer.json").is_file():
        return load_tokenizer(cached)
    if cached is not None:  # create it before training, so a bad path fails fast
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a parent path is a regular file, or no permission
            raise DataError(
                f"{cached.parent}: cannot create the tokenizer cache_dir ({exc.strerror or exc}); "
                f"point cache_dir at a writable directory"
            ) from None

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    wrapped = _wrap(tokenizer)
    _check_special_ids(wrapped, "freshly trained tokenizer")
    if cached is not None:
        # Write to a temporary sibling and rename, so a concurrent reader never sees a half-written directory.
        staging = Path(tempfile.mkdtemp(prefix=cached.name + ".", dir=cached.parent))
        wrapped.save_pretrained(str(staging))
        (staging / "ftscale_tokenizer.json").write_text(
            json.dumps({"content_hash": key, "vocab_size": vocab_size, "min_frequency": min_frequency})
        )
        try:
            os.replace(staging, cached)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    return wrapped


def load_tokenizer(path: Path | str) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`train_tokenizer` (or ``save_pretrained``) and check its special ids."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise DataError(f"{path}: no tokenizer.json; point to a directory written by save_pretrained")
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    except Exception as exc:  # a damaged tokenizer.json surfaces as various library errors
        raise DataError(
            f"{path}: cannot load the tokenizer ({exc}); retrain it or restore the folder"
        ) from None
    _check_special_ids(tokenizer, str(path))
    return tokenizer


def _check_special_ids(tokenizer: PreTrainedTokenizerFast, where: str) -> None:
    expected = {PAD: 0, BOS: 1, EOS: 2, SEP: 3, UNK: 4}
    actual = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    if actual != expected:
        raise DataError(f"{where}: special token ids {actual} differ from {expected}; retrain the tokenizer")


def tokenizer_hash(tokenizer: PreTrainedTokenizerFast) -> str:
    """Stable fingerprint of a tokenizer's behaviour (vocab, merges, normalisation, specials) for run ids."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    specials = {
        "pad": tokenizer.pad_token,
        "bos": tokenizer.bos_token,
        "eos": tokenizer.eos_token,
        "sep": tokenizer.sep_token,
        "unk": tokenizer.unk_token,
    }
    canonical = json.dumps({"backend": state, "specials": specials}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
