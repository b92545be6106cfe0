"""Evaluation: target loss, greedy batched generation (incl. prompt tuning), metrics, zero- and few-shot results."""

from __future__ import annotations

import json
import math

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from ftscale.errors import UserError
from ftscale.finetune.evaluate import (
    EvalResult,
    LossResult,
    evaluate_model,
    generate,
    generation_metrics,
    target_loss,
)
from ftscale.finetune.methods import MethodConfig, prepare_model
from test_finetune_support import copy_task, encode_pair, tiny_model, tiny_tokenizer


def test_target_loss_is_the_token_mean_over_the_whole_split():
    model = tiny_model()
    examples, _ = copy_task(7, 3)
    result = target_loss(model, examples, batch_size=3)
    assert isinstance(result, LossResult)
    assert result.n_tokens == sum(e.n_target_tokens for e in examples)
    # Reference: Hugging Face's own label loss, one example at a time, weighted by its target tokens.
    total = 0.0
    with torch.no_grad():
        for example in examples:
            ids = torch.tensor([example.input_ids])
            labels = ids.clone()
            labels[0, : example.target_start] = -100
            total += model(input_ids=ids, labels=labels).loss.item() * example.n_target_tokens
    assert result.loss == pytest.approx(total / result.n_tokens, rel=1e-5)
    assert result.ppl == pytest.approx(math.exp(result.loss))
    assert target_loss(model, examples, batch_size=1).loss == pytest.approx(result.loss, rel=1e-5)


def _greedy_without_cache(model, prompt, max_new_tokens, eos):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = model(input_ids=torch.tensor([ids])).logits[0, -1].argmax().item()
            if next_id == eos:
                break
            ids.append(next_id)
    return ids[len(prompt) :]


@pytest.mark.parametrize("method", ["fmt", "prompt"])
def test_batched_left_padded_generation_equals_plain_greedy(method):
    tokenizer = tiny_tokenizer()
    model, _ = prepare_model(tiny_model(seed=1), MethodConfig(method=method, prompt_length=4))
    model.eval()
    examples, _ = copy_task(6, 5)
    prompts = [e.prompt_ids for e in examples]
    batched = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=4)
    for prompt, text in zip(prompts, batched, strict=True):
        expected = _greedy_without_cache(model, prompt, 6, tokenizer.eos_token_id)
        assert text == tokenizer.decode(expected, skip_special_tokens=True).strip()


def test_generation_stops_at_eos():
    tokenizer = tiny_tokenizer()
    model = tiny_model()
    # Make EOS the only likely token: generation must stop at once and return empty text.
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.eos_token_id].fill_(1.0)
        model.model.norm.weight.fill_(1.0)
    assert generate(model, tokenizer, [[tokenizer.bos_token_id, 5, 6]], max_new_tokens=5) == [""]


def test_metrics_agree_with_the_libraries_english():
    hyps = ["the cat sat on the mat", "a dog ran to the house"]
    refs = ["the cat sat on a mat", "the dog ran to the big house"]
    metrics = generation_metrics(hyps, refs, "en")
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    # On plain ASCII our tokenizer agrees with rouge_score's default one.
    default = rouge_scorer.RougeScorer(["rougeL"])
    expected = sum(default.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)) / 2
    assert metrics["rougeL"] == pytest.approx(100 * expected)


def test_metrics_german_keeps_umlauts():
    hyps = ["Die Katze schläft über dem Haus"]
    refs = ["die Katze schläft im Haus"]
    metrics = generation_metrics(hyps, refs, "de")
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score)
    # Tokens: die katze schläft über dem haus / die katze schläft im haus -> LCS 4, P 4/6, R 4/5.
    precision, recall = 4 / 6, 4 / 5
    assert metrics["rougeL"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))


def test_metrics_chinese_use_characters():
    hyps = ["我们学习翻译"]
    refs = ["我们今天学习机器翻译"]
    metrics = generation_metrics(hyps, refs, "zh")
    zh_bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    assert metrics["bleu"] == pytest.approx(zh_bleu)
    assert zh_bleu != pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    # Characters: LCS 6 of hypothesis 6 and reference 10 -> F1 = 2 * 1 * 0.6 / 1.6 = 0.75.
    assert metrics["rougeL"] == pytest.approx(75.0)


def test_metrics_reject_mismatched_lengths():
    with pytest.raises(UserError):
        generation_metrics(["a"], ["a", "b"], "en")


def test_evaluate_model_with_zero_and_few_shot_is_typed_and_serialisable():
    tokenizer = tiny_tokenizer()
    model, _ = prepare_model(tiny_model(), MethodConfig(method="lora"))
    test, refs = copy_task(6, 7)
    zero_shot = {"de-en": ([encode_pair("der Hund", "x").prompt_ids], ["the dog"])}
    demo = encode_pair("the cat", "the cat")
    one_shot = [demo.input_ids[:-1] + e.prompt_ids[1:] for e in test[:3]]
    result = evaluate_model(
        model,
        tokenizer,
        test,
        refs,
        "en",
        max_eval_examples=4,
        zero_shot=zero_shot,
        few_shot={1: (one_shot, refs[:3])},
        max_new_tokens=4,
    )
    assert isinstance(result, EvalResult)
    assert result.n_test_tokens == sum(e.n_target_tokens for e in test) and result.n_generated == 4
    assert set(result.zero_shot) == {"de-en"} and set(result.few_shot) == {"1"}
    assert set(result.few_shot["1"]) == {"bleu", "chrf", "rougeL", "n"} and result.few_shot["1"]["n"] == 3
    assert all(0 <= v <= 100 for v in (result.bleu, result.chrf, result.rougeL))
    round_trip = json.loads(json.dumps(result.to_dict()))
    assert round_trip["test_loss"] == result.test_loss
    loss_only = evaluate_model(model, tokenizer, test, refs, "en", generation=False)
    assert loss_only.bleu is None and loss_only.test_loss == pytest.approx(result.test_loss)
