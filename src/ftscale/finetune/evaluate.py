"""Evaluation of a (finetuned or base) causal LM: target log-PPL, greedy generation, BLEU / chrF / ROUGE-L, and
zero- / few-shot scores. Every function returns a typed, JSON-serialisable result that the study store records."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import sacrebleu
import torch
from peft import PeftModel, PeftType
from rouge_score import rouge_scorer
from transformers import PreTrainedTokenizerBase

from ftscale.data.types import EncodedExample
from ftscale.errors import UserError
from ftscale.finetune.batches import Batch, bucketed_batches, target_nll_sum


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass(frozen=True)
class LossResult:
    """Mean NLL (nats) over all target tokens of a split, its exponent (PPL) and the token count."""

    loss: float
    ppl: float
    n_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def target_loss(
    model: torch.nn.Module, examples: Sequence[EncodedExample], batch_size: int = 32
) -> LossResult:
    """Token-level mean NLL of the targets of ``examples`` (positions >= target_start, EOS included).

    Batches are sorted by length, so padding is minimal; the sum is accumulated on the device and read once.
    """
    if not examples:
        raise UserError("target_loss got no examples; the evaluation split is empty")
    return batches_loss(model, bucketed_batches(examples, batch_size))


@torch.inference_mode()
def batches_loss(model: torch.nn.Module, batches: Sequence[Batch]) -> LossResult:
    """``target_loss`` over already collated batches (a training loop collates its dev set once)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    autocast = device.type == "cuda"
    total = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = 0
    for batch in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            total += target_nll_sum(model, batch.to(device))
        n_tokens += batch.n_target_tokens
    model.train(was_training)
    loss = total.item() / n_tokens
    return LossResult(loss=loss, ppl=math.exp(loss) if loss < 700 else math.inf, n_tokens=n_tokens)


def _is_prompt_tuning(model: torch.nn.Module) -> bool:
    return isinstance(model, PeftModel) and model.active_peft_config.peft_type == PeftType.PROMPT_TUNING


def _prompt_tuning_inputs(
    model: PeftModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Embeddings and mask of a left-padded batch with the soft prompt placed between the padding and the text.

    PEFT's own ``generate`` prepends the soft prompt to the padded ids, so the padding would sit between prompt
    and text and shift the text's positions by the padding width. Here every row reads [pad…, prompt, text],
    which the base model's ``generate`` treats as an ordinary left-padded batch (positions from the mask): each
    row sees exactly what it saw in training, where the prompt was prepended to unpadded text.
    """
    embeddings = model.get_input_embeddings()(input_ids)
    soft_prompt = model.get_prompt(batch_size=input_ids.shape[0]).to(embeddings.dtype)
    prompt_mask = attention_mask.new_ones(soft_prompt.shape[1])
    rows, masks = [], []
    for row, n_pad in enumerate((attention_mask == 0).sum(dim=1).tolist()):
        rows.append(torch.cat([embeddings[row, :n_pad], soft_prompt[row], embeddings[row, n_pad:]]))
        masks.append(torch.cat([attention_mask[row, :n_pad], prompt_mask, attention_mask[row, n_pad:]]))
    return {"inputs_embeds": torch.stack(rows), "attention_mask": torch.stack(masks)}


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 128,
    batch_size: int = 16,
) -> list[str]:
    """Greedy continuations of ``prompts`` (token ids, BOS included), decoded without special tokens.

    Prompts are batched by length with LEFT padding (so every continuation starts at the same column; generate
    derives position ids from the attention mask) and decoded with the KV cache by ``generate(do_sample=False)``;
    a sequence stops at EOS. For a PEFT prompt-tuning model the soft prompt goes after the padding, right before
    the text (see ``_prompt_tuning_inputs``), so its batches pad like any other. Output order matches ``prompts``.
    """
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise UserError(
            "generate needs a tokenizer with pad and eos tokens; set tokenizer.pad_token / eos_token"
        )
    if any(len(p) == 0 for p in prompts):
        raise UserError("generate got an empty prompt; every prompt needs at least the BOS token")
    was_training = model.training
    model.eval()
    device = model_device(model)
    outputs: list[str] = [""] * len(prompts)
    prompt_tuning = _is_prompt_tuning(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for indices in (order[i : i + batch_size] for i in range(0, len(order), batch_size)):
        width = max(len(prompts[i]) for i in indices)
        input_ids = torch.full((len(indices), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            input_ids[row, width - len(prompts[i]) :] = torch.tensor(list(prompts[i]), dtype=torch.long)
            attention_mask[row, width - len(prompts[i]) :] = 1
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        generator = model
        if prompt_tuning:
            inputs, generator = _prompt_tuning_inputs(model, **inputs), model.get_base_model()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            generated = generator.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        # Given input ids, generate returns them followed by the new tokens; given only embeddings, the new tokens.
        continuation = (generated[:, width:] if "input_ids" in inputs else generated).tolist()
        for row, i in enumerate(indices):
            tokens = continuation[row]
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
            outputs[i] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    model.train(was_training)
    return outputs


_CJK = (
    "\u2e80-\u2eff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\uff00-\uffef"
)
_ROUGE_TOKEN = re.compile(rf"[{_CJK}]|[^\W_]+", re.UNICODE)


class MultilingualRougeTokenizer:
    """ROUGE tokenizer for any script: lowercase, split on whitespace and punctuation, and one token per CJK
    character. (rouge_score's default tokenizer keeps only [a-z0-9] and so drops umlauts and all of Chinese.)"""

    def tokenize(self, text: str) -> list[str]:
        return _ROUGE_TOKEN.findall(text.lower())


def sacrebleu_tokenizer(tgt_lang: str) -> str:
    return "zh" if tgt_lang.lower().startswith("zh") else "13a"


def generation_metrics(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu; tokenize="zh" for Chinese targets, "13a" otherwise) and mean ROUGE-L F1
    (rouge-score with ``MultilingualRougeTokenizer``: lowercase, split on whitespace/punctuation, CJK split into
    characters). All three on a 0-100 scale."""
    if len(hyps) != len(refs):
        raise UserError(f"generation_metrics got {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise UserError("generation_metrics got no hypotheses; the evaluation split is empty")
    bleu = sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=sacrebleu_tokenizer(tgt_lang)).score
    chrf = sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=MultilingualRougeTokenizer())
    rouge_l = sum(scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hyps, refs, strict=True))
    return {"bleu": bleu, "chrf": chrf, "rougeL": 100.0 * rouge_l / len(hyps)}


@dataclass
class EvalResult:
    """Everything measured on one model: test loss (nats) and PPL, generation metrics on the test set, and
    per-name zero-shot / per-k few-shot generation metrics (``{"bleu", "chrf", "rougeL", "n"}``)."""

    test_loss: float
    test_ppl: float
    n_test_tokens: int
    n_generated: int = 0
    bleu: float | None = None
    chrf: float | None = None
    rougeL: float | None = None
    zero_shot: dict[str, dict[str, float]] = field(default_factory=dict)
    few_shot: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _scores(model, tokenizer, prompts, refs, tgt_lang, max_new_tokens, batch_size) -> dict[str, float]:
    hyps = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return {**generation_metrics(hyps, refs, tgt_lang), "n": len(hyps)}


def evaluate_model(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    test: Sequence[EncodedExample],
    refs: Sequence[str],
    tgt_lang: str,
    generation: bool = True,
    max_eval_examples: int | None = None,
    zero_shot: dict[str, tuple[Sequence[Sequence[int]], Sequence[str]]] | None = None,
    few_shot: dict[int, tuple[Sequence[Sequence[int]], Sequence[str]]] | None = None,
    max_new_tokens: int = 128,
    batch_size: int = 32,  # generation batch; decoding 32 prompts at once took half the time of 2 × 16 on CPU
) -> EvalResult:
    """Evaluate ``model`` (finetuned, or the base model as the no-finetuning baseline).

    The loss covers the whole ``test`` split. Generation uses each test example's prompt (``prompt_ids``) and is
    scored against ``refs`` (same order); ``max_eval_examples`` keeps the first N of each generation set.
    ``zero_shot`` maps a direction name (e.g. ``"fr-de"``) and ``few_shot`` maps k (1, 5) to ``(prompt token ids,
    reference strings)`` built by the data layer; they are scored in ``tgt_lang``.
    """
    if len(test) != len(refs):
        raise UserError(f"evaluate_model got {len(test)} test examples but {len(refs)} references")
    loss = target_loss(model, test, batch_size=2 * batch_size)
    result = EvalResult(test_loss=loss.loss, test_ppl=loss.ppl, n_test_tokens=loss.n_tokens)
    if not generation:
        return result
    limit = slice(None, max_eval_examples)
    scores = _scores(
        model,
        tokenizer,
        [e.prompt_ids for e in test][limit],
        list(refs)[limit],
        tgt_lang,
        max_new_tokens,
        batch_size,
    )
    result.n_generated = int(scores["n"])
    result.bleu, result.chrf, result.rougeL = scores["bleu"], scores["chrf"], scores["rougeL"]
    # Zero-shot directions and k-shot prompts are scored alike: the first N prompts of each set, in ``tgt_lang``.
    for target, sets in ((result.zero_shot, zero_shot), (result.few_shot, few_shot)):
        for name, (prompts, set_refs) in (sets or {}).items():
            target[str(name)] = _scores(
                model,
                tokenizer,
                list(prompts)[limit],
                list(set_refs)[limit],
                tgt_lang,
                max_new_tokens,
                batch_size,
            )
    return result
