"""Pretraining: checkpoints at budgets, reload, determinism, resume equivalence, divergence, annealing."""

from __future__ import annotations

import errno
import itertools
import json
import random
import shutil
import types

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from ftscale.data.tokenizer import tokenizer_hash
from ftscale.errors import DataError, SpecError, UserError
from ftscale.models.family import ModelSpec, build_model, load_base_model, parameter_counts
from ftscale.models.pretrain import (
    CheckpointWriteError,
    PretrainConfig,
    StepInfo,
    TrainingDiverged,
    _atomic_torch_save,
    list_checkpoints,
    lr_multiplier,
    pretrain,
)

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "river",
    "house",
    "green",
    "blue",
    "runs",
    "quickly",
    "slowly",
    "under",
    "over",
    "big",
    "small",
]


def make_texts(n_docs: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + "." for _ in range(n_docs)]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<sep>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(make_texts(200), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", sep_token="<sep>"
    )


TINY = ModelSpec(name="tiny", n_layers=2, n_heads=2, head_dim=8, d_model=16, d_ff=64, vocab_size=320,
                 max_seq_len=32)  # fmt: skip


def config(**overrides) -> PretrainConfig:
    base = dict(model=TINY, total_tokens=4 * 2 * 32, batch_size=2, seq_len=32, lr=1e-2, warmup_fraction=0.25,
                checkpoint_tokens=[2 * 2 * 32], device="cpu", log_every=1, eval_sequences=4)  # fmt: skip
    return PretrainConfig(**{**base, **overrides})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_pretrain_writes_reloadable_checkpoints_with_metadata(tokenizer, tmp_path):
    cfg = config()
    result = pretrain(
        cfg, tokenizer, make_texts(150), tmp_path, val_texts=make_texts(30, seed=9), progress=False
    )
    ckpts = list_checkpoints(tmp_path)
    assert [(c.budget_tokens, c.step, c.annealed) for c in ckpts] == [(128, 2, False), (256, 4, False)]
    assert result.checkpoints == ckpts and result.steps == 4 and result.tokens_seen == 256
    final = ckpts[-1]
    assert final.val_loss is not None and np.isfinite(final.val_loss)
    assert final.params == parameter_counts(TINY)
    meta = json.loads((final.path / "ftscale_meta.json").read_text())
    assert meta["tokenizer_hash"] == tokenizer_hash(tokenizer)
    assert meta["config"]["total_tokens"] == 256 and meta["tokens_seen"] == 256
    # training lowered the loss from its initial value ln(V) ≈ 5.8
    assert final.train_loss < np.log(320)

    reloaded = LlamaForCausalLM.from_pretrained(final.path)
    model, tok, counts = load_base_model(final.path)
    assert counts == parameter_counts(TINY) and len(tok) == len(tokenizer)
    x = torch.tensor([tokenizer("the cat sat.")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(reloaded(x).logits, model(x).logits)
    # rerunning a finished run does no work and returns the same checkpoints
    again = pretrain(cfg, tokenizer, make_texts(150), tmp_path, progress=False)
    assert again.checkpoints == ckpts


def test_same_seed_same_losses_other_seed_differs(tokenizer, tmp_path):
    texts = make_texts(150)
    a = pretrain(config(), tokenizer, texts, tmp_path / "a", progress=False)
    b = pretrain(config(), tokenizer, texts, tmp_path / "b", progress=False)
    c = pretrain(config(seed=1), tokenizer, texts, tmp_path / "c", progress=False)
    losses = [[h["train_loss"] for h in r.history] for r in (a, b, c)]
    assert np.allclose(losses[0], losses[1], atol=1e-6, rtol=0)
    assert not np.allclose(losses[0], losses[2], atol=1e-6, rtol=0)


def test_interrupted_run_resumes_to_identical_weights(tokenizer, tmp_path):
    texts = make_texts(300)
    cfg = config(total_tokens=6 * 2 * 32, checkpoint_tokens=[2 * 2 * 32, 4 * 2 * 32])
    pretrain(cfg, tokenizer, texts, tmp_path / "full", progress=False)

    def interrupt_after_step_3(info: StepInfo) -> None:
        if info.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tokenizer, texts, tmp_path / "cut", progress=False, on_step=interrupt_after_step_3)
    assert [c.step for c in list_checkpoints(tmp_path / "cut")] == [2]
    started = []
    pretrain(
        cfg, tokenizer, texts, tmp_path / "cut", progress=False, on_step=lambda i: started.append(i.step)
    )
    assert started[0] == 3  # resumed after the step-2 checkpoint, not from scratch
    full = LlamaForCausalLM.from_pretrained(tmp_path / "full" / "ckpt-384")
    resumed = LlamaForCausalLM.from_pretrained(tmp_path / "cut" / "ckpt-384")
    for (name, w_full), w_resumed in zip(weights(full).items(), weights(resumed).values(), strict=True):
        assert torch.equal(w_full, w_resumed), name


def interrupt_at(step: int):
    def interrupt(info: StepInfo) -> None:
        if info.step == step:
            raise KeyboardInterrupt

    return interrupt


def test_run_without_intermediate_budgets_resumes_from_a_periodic_state(tokenizer, tmp_path):
    texts, val_texts = make_texts(300), make_texts(30, seed=9)
    # 6 steps and one budget, the last; losses are checked at steps 3, 5 (eval) and 6, so the periodic state of
    # step 4 falls between sync points and must carry the unchecked loss of step 4
    cfg = config(total_tokens=6 * 2 * 32, checkpoint_tokens=[], log_every=3, eval_every=5)
    run = dict(val_texts=val_texts, progress=False, save_state_every_s=None, save_state_every_steps=2)
    full = pretrain(cfg, tokenizer, texts, tmp_path / "full", **run)

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tokenizer, texts, tmp_path / "cut", on_step=interrupt_at(5), **run)
    assert list_checkpoints(tmp_path / "cut") == []
    assert torch.load(tmp_path / "cut" / "resume.pt", weights_only=False)["step"] == 4
    executed = []
    resumed = pretrain(
        cfg, tokenizer, texts, tmp_path / "cut", on_step=lambda i: executed.append(i.step), **run
    )
    assert executed == [5, 6]  # continued from the periodic state of step 4, not from step 0

    assert resumed.history == full.history and resumed.final_train_loss == full.final_train_loss
    for name in ("train_log.jsonl", "ckpt-384/ftscale_meta.json"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "full" / name).read_text(), name
    w_full = weights(LlamaForCausalLM.from_pretrained(tmp_path / "full" / "ckpt-384"))
    w_resumed = weights(LlamaForCausalLM.from_pretrained(tmp_path / "cut" / "ckpt-384"))
    for name, w in w_full.items():
        assert torch.equal(w, w_resumed[name]), name

    # the wall-clock interval triggers saves too (here a tiny one: after every step)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tokenizer, texts, tmp_path / "timed", progress=False, on_step=interrupt_at(3),
                 save_state_every_s=1e-9)  # fmt: skip
    assert torch.load(tmp_path / "timed" / "resume.pt", weights_only=False)["step"] == 2


def test_failed_writes_and_stale_temps_leave_no_tmp_behind(tokenizer, tmp_path, monkeypatch):
    texts = make_texts(150)
    out = tmp_path / "run"
    # temps of a run that crashed (or hit a full disk) while writing; a foreign *.tmp is left alone
    (out / "ckpt-128.tmp").mkdir(parents=True)
    (out / "ckpt-128.tmp" / "model.safetensors").write_bytes(b"partial")
    (out / "resume.pt.tmp").write_bytes(b"partial")
    (out / "notes.tmp").write_text("not ours")

    def save_pretrained_on_full_disk(self, directory, *args, **kwargs):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedModel, "save_pretrained", save_pretrained_on_full_disk)
        with pytest.raises(
            CheckpointWriteError, match=r"ckpt-128: the disk is full \(No space left on device"
        ):
            pretrain(config(), tokenizer, texts, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.tmp"]
    assert issubclass(CheckpointWriteError, UserError)  # the study driver records the message as the reason

    # torch.save on a full disk raises a bare RuntimeError: the free space tells it apart
    def torch_save_on_full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", torch_save_on_full_disk)
        patch.setattr(
            shutil, "disk_usage", lambda path: types.SimpleNamespace(total=2**30, used=2**30, free=0)
        )
        with pytest.raises(CheckpointWriteError, match=r"resume\.pt: the disk is full \(\[enforce fail"):
            pretrain(config(), tokenizer, texts, tmp_path / "b", progress=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["ckpt-128"]  # whole, written before
    assert [c.step for c in list_checkpoints(tmp_path / "b")] == [2]

    # a failure that is not about the disk passes through unchanged, its temp removed all the same
    with pytest.raises(Exception, match="lambda") as caught:
        _atomic_torch_save({"unpicklable": lambda: 0}, tmp_path / "c.pt")
    assert not isinstance(caught.value, CheckpointWriteError)
    assert list(tmp_path.glob("c.pt*")) == []


def test_resume_refuses_a_different_config(tokenizer, tmp_path):
    texts = make_texts(150)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config(), tokenizer, texts, tmp_path, progress=False,
                 on_step=lambda i: (_ for _ in ()).throw(KeyboardInterrupt) if i.step == 3 else None)  # fmt: skip
    with pytest.raises(UserError, match="different config"):
        pretrain(config(lr=5e-3), tokenizer, texts, tmp_path, progress=False)
    (tmp_path / "resume.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=r"cannot read .*resume\.pt"):
        pretrain(config(), tokenizer, texts, tmp_path, progress=False)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tokenizer, tmp_path):
    def poison_after(step: int):
        def poison(info: StepInfo) -> None:
            if info.step == step:
                with torch.no_grad():
                    info.model.model.layers[0].mlp.up_proj.weight.fill_(float("nan"))

        return poison

    with pytest.raises(TrainingDiverged, match=r"diverged at step 4 .*ckpt-128"):
        pretrain(config(), tokenizer, make_texts(150), tmp_path, progress=False, on_step=poison_after(3))
    ckpts = list_checkpoints(tmp_path)
    assert [c.step for c in ckpts] == [2]
    model = LlamaForCausalLM.from_pretrained(ckpts[0].path)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # weights poisoned right before a checkpoint are caught before they are saved
    with pytest.raises(TrainingDiverged, match=r"step 2 \(non-finite weights\); no checkpoint"):
        pretrain(
            config(), tokenizer, make_texts(150), tmp_path / "b", progress=False, on_step=poison_after(2)
        )
    assert list_checkpoints(tmp_path / "b") == []
    assert issubclass(TrainingDiverged, UserError)


def test_annealed_checkpoints_decay_lr_and_count_extra_tokens(tokenizer, tmp_path):
    cfg = config(total_tokens=8 * 2 * 32, checkpoint_tokens=[4 * 2 * 32], anneal=True, anneal_fraction=0.5)
    pretrain(cfg, tokenizer, make_texts(300), tmp_path, val_texts=make_texts(30, seed=9), progress=False)
    ckpts = {(c.budget_tokens, c.annealed): c for c in list_checkpoints(tmp_path)}
    assert set(ckpts) == {(256, False), (256, True), (512, False)}  # the final one is already decayed
    annealed = ckpts[(256, True)]
    assert annealed.anneal_tokens == 2 * 2 * 32  # 50 % of 4 steps = 2 steps of 2 × 32 tokens
    assert annealed.tokens_seen == 256 + annealed.anneal_tokens and annealed.step == 4
    meta = json.loads((annealed.path / "ftscale_meta.json").read_text())
    assert meta["lr"] == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    assert annealed.val_loss is not None
    plain = LlamaForCausalLM.from_pretrained(ckpts[(256, False)].path)
    annealed_model = LlamaForCausalLM.from_pretrained(annealed.path)
    assert not torch.equal(plain.lm_head.weight, annealed_model.lm_head.weight)
    # annealing branches off a copy: the main run matches one trained without anneals
    pretrain(
        cfg.model_copy(update={"anneal": False}),
        tokenizer,
        make_texts(300),
        tmp_path / "plain",
        progress=False,
    )
    main = LlamaForCausalLM.from_pretrained(tmp_path / "ckpt-512")
    reference = LlamaForCausalLM.from_pretrained(tmp_path / "plain" / "ckpt-512")
    assert torch.equal(main.lm_head.weight, reference.lm_head.weight)


def test_token_array_input_and_too_little_data(tokenizer, tmp_path):
    ids = np.arange(4 * 2 * 32 + 1) % 300
    result = pretrain(config(checkpoint_tokens=[]), tokenizer, ids, tmp_path / "ok", progress=False)
    assert [c.budget_tokens for c in result.checkpoints] == [256]
    with pytest.raises(DataError, match="give more text"):
        pretrain(config(), tokenizer, make_texts(3), tmp_path / "short", progress=False)
    with pytest.raises(DataError, match="vocab_size"):
        pretrain(config(), tokenizer, ids + 10**6, tmp_path / "oov", progress=False)
    repeated = pretrain(
        config(allow_repeat=True), tokenizer, make_texts(20), tmp_path / "rep", progress=False
    )
    assert repeated.steps == 4


def test_config_validation_names_the_field():
    with pytest.raises(SpecError, match="checkpoint_tokens"):
        config(checkpoint_tokens=[10_000])
    with pytest.raises(SpecError, match="seq_len"):
        config(seq_len=64)
    with pytest.raises(ValueError, match="batch_size"):
        config(batch_size=0)
    assert config(batch_size=32).batch_size == 32  # micro-batches are not capped at 16 any more


def test_lr_schedule_warms_up_then_decays_to_min():
    lrs = [lr_multiplier(s, 100, 10, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[100] == pytest.approx(0.1)


def test_load_external_hf_directory(tmp_path, tokenizer):
    spec = TINY.model_copy(update={"tie_embeddings": False})
    build_model(spec, seed=3).save_pretrained(tmp_path / "ext")
    tokenizer.save_pretrained(tmp_path / "ext")
    _, tok, counts = load_base_model(tmp_path / "ext")
    assert counts == parameter_counts(spec) and counts.embedding == 2 * 320 * 16
    assert tok.eos_token == "</s>"
    with pytest.raises(UserError, match=r"no config\.json"):
        load_base_model(tmp_path)


def test_only_the_needed_head_of_the_stream_is_read(tokenizer, tmp_path):
    consumed = 0

    def stream():
        nonlocal consumed
        for text in itertools.cycle(make_texts(50)):
            consumed += 1
            yield text
            if consumed > 10_000:
                raise AssertionError("read far past the tokens the run needs")

    # 256 tokens are needed: documents are tokenised in batches of 512, so one batch is read (also with repeat),
    # not the whole (here endless) stream
    pretrain(config(allow_repeat=True), tokenizer, stream(), tmp_path, progress=False)
    assert consumed <= 512
