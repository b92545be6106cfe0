"""The real job function end to end on a minute-sized study: tokenizer → pretraining → un-finetuned baselines →
FMT / prompt / LoRA runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ftscale.models.family import family, spec_parameter_counts
from ftscale.study import jobs
from ftscale.study.driver import run_study
from ftscale.study.executors import JobContext
from ftscale.study.jobs import run_job
from ftscale.study.plan import build_plan, job_dir_for
from ftscale.study.results import baseline_table, results_table
from ftscale.study.spec import parse_spec

MICRO = {
    "name": "micro",
    "task": {
        "name": "synthetic-en-de",
        "max_source_tokens": 32,
        "max_target_tokens": 32,
        "train_pool": 200,
        "options": {
            "n_dev": 20,
            "n_test": 24,
            "pretraining_tokens": 20000,
            "config": {"n_lemmas": 60, "max_clause_depth": 0},
        },
    },
    "tokenizer": {"vocab_size": 300},
    "family": {
        "pretrain": {
            "ladder": "demo",
            "sizes": ["t1", "t2"],
            "total_tokens": 8192,
            "seq_len": 32,
            "batch_size": 8,
            "lr": 3e-3,
        }
    },
    "methods": {
        "fmt": {"lr": 1e-3, "batch_size": 4, "max_steps": 4, "eval_every": 2, "patience": 2},
        "prompt": {
            "lr": 3e-2,
            "batch_size": 4,
            "max_steps": 4,
            "eval_every": 2,
            "patience": 2,
            "prompt_length": 2,
        },
        "lora": {"lr": 3e-3, "batch_size": 4, "max_steps": 4, "eval_every": 2, "patience": 2, "lora_rank": 2},
    },
    "factors": {
        "model_size": ["t1", "t2"],
        "pretrain_tokens": {"budgets": [4096, 8192]},
        "prompt_length": [2, 4],
        "lora_rank": [2, 4],
        "ft_sizes": {"fmt": [8, 16], "prompt": [8, 16], "lora": [8, 16]},
        "seeds": 1,
    },
    "evaluation": {
        "generation": True,
        "max_eval_examples": 4,
        "max_new_tokens": 8,
        "zero_shot": ["fr-de"],
        "few_shot": [1],
    },
    "execution": {"device": "cpu"},
}


# X of the model-size factor: the ladder's analytic non-embedding counts (they do not depend on the vocabulary)
NON_EMBEDDING = [spec_parameter_counts(family("demo")[size]).non_embedding for size in ("t1", "t2")]


@pytest.fixture(scope="module")
def micro_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study_dir = tmp_path_factory.mktemp("micro") / "study"
    summary = run_study(parse_spec(MICRO, "micro.yaml"), study_dir, run_job, progress=False)
    assert summary.failed == 0, summary.failed_jobs
    return study_dir


def test_every_job_runs_and_records_metrics(micro_study: Path) -> None:
    table = results_table(micro_study)
    # (2 sizes + 1 intermediate checkpoint) × 3 methods × 2 D_f, plus 1 extra prompt length and LoRA rank × 2 D_f
    assert len(table) == 22
    assert (table["status"] == "done").all()
    for column in ("loss", "ppl", "dev_loss", "bleu", "chrf", "rougeL", "zs_fr-de_bleu", "fs1_bleu"):
        assert table[column].notna().all(), column
    assert all(
        math.isclose(p, math.exp(loss), rel_tol=1e-6)
        for p, loss in zip(table["ppl"], table["loss"], strict=True)
    )
    # X of the model-size factor comes from the pretraining job's exact non-embedding count
    assert sorted(table["model_params"].unique()) == NON_EMBEDDING
    # PET parameters never enter X, and their trainable count grows with the PET size
    lora = (
        table[(table["method"] == "lora") & table["in_pet_size"]]
        .groupby("pet_size")["trainable_params"]
        .first()
    )
    assert lora.loc[4] == 2 * lora.loc[2]
    fmt = table[table["method"] == "fmt"]
    assert (fmt["trainable_params"] > fmt["model_params"]).all()


def test_checkpoints_and_factors(micro_study: Path) -> None:
    table = results_table(micro_study)
    pre = table[table["in_pretrain_tokens"]]
    assert sorted(pre["pretrain_tokens"].unique()) == [4096, 8192]
    assert set(pre["checkpoint_kind"]) == {"intermediate", "final"}
    assert table[table["in_pet_size"]]["method"].isin(["prompt", "lora"]).all()


def test_rerun_does_nothing(micro_study: Path) -> None:
    summary = run_study(parse_spec(MICRO, "micro.yaml"), micro_study, run_job, progress=False)
    assert summary.executed == 0 and summary.failed == 0


def test_baselines_are_scored_like_the_runs(micro_study: Path) -> None:
    runs = results_table(micro_study)
    base = baseline_table(micro_study)
    # one per base checkpoint: t1 and t2 fully pretrained, t1 at the intermediate budget
    assert len(base) == 3 and (base["status"] == "done").all() and (base["method"] == "base").all()
    assert sorted(zip(base["model_size"], base["pretrain_tokens"], base["checkpoint_kind"], strict=True)) == [
        ("t1", 4096, "intermediate"),
        ("t1", 8192, "final"),
        ("t2", 8192, "final"),
    ]
    for column in (
        "loss",
        "ppl",
        "dev_loss",
        "bleu",
        "chrf",
        "rougeL",
        "zs_fr-de_bleu",
        "fs1_bleu",
        "fs1_chrf",
    ):
        assert base[column].notna().all(), column
    assert (base["trainable_params"] == 0).all() and base["ft_examples"].isna().all()
    assert sorted(base["model_params"].unique()) == NON_EMBEDDING  # as the runs on the same bases
    # the same test set: loss over the same number of target tokens as every run on that tokenizer
    assert set(base["n_test_tokens"]) == set(runs["n_test_tokens"])
    # the base model of the study belongs to every factor; the smaller budget's checkpoint to pretraining only
    t1 = base.set_index(["model_size", "checkpoint_kind"])
    assert t1.loc[("t1", "final"), ["in_model_size", "in_pretrain_tokens", "in_pet_size"]].all()
    assert not t1.loc[("t1", "intermediate"), "in_model_size"]


def _in_process_context(plan, job, study_dir: Path, scratch: str) -> JobContext:
    """The context a job of the micro study gets when it is run here, on its done dependencies."""
    return JobContext(
        job_id=job.id,
        kind=job.kind,
        params=job.params,
        axes=job.axes,
        study_dir=study_dir,
        work_dir=study_dir / scratch,
        dep_dirs={dep: study_dir / "jobs" / job_dir_for(plan.by_id[dep].kind, dep) for dep in job.deps},
        device="cpu",
    )


def test_baseline_and_finetuning_run_score_identical_prompts(
    micro_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline's zero-shot and few-shot prompts are exactly those of the seed-0 runs on the same base."""
    plan = build_plan(parse_spec(MICRO, "micro.yaml"))
    baseline = next(
        job for job in plan.jobs if job.kind == "baseline" and job.label == "baseline t2@8192 final"
    )
    run = next(
        job
        for job in plan.jobs
        if job.kind == "finetune" and job.params["base"] == baseline.params["base"] and job.axes["seed"] == 0
    )
    seen = {}
    evaluate = jobs.evaluate_metrics

    def spy(model, tokenizer, sets, evaluation):
        seen[kind] = sets
        return evaluate(model, tokenizer, sets, evaluation)

    monkeypatch.setattr(jobs, "evaluate_metrics", spy)
    for job in (baseline, run):
        kind = job.kind
        metrics = run_job(_in_process_context(plan, job, micro_study, "scratch"))
        assert "fs1_bleu" in metrics and "zs_fr-de_bleu" in metrics
    a, b = seen["baseline"], seen["finetune"]
    assert a.refs == b.refs and [e.prompt_ids for e in a.test] == [e.prompt_ids for e in b.test]
    assert a.zero_shot == b.zero_shot and a.few_shot == b.few_shot and a.few_shot[1][0]
    # and the shots are real: they differ from the zero-shot prompt of the same test example
    assert a.few_shot[1][0][0] != a.test[0].prompt_ids


def test_a_finetuning_job_reports_its_progress(micro_study: Path) -> None:
    """Training jobs report the fraction of their step budget through ``JobContext.report_progress`` (the driver
    shows it for a job that runs in its own process)."""
    from ftscale.study.executors import set_progress_hook

    plan = build_plan(parse_spec(MICRO, "micro.yaml"))
    job = next(job for job in plan.jobs if job.kind == "finetune")
    ctx = _in_process_context(plan, job, micro_study, "scratch-progress")
    reports: list[tuple[str, float, str]] = []
    set_progress_hook(lambda job_id, fraction, message: reports.append((job_id, fraction, message)))
    try:
        metrics = run_job(ctx)
    finally:
        set_progress_hook(None)
    fractions = [fraction for _, fraction, _ in reports]
    assert reports and all(job_id == job.id for job_id, _, _ in reports)
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] <= 1.0
    assert len(reports) == metrics["steps_run"] and reports[-1][2].startswith(f"step {metrics['steps_run']}/")
