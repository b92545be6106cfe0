"""Typed records that cross module boundaries: raw task examples and their tokenised form."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Example:
    """One finetuning example before formatting: a source text and its target.

    ``src_lang`` / ``tgt_lang`` are ISO-639-1 codes (``en``, ``de``, ``zh``, ...); ``id`` is unique within a split.
    """

    source: str
    target: str
    src_lang: str
    tgt_lang: str
    id: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class EncodedExample:
    """One example as a single token sequence ``prompt + source + separator + target``.

    Tokens at positions ``>= target_start`` are the target: the finetuning loss covers exactly those
    (``labels[i] = input_ids[i]`` for ``i >= target_start``, ``-100`` before). The sequence ends with EOS,
    which belongs to the target.
    """

    input_ids: tuple[int, ...]
    target_start: int

    def __post_init__(self) -> None:
        if not 0 < self.target_start < len(self.input_ids):
            raise ValueError(
                f"target_start={self.target_start} must lie inside the sequence of {len(self.input_ids)} tokens"
            )

    @property
    def n_target_tokens(self) -> int:
        return len(self.input_ids) - self.target_start

    @property
    def prompt_ids(self) -> tuple[int, ...]:
        return self.input_ids[: self.target_start]

    @property
    def target_ids(self) -> tuple[int, ...]:
        return self.input_ids[self.target_start :]
