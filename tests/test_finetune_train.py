"""The finetuning loop: loss mask, learning per method, best-checkpoint restore, early stop, divergence, seeds."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ftscale.errors import DataError
from ftscale.finetune.batches import (
    IGNORE_INDEX,
    bucketed_batches,
    collate,
    contiguous_head_input,
    target_nll_sum,
)
from ftscale.finetune.evaluate import target_loss
from ftscale.finetune.methods import MethodConfig, prepare_model
from ftscale.finetune.train import FinetuneConfig, finetune
from test_finetune_support import WORDS, copy_task, encode_pair, tiny_model


@pytest.fixture(scope="module")
def data():
    train, _ = copy_task(160, 0)
    dev, _ = copy_task(24, 1)
    return train, dev


def test_labels_cover_exactly_the_target_tokens():
    examples = [encode_pair("the cat sat", "the cat sat"), encode_pair("a dog", "a dog ran to")]
    batch = collate(examples, pad_id=0)
    for row, example in enumerate(examples):
        labelled = (batch.labels[row] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert labelled == list(range(example.target_start, len(example.input_ids)))
        assert tuple(batch.labels[row, labelled].tolist()) == example.target_ids
        assert batch.attention_mask[row].sum().item() == len(example.input_ids)
    assert batch.n_target_tokens == sum(e.n_target_tokens for e in examples)


@pytest.mark.parametrize("method", ["fmt", "lora", "prompt"])
def test_target_loss_matches_the_models_own_label_loss(method):
    model, _ = prepare_model(tiny_model(), MethodConfig(method=method, prompt_length=4))
    examples = [encode_pair("the cat sat on", "the cat"), encode_pair("a dog", "a dog ran to the house")]
    batch = collate(examples)
    with torch.no_grad():
        ours = target_nll_sum(model, batch) / batch.n_target_tokens
        # Hugging Face's loss over full logits with the same labels: our logits_to_keep shortcut must agree.
        reference = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
        ).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["fmt", "lora", "prompt"])
def test_contiguous_head_input_changes_speed_not_results(method):
    """The head sees a contiguous input inside the context (and a strided slice outside), with identical loss and
    gradients, and the hook is gone afterwards."""
    model, _ = prepare_model(tiny_model(), MethodConfig(method=method, prompt_length=4))
    model.train()
    examples = [encode_pair("the cat sat on the", "the cat"), encode_pair("a dog", "a dog ran to the house")]
    batch = collate(examples)
    head = model.get_output_embeddings()
    seen: list[bool] = []

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        # registered last, so the spy sees what the head itself will get
        spy = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
        model.zero_grad()
        loss = target_nll_sum(model, batch)
        loss.backward()
        spy.remove()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain_loss, plain_grads = loss_and_grads()
    with contiguous_head_input(model):
        fast_loss, fast_grads = loss_and_grads()
    after_loss, _ = loss_and_grads()
    # the kept slice is strided; the context hands over a contiguous copy; after it the hook is gone again
    assert seen == [False, True, False]
    assert torch.equal(plain_loss, fast_loss) and torch.equal(plain_loss, after_loss)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, fast_grads, strict=True))


def test_buckets_hold_every_example_once_with_little_padding(data):
    train, _ = data
    batches = bucketed_batches(train, 8, torch.Generator().manual_seed(0))
    assert sum(b.input_ids.shape[0] for b in batches) == len(train)
    padded = sum(b.input_ids.numel() for b in batches)
    assert padded < 1.15 * sum(len(e.input_ids) for e in train)


@pytest.mark.parametrize("method", ["fmt", "lora", "prompt"])
def test_twenty_steps_lower_the_dev_loss(method, data):
    train, dev = data
    method_config = MethodConfig(method=method, prompt_length=4)
    model, info = prepare_model(tiny_model(), method_config)
    result = finetune(
        model,
        train,
        dev,
        FinetuneConfig(method=method_config, max_steps=20, eval_every=10, device="cpu"),
        False,
    )
    assert result.status == "done" and result.steps_run == 20
    assert result.trainable_params == info.trainable
    start_loss, final_best = result.history[0][2], result.best_dev_loss
    assert final_best < start_loss - 0.02
    assert result.train_tokens > 0 and result.tokens_per_s > 0
    assert [row[0] for row in result.history] == [0, 10, 20]


def test_eval_every_epochs_evaluates_small_data_more_often(data):
    """A fixed cadence in steps at large D_f, at least once per ``eval_every_epochs`` at small D_f."""
    from ftscale.finetune.params import eval_cadence

    assert eval_cadence(1600, 16, 25, 1.0) == 25 and eval_cadence(200, 16, 25, 1.0) == 13
    assert eval_cadence(50, 16, 25, 1.0) == 4 and eval_cadence(50, 16, 25, 0.1) == 1
    assert eval_cadence(50, 16, 25, None) == 25
    train, dev = data
    method = MethodConfig(method="fmt")
    model, _ = prepare_model(tiny_model(), method)
    per_epoch = -(-len(train) // method.batch_size)
    config = FinetuneConfig(
        method=method,
        max_steps=3 * per_epoch,
        eval_every=100,
        eval_every_epochs=1.0,
        patience=None,
        device="cpu",
    )
    result = finetune(model, train, dev, config, progress=False)
    assert [row[0] for row in result.history] == [0, per_epoch, 2 * per_epoch, 3 * per_epoch]


def _reverse_task(n: int, seed: int) -> list:
    """Targets are the source words in reverse order: early steps learn the format and vocabulary, which helps
    on the copy task too; later steps learn to reverse, which hurts on it."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        words = [rng.choice(WORDS[:16]) for _ in range(rng.randint(2, 6))]
        examples.append(encode_pair(" ".join(words), " ".join(reversed(words))))
    return examples


def test_best_checkpoint_is_restored(data):
    _, dev = data
    # Trained on reversal, scored on copying: the dev loss falls, then rises (best at step 6 of 16 here, 0.03
    # nats below the last evaluation), so the best evaluation is not the last.
    train = _reverse_task(160, 0)
    method = MethodConfig(method="fmt", learning_rate=0.03)
    model, _ = prepare_model(tiny_model(), method)
    config = FinetuneConfig(method=method, max_steps=16, eval_every=2, patience=None, device="cpu")
    result = finetune(model, train, dev, config, progress=False)
    dev_losses = [row[2] for row in result.history]
    assert result.best_dev_loss == min(dev_losses)
    assert (
        result.history[[row[0] for row in result.history].index(result.best_step)][2] == result.best_dev_loss
    )
    assert result.best_step != result.steps_run, (
        "the schedule did not produce a non-final best; adjust the test"
    )
    assert target_loss(model, dev, 64).loss == pytest.approx(result.best_dev_loss, rel=1e-5)


def test_patience_stops_when_the_dev_loss_stalls(data):
    train, dev = data
    method = MethodConfig(method="lora", learning_rate=1e-12)
    model, _ = prepare_model(tiny_model(), method)
    config = FinetuneConfig(method=method, max_steps=100, eval_every=3, patience=2, device="cpu")
    result = finetune(model, train, dev, config, progress=False)
    assert result.status == "done" and result.stopped_early
    assert result.steps_run == 6 and result.best_step in (0, 3)


def test_divergence_is_a_status_not_an_exception(data):
    train, dev = data
    method = MethodConfig(method="fmt", learning_rate=math.inf)
    model, _ = prepare_model(tiny_model(), method)
    config = FinetuneConfig(method=method, max_steps=30, eval_every=10, device="cpu")
    result = finetune(model, train, dev, config, progress=False)
    # Step 1 computes a finite loss, its update puts inf into the weights, so step 2's loss is the first NaN.
    assert result.status == "failed: diverged at step 2"
    assert result.best_step == 0 and result.steps_run == 10
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_max_epochs_bounds_the_steps(data):
    train, dev = data
    method = MethodConfig(method="lora", batch_size=40)
    model, _ = prepare_model(tiny_model(), method)
    config = FinetuneConfig(method=method, max_steps=1000, max_epochs=1.5, eval_every=100, device="cpu")
    result = finetune(model, train, dev, config, progress=False)
    assert result.steps_run == 6  # 160 examples / 40 = 4 batches per epoch


def test_same_seed_same_run_other_seed_other_run(data):
    train, dev = data

    def run(seed):
        method = MethodConfig(method="lora", lora_dropout=0.1)
        model, _ = prepare_model(tiny_model(), method, seed=seed)
        config = FinetuneConfig(method=method, max_steps=6, eval_every=3, device="cpu", seed=seed)
        result = finetune(model, train, dev, config, progress=False)
        return result.history, [p.detach().clone() for p in model.parameters() if p.requires_grad]

    history_a, weights_a = run(0)
    history_b, weights_b = run(0)
    history_c, _ = run(1)
    assert history_a == history_b
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))
    assert history_a != history_c


def test_empty_sets_are_data_errors(data):
    train, dev = data
    model = tiny_model()
    with pytest.raises(DataError, match="empty training set"):
        finetune(model, [], dev, FinetuneConfig(device="cpu"), progress=False)
    with pytest.raises(DataError, match="empty dev set"):
        finetune(model, train, [], FinetuneConfig(device="cpu"), progress=False)
