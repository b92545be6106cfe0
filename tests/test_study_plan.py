"""Plan expansion: stable job ids, deduplication of runs shared by several sweeps, counts per factor."""

from __future__ import annotations

import copy

from conftest import REPO_ROOT
from ftscale.study.plan import build_plan
from ftscale.study.spec import load_spec, parse_spec
from test_study_spec import BASE


def test_same_spec_gives_same_ids() -> None:
    first = build_plan(parse_spec(copy.deepcopy(BASE)))
    second = build_plan(parse_spec(copy.deepcopy(BASE)))
    assert [j.id for j in first.jobs] == [j.id for j in second.jobs]
    assert len(set(first.by_id)) == len(first.jobs)


def test_changing_a_method_lr_changes_only_that_methods_runs() -> None:
    before = build_plan(parse_spec(copy.deepcopy(BASE)))
    changed = copy.deepcopy(BASE)
    changed["methods"]["lora"]["lr"] = 5e-3
    after = build_plan(parse_spec(changed))
    old_ids, new_ids = set(before.by_id), set(after.by_id)
    gone = [before.by_id[i] for i in old_ids - new_ids]
    assert gone and all(job.kind == "finetune" and job.axes["method"] == "lora" for job in gone)
    assert len(old_ids - new_ids) == len(new_ids - old_ids)
    lora_runs = [job for job in before.jobs if job.axes.get("method") == "lora"]
    assert len(gone) == len(lora_runs)


def test_changing_the_tokenizer_changes_everything_downstream() -> None:
    before = build_plan(parse_spec(copy.deepcopy(BASE)))
    changed = copy.deepcopy(BASE)
    changed["tokenizer"]["vocab_size"] = 512
    after = build_plan(parse_spec(changed))
    assert not set(before.by_id) & set(after.by_id)


def test_execution_settings_do_not_change_ids() -> None:
    changed = copy.deepcopy(BASE)
    changed["execution"] = {"threads": 7}
    assert set(build_plan(parse_spec(changed)).by_id) == set(
        build_plan(parse_spec(copy.deepcopy(BASE))).by_id
    )


def test_pretraining_comes_first_and_is_shared() -> None:
    plan = build_plan(parse_spec(copy.deepcopy(BASE)))
    position = {job.id: i for i, job in enumerate(plan.jobs)}
    for job in plan.jobs:
        assert all(position[dep] < position[job.id] for dep in job.deps)
    pretrain = [job for job in plan.jobs if job.kind == "pretrain"]
    assert sorted(job.axes["model_size"] for job in pretrain) == ["m", "s", "xs"]
    base = next(job for job in pretrain if job.axes["model_size"] == "xs")
    assert base.params["checkpoint_tokens"] == [250, 500]  # the full budget is the final checkpoint
    users = [job for job in plan.jobs if base.id in job.deps]
    # every xs finetuning run: model size (3 methods) + 2 intermediate budgets + PET sweeps, deduplicated
    assert len(users) == len({j.id for j in users})


def test_shared_runs_are_one_job_in_several_factors() -> None:
    plan = build_plan(parse_spec(copy.deepcopy(BASE)))
    base_default_lora = [
        job
        for job in plan.jobs
        if job.kind == "finetune"
        and job.axes["model_size"] == "xs"
        and job.axes["method"] == "lora"
        and job.axes["pet_size"] == 4
        and job.axes["checkpoint_kind"] == "final"
    ]
    assert len(base_default_lora) == 3 * 2  # ft sizes × seeds, each once
    for job in base_default_lora:
        assert set(job.factors) == {"model_size", "pretrain_tokens", "lora_rank"}
    heldout_largest = [job for job in base_default_lora if job.axes["ft_examples"] == 40]
    assert all(all(job.factors.values()) for job in heldout_largest)


def test_tiny_preset_counts() -> None:
    spec = load_spec(REPO_ROOT / "configs" / "tiny.yaml")
    plan = build_plan(spec)
    counts = plan.counts()
    f = spec.factors
    n_d = {m: len(v) for m, v in f.ft_sizes.items()}
    n_sizes, n_budgets = len(f.model_size), len(f.pretrain_tokens.budgets)
    n_methods = len(spec.methods.enabled())
    # every factor has one value shared with another sweep (base model, full pretraining, default PET size)
    shared_cells = (n_budgets > 0) * sum(n_d.values()) + n_d["prompt"] + n_d["lora"]
    expected = (
        sum(n_sizes * n for n in n_d.values())
        + sum(n_budgets * n for n in n_d.values())
        + len(f.prompt_length) * n_d["prompt"]
        + len(f.lora_rank) * n_d["lora"]
        - shared_cells
    ) * f.seeds
    assert counts["kinds"] == {
        "tokenizer": 1,
        "pretrain": len(spec.family.pretrain.sizes),
        # the un-finetuned base checkpoints (zero-shot is scored): every size, and the base model's budgets
        "baseline": n_sizes + n_budgets - 1,
        "finetune": expected,
    }
    assert counts["factors"][("model_size", "fmt")]["runs"] == n_sizes * n_d["fmt"] * f.seeds
    assert counts["factors"][("pretrain_tokens", "lora")]["runs"] == n_budgets * n_d["lora"] * f.seeds
    assert (
        counts["factors"][("prompt_length", "prompt")]["runs"]
        == len(f.prompt_length) * n_d["prompt"] * f.seeds
    )
    # the base model's full-pretraining runs at default PET size: one job per (method, D_f, seed) in 2-3 factors
    assert counts["shared"] == sum(n_d.values()) * f.seeds
    assert n_methods == 3 and min(n_sizes, n_budgets, len(f.prompt_length), len(f.lora_rank)) >= 4


def test_checkpoint_kind_both_doubles_intermediate_budgets_only() -> None:
    spec = copy.deepcopy(BASE)
    spec["family"]["pretrain"]["annealed"] = True
    spec["factors"]["pretrain_tokens"]["checkpoint_kind"] = "both"
    plan = build_plan(parse_spec(spec))
    runs = [job for job in plan.jobs if "pretrain_tokens" in job.factors and job.axes["method"] == "fmt"]
    kinds = sorted({(job.axes["pretrain_tokens"], job.axes["checkpoint_kind"]) for job in runs})
    assert kinds == [
        (250, "annealed"),
        (250, "intermediate"),
        (500, "annealed"),
        (500, "intermediate"),
        (1000, "final"),
    ]
