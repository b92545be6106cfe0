"""Baseline jobs in the plan (the un-finetuned base model of the zero-/few-shot comparison), and the guarantee
that adding them leaves every existing job id unchanged (a running study resumes with only the baselines added)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from ftscale.study.plan import BASELINE_METHOD, KINDS, build_plan
from ftscale.study.spec import parse_spec

# Frozen specs: their job ids were computed by the plan code before baseline jobs existed. Do not edit them; a
# new case gets its own frozen spec and digest.
OWN: dict[str, Any] = {
    "name": "frozen-own",
    "task": {"name": "synthetic-en-de", "train_pool": 500},
    "tokenizer": {"vocab_size": 256},
    "family": {"pretrain": {"sizes": ["xs", "s"], "total_tokens": 1000, "annealed": True}},
    "methods": {"fmt": {"lr": 1e-3}, "prompt": {"prompt_length": 4}, "lora": {"lora_rank": 4}},
    "factors": {
        "model_size": ["xs", "s"],
        "pretrain_tokens": {"budgets": [250, 500, 1000], "checkpoint_kind": "both"},
        "prompt_length": [2, 4],
        "lora_rank": [2, 4],
        "ft_sizes": {"fmt": [10, 20], "prompt": [10, 20], "lora": [10, 20]},
        "seeds": 2,
    },
    "evaluation": {"generation_seeds": 1, "zero_shot": ["fr-de"], "few_shot": [1, 5], "max_eval_examples": 8},
}
HF: dict[str, Any] = {
    "name": "frozen-hf",
    "task": {"name": "synthetic-en-de", "train_pool": 500},
    "family": {
        "hf": {
            "models": [
                {
                    "name": "a",
                    "id": "org/a",
                    "params": 1000,
                    "tokens": 5000,
                    "checkpoints": [{"revision": "step1", "tokens": 2500}],
                },
                {"name": "b", "id": "org/b", "params": 4000, "tokens": 5000},
            ]
        }
    },
    "methods": {"fmt": {"lr": 1e-3}, "lora": {"lora_rank": 4}},
    "factors": {
        "model_size": ["a", "b"],
        "pretrain_tokens": {"budgets": [2500, 5000]},
        "ft_sizes": {"fmt": [10, 20], "lora": [10]},
        "seeds": 1,
    },
}
# sha256 of the sorted ids (one per line) of the tokenizer, pretraining and finetuning jobs
FROZEN_DIGESTS = {
    "frozen-own": (83, "000e1cdf8f3eeaa3365da5fbb9d720efa8275e36b827a9f8cb51cc0600eeaf4f"),
    "frozen-hf": (9, "8c91006357c843a6b50f6f137cc5a349d61e083616aad6e2ea9621da1bee9fae"),
}
FROZEN_FINETUNE_IDS = {
    "frozen-own": {
        "fd41118aa7857e1754af48b2a73350c6d3b41a9a6603586402084eb1f918767e": "fmt xs@1000 n=10 seed=0",
        "fc10f1acace292ee2a939e903c0e8f6a9c7183f471abda724b823be650a44298": "lora xs@1000 pet=2 n=20 seed=1",
    },
    "frozen-hf": {
        "00524486588323ada7308322e8d034d6b0eb7c9fd9c3fef38165d5bd8dce8a2e": "fmt a@5000 n=10 seed=0",
        "c6f8271dc5e0c02fee1ea40009fc55e2510410fed1e3ff448ca3f6be23af32f6": "lora a@2500 pet=4 n=10 seed=0",
    },
}


def plan_of(raw: dict[str, Any]):
    return build_plan(parse_spec(copy.deepcopy(raw)))


@pytest.mark.parametrize("raw", [OWN, HF], ids=["own-family", "hf-family"])
def test_existing_job_ids_are_unchanged(raw: dict[str, Any]) -> None:
    plan = plan_of(raw)
    ids = sorted(job.id for job in plan.jobs if job.kind != "baseline")
    assert (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()) == FROZEN_DIGESTS[raw["name"]]
    for job_id, label in FROZEN_FINETUNE_IDS[raw["name"]].items():
        assert plan.by_id[job_id].kind == "finetune" and plan.by_id[job_id].label == label


def test_one_baseline_per_base_checkpoint() -> None:
    plan = plan_of(OWN)
    baselines = [job for job in plan.jobs if job.kind == "baseline"]
    finetune_bases = {
        tuple(sorted(job.params["base"].items())) for job in plan.jobs if job.kind == "finetune"
    }
    assert len(baselines) == len(finetune_bases) == 6  # 2 sizes final + 2 budgets × (intermediate, annealed)
    assert {tuple(sorted(job.params["base"].items())) for job in baselines} == finetune_bases
    pretrain = {job.axes["model_size"]: job.id for job in plan.jobs if job.kind == "pretrain"}
    finetune_tokenizer = next(job for job in plan.jobs if job.kind == "finetune").params["tokenizer"]
    for job in baselines:
        assert job.deps == (pretrain[job.axes["model_size"]],)
        assert job.axes["method"] == BASELINE_METHOD and job.axes["ft_examples"] is None
        # the seed-0 evaluation of the finetuning runs: same prompts, same shots
        assert job.params["evaluation"] == parse_spec(copy.deepcopy(OWN)).evaluation.for_seed(0)
        assert job.params["evaluation"]["few_shot"] == [1, 5]
        assert job.params["tokenizer"] == finetune_tokenizer and job.params["tokenizer"]["vocab_size"] == 256
    base_model = next(job for job in baselines if job.label == "baseline xs@1000 final")
    assert set(base_model.factors) == {"model_size", "pretrain_tokens", "prompt_length", "lora_rank"}
    # a held-out pretraining budget (the default: the second largest) marks its baselines held out
    assert {job.label for job in baselines if any(job.factors.values())} == {
        "baseline xs@500 intermediate",
        "baseline xs@500 annealed",
    }


def test_baselines_come_after_pretraining_and_before_finetuning() -> None:
    plan = plan_of(OWN)
    kinds = [job.kind for job in plan.jobs]
    assert kinds == sorted(kinds, key=KINDS.index)
    assert plan.counts()["kinds"] == {"tokenizer": 1, "pretrain": 2, "baseline": 6, "finetune": 80}
    # per-factor counts stay counts of finetuning runs
    assert all(method != BASELINE_METHOD for _, method in plan.counts()["factors"])


def test_hf_baselines_have_no_dependencies() -> None:
    plan = plan_of(HF)
    baselines = [job for job in plan.jobs if job.kind == "baseline"]
    assert sorted(job.label for job in baselines) == [
        "baseline a@2500 intermediate",
        "baseline a@5000 final",
        "baseline b@5000 final",
    ]
    assert all(job.deps == () and job.params["tokenizer"] is None for job in baselines)
    assert {job.axes["non_embedding_params"] for job in baselines} == {1000, 4000}


@pytest.mark.parametrize(
    "evaluation",
    [
        {"generation": False, "zero_shot": ["fr-de"], "few_shot": [1]},
        {"generation": True, "zero_shot": [], "few_shot": []},
    ],
    ids=["no-generation", "no-zero-or-few-shot"],
)
def test_no_baselines_unless_zero_or_few_shot_is_scored(evaluation: dict[str, Any]) -> None:
    raw = copy.deepcopy(OWN)
    raw["evaluation"] = evaluation
    assert not [job for job in plan_of(raw).jobs if job.kind == "baseline"]


def test_baselines_with_only_zero_shot() -> None:
    raw = copy.deepcopy(OWN)
    raw["evaluation"] = {"zero_shot": ["fr-de"], "few_shot": []}
    assert len([job for job in plan_of(raw).jobs if job.kind == "baseline"]) == 6
