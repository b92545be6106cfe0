"""Tiny builders shared by the finetune tests: a byte-level BPE tokenizer, a small Llama and a copy task."""

from __future__ import annotations

import random
from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ftscale.data.types import EncodedExample

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "the",
    "dog",
    "ran",
    "to",
    "the",
    "house",
    "while",
    "birds",
    "sang",
    "in",
    "green",
    "trees",
    "der",
    "Hund",
    "läuft",
    "schnell",
    "über",
    "die",
    "Straße",
    "und",
    "die",
    "Katze",
    "schläft",
    "im",
    "warmen",
    "Haus",
    "我们",
    "今天",
    "学习",
    "机器",
    "翻译",
    "猫",
    "坐在",
    "垫子",
    "上",
    "狗",
    "跑",
    "到",
    "房子",
    "里",
]


@lru_cache(maxsize=1)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_model(seed: int = 0, hidden: int = 32, layers: int = 2) -> LlamaForCausalLM:
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def encode_pair(source: str, target: str) -> EncodedExample:
    tokenizer = tiny_tokenizer()
    prompt = [tokenizer.bos_token_id, *tokenizer.encode(source + " =>")]
    target_ids = [*tokenizer.encode(" " + target), tokenizer.eos_token_id]
    return EncodedExample(input_ids=tuple(prompt + target_ids), target_start=len(prompt))


def copy_task(n: int, seed: int) -> tuple[list[EncodedExample], list[str]]:
    """Examples whose target repeats the source words: learnable within a few dozen steps."""
    rng = random.Random(seed)
    examples, refs = [], []
    for _ in range(n):
        words = " ".join(rng.choice(WORDS[:16]) for _ in range(rng.randint(2, 6)))
        examples.append(encode_pair(words, words))
        refs.append(words)
    return examples, refs


def test_tokenizer_round_trips_german_and_chinese():
    tokenizer = tiny_tokenizer()
    text = "die Katze schläft 猫 坐在"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id} == {0, 1, 2}


def test_encoded_pair_target_is_the_continuation():
    example = encode_pair("the cat", "the cat")
    tokenizer = tiny_tokenizer()
    assert example.input_ids[0] == tokenizer.bos_token_id and example.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example.target_ids, skip_special_tokens=True).strip() == "the cat"
