"""Finetuning methods: PEFT parameter counts against the analytic formulas, initialisation, defaults, LR sweep."""

from __future__ import annotations

import math

import pytest
import torch

from ftscale.errors import UserError
from ftscale.finetune.methods import LORA_ALPHA, MethodConfig, lr_sweep, merged_lora, prepare_model
from ftscale.finetune.params import (
    METHODS,
    PARAMS_OF_METHOD,
    FmtParams,
    LoraParams,
    PromptParams,
    method_params,
)
from ftscale.finetune.train import FinetuneConfig
from ftscale.models.family import model_parameter_counts
from ftscale.study.spec import parse_spec
from test_finetune_support import copy_task, tiny_model


def _dims(model):
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    return (
        config.hidden_size,
        config.intermediate_size,
        config.num_key_value_heads * head_dim,
        config.num_hidden_layers,
    )


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_lora_count_is_rank_times_in_plus_out_per_targeted_matrix(rank):
    base = tiny_model()
    d, ff, kv, layers = _dims(base)
    total_before = sum(p.numel() for p in base.parameters())
    model, info = prepare_model(base, MethodConfig(method="lora", lora_rank=rank))
    # q, o: d -> d; k, v: d -> kv (multi-query); gate, up: d -> ff; down: ff -> d.
    per_layer = rank * ((d + d) * 2 + (d + kv) * 2 + (d + ff) * 2 + (ff + d))
    assert info.trainable == layers * per_layer
    assert info.total == total_before + info.trainable
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


@pytest.mark.parametrize("length", [3, 16])
def test_prompt_count_is_length_times_d_model(length):
    base = tiny_model()
    _, info = prepare_model(base, MethodConfig(method="prompt", prompt_length=length))
    assert info.trainable == length * base.config.hidden_size


def test_fmt_trains_everything_and_x_excludes_embeddings():
    base = tiny_model()
    total = sum(p.numel() for p in base.parameters())
    _, info = prepare_model(base, MethodConfig(method="fmt"))
    assert info.trainable == info.total == total
    d, ff, kv, layers = _dims(base)
    attention = d * d * 2 + d * kv * 2
    per_layer = attention + 3 * d * ff + 2 * d  # two RMSNorm weights
    assert info.base_non_embedding == layers * per_layer + d  # final norm
    assert model_parameter_counts(base).non_embedding == info.base_non_embedding


def test_model_size_excludes_learned_position_embeddings_like_gpt2() -> None:
    # X is Kaplan's non-embedding count: token and position embeddings (and an untied head) are excluded. GPT-2
    # and OPT learn their position embeddings; both counts that feed X must agree on them.
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=97, n_positions=64, n_embd=16, n_layer=2, n_head=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    counts = model_parameter_counts(model)
    assert counts.embedding == embeddings and counts.non_embedding == total - embeddings
    _, info = prepare_model(model, MethodConfig(method="fmt"))
    assert info.base_non_embedding == total - embeddings


def test_prompt_is_initialised_from_sampled_vocabulary_rows_and_seeded():
    base = tiny_model()
    vocabulary = base.get_input_embeddings().weight.detach().clone()
    model, _ = prepare_model(base, MethodConfig(method="prompt", prompt_length=8), seed=3)
    prompt = model.prompt_encoder["default"].embedding.weight.detach()
    for row in prompt:
        assert torch.isclose(vocabulary, row).all(dim=1).any()
    again, _ = prepare_model(tiny_model(), MethodConfig(method="prompt", prompt_length=8), seed=3)
    assert torch.equal(prompt, again.prompt_encoder["default"].embedding.weight.detach())


def test_lora_starts_at_the_base_model():
    base = tiny_model()
    ids = torch.tensor([[1, 5, 9, 12, 2]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
    model, _ = prepare_model(base, MethodConfig(method="lora"))
    with torch.no_grad():
        after = model(input_ids=ids).logits
    torch.testing.assert_close(before, after)


def test_merged_lora_scores_like_the_adapters_and_restores_the_base_weights_exactly():
    from ftscale.finetune.evaluate import target_loss

    model, _ = prepare_model(tiny_model(seed=2), MethodConfig(method="lora", lora_rank=4))
    with torch.no_grad():  # B = 0 at init would make merging a no-op: give the adapters a real update
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    examples, _ = copy_task(8, 3)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = target_loss(model, examples).loss
    with merged_lora(model):
        merged = target_loss(model, examples).loss
        changed = [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
    assert (
        merged == pytest.approx(adapters, rel=1e-5)
        and merged != target_loss(tiny_model(seed=2), examples).loss
    )
    assert len(changed) == 7 * model.config.num_hidden_layers  # every adapted projection was folded in
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name  # bit for bit, not just up to rounding
    assert target_loss(model, examples).loss == pytest.approx(adapters, rel=1e-6)
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


def test_merged_lora_leaves_other_methods_alone():
    for method in ("fmt", "prompt"):
        model, _ = prepare_model(tiny_model(), MethodConfig(method=method, prompt_length=4))
        before = [p.detach().clone() for p in model.parameters()]
        with merged_lora(model):
            pass
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_defaults_follow_the_papers_ratios():
    assert PromptParams().lr > LoraParams().lr > FmtParams().lr
    config = MethodConfig(method="lora")
    assert (
        config.learning_rate == LoraParams().lr and config.lora_rank == 4 and config.lora_alpha == LORA_ALPHA
    )
    assert MethodConfig(method="prompt", learning_rate=0.5).learning_rate == 0.5
    assert (
        MethodConfig(method="prompt").pet_size == PromptParams().prompt_length
        and MethodConfig().pet_size is None
    )


@pytest.mark.parametrize("method", METHODS)
def test_one_set_of_method_defaults_for_the_library_the_spec_and_a_job(method):
    """The defaults live in ftscale.finetune.params only: the library's configs, a spec that names a method
    without values, and the job built from that spec's JSON all train with the same hyperparameters."""
    spec = parse_spec(
        {
            "name": "t",
            "task": {"name": "synthetic-en-de", "train_pool": 100},
            "tokenizer": {"vocab_size": 256},
            "family": {"pretrain": {"sizes": ["xs", "s"], "total_tokens": 1000}},
            "methods": {method: {}},
            "factors": {"model_size": ["xs", "s"], "ft_sizes": {method: [10, 20]}},
        }
    )
    from_spec = spec.methods.enabled()[method]
    assert from_spec == PARAMS_OF_METHOD[method]()
    job_side = method_params(method, from_spec.model_dump(mode="json"))
    assert job_side == from_spec
    library = FinetuneConfig(method=MethodConfig(method=method))
    assert FinetuneConfig.from_params(job_side) == library
    assert library.max_steps == from_spec.max_steps and library.eval_every == from_spec.eval_every
    assert library.method.batch_size == from_spec.batch_size and library.method.learning_rate == from_spec.lr


def test_method_params_refuse_unknown_methods_and_fields():
    with pytest.raises(ValueError, match="unknown finetuning method"):
        method_params("adapter", {})
    with pytest.raises(ValueError, match="lora_rank"):
        method_params("prompt", {"lora_rank": 2})


def test_unknown_lora_targets_are_a_user_error():
    with pytest.raises(UserError, match="lora_target_modules"):
        prepare_model(tiny_model(), MethodConfig(method="lora", lora_target_modules=("c_attn",)))


def test_lr_sweep_scores_each_rate_and_marks_divergence():
    train, _ = copy_task(32, 0)
    dev, _ = copy_task(8, 1)
    result = lr_sweep(tiny_model, "fmt", train, dev, [1e-3, math.inf], steps=4, device="cpu")
    assert set(result) == {1e-3, math.inf}
    assert math.isfinite(result[1e-3]) and result[math.inf] == math.inf
