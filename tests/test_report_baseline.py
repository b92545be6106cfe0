"""The un-finetuned baselines in the report: "base" rows are never fitted, and each run's zero-/few-shot score is
compared with its own base checkpoint's (the paper's "Baseline", Figs. 6 and 11-14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ftscale.analysis import SyntheticStudy, analyse
from ftscale.analysis.findings import baseline_findings, vs_baseline_scores
from ftscale.report.tables import table_findings

# Few-shot change vs the base model per method: FMT loses, PET stays put (the paper's Figs. 11-14).
DROP = {"fmt": -4.0, "prompt": -0.2, "lora": 0.3}
BASE_SCORE = {"1-shot": 10.0, "5-shot": 14.0}


def with_shots(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Add fs1/fs5 BLEU to the runs and one "base" row per base checkpoint the runs use."""
    rng = np.random.default_rng(seed)
    runs = runs.copy()
    for k in (1, 5):
        base = BASE_SCORE[f"{k}-shot"]
        runs[f"fs{k}_bleu"] = [base + DROP[m] + rng.normal(0.0, 0.5) for m in runs["method"]]
    checkpoints = runs.drop_duplicates(["model_size", "pretrain_tokens", "checkpoint_kind"])
    base = checkpoints.assign(
        run_id="base-" + checkpoints["run_id"],
        method="base",
        status="done",
        in_model_size=False,
        in_pretrain_tokens=False,
        in_pet_size=False,
        pet_size=np.nan,
        ft_examples=np.nan,
        seed=np.nan,
        loss=9.0,  # far above every run: a fit that took these rows in would be off
        **{f"fs{k}_bleu": BASE_SCORE[f"{k}-shot"] for k in (1, 5)},
        **{c: 1.0 for c in runs.columns if c.startswith("zs_")},
    )
    return pd.concat([runs, base], ignore_index=True)


def test_each_run_is_compared_with_its_own_base_checkpoint() -> None:
    runs = pd.DataFrame(
        {
            "task": "t",
            "method": ["fmt", "fmt", "lora"],
            "status": ["done", "done", "failed"],
            "model_size": ["s", "m", "s"],
            "model_params": [1e6, 2e6, 1e6],
            "pretrain_tokens": [100, 100, 100],
            "checkpoint_kind": "final",
            "ft_examples": [10.0, 10.0, 10.0],
            "fs1_bleu": [5.0, 7.0, 9.0],
            "zs_fr-de_bleu": [2.0, 3.0, 1.0],
            "zs_cs-de_bleu": [4.0, np.nan, 1.0],  # a direction not scored: that run has no zero-shot mean
        }
    )
    base = pd.DataFrame(
        {
            "task": "t",
            "method": "base",
            "status": "done",
            "model_size": ["s", "m"],
            "model_params": [1e6, 2e6],
            "pretrain_tokens": [100.0, 100.0],
            "checkpoint_kind": "final",
            "ft_examples": np.nan,
            "fs1_bleu": [6.0, 6.0],
            "zs_fr-de_bleu": [1.0, 1.0],
            "zs_cs-de_bleu": [1.0, 1.0],
        }
    )
    table = vs_baseline_scores(pd.concat([runs, base], ignore_index=True)).sort_values(
        ["prompts", "model_size"]
    )
    assert table[["prompts", "model_size", "score", "baseline", "change"]].values.tolist() == [
        ["1-shot", "m", 7.0, 6.0, 1.0],
        ["1-shot", "s", 5.0, 6.0, -1.0],
        ["zero-shot", "s", 3.0, 1.0, 2.0],
    ]
    assert set(table["metric"]) == {"bleu"}
    assert vs_baseline_scores(runs).empty and not baseline_findings(
        vs_baseline_scores(runs), 0.95, np.random.default_rng(0)
    )


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return SyntheticStudy(
        model_params={"1B": 1e9, "2B": 2e9, "4B": 4e9, "8B": 8e9},
        pretrain_tokens=(84e9, 167e9, 283e9),
        pet_sizes={"prompt": (50, 100, 200), "lora": (4, 8, 16)},
        examples={"fmt": (1e5, 1e6, 4e6), "prompt": (8e3, 4e4, 1e5), "lora": (8e3, 4e4, 1e5)},
        seeds=2,
        noise=0.001,
    ).results(seed=1)


def fast(table: pd.DataFrame):
    return analyse(table, n_bootstrap=0, seed=0, compare_additive=False, single_factor=False, source="s")


def test_baselines_are_the_few_shot_reference_and_never_fitted(study: pd.DataFrame) -> None:
    with_base = with_shots(study)
    plain, analysis = fast(with_shots(study)[lambda f: f["method"] != "base"]), fast(with_base)
    pd.testing.assert_frame_equal(plain.fits, analysis.fits)  # the base rows' loss entered no fit
    assert plain.vs_baseline.empty and not [f for f in plain.findings if f.key.endswith("few_shot")]
    verdicts = {(f.key, f.scope): f.verdict for f in analysis.findings}
    for k in (1, 5):
        assert verdicts[("fmt_erodes_few_shot", f"FMT, {k}-shot bleu")] == "confirms"
        assert verdicts[("pet_keeps_few_shot", f"Prompt vs FMT, {k}-shot bleu")] == "confirms"
        assert verdicts[("pet_keeps_few_shot", f"LoRA vs FMT, {k}-shot bleu")] == "confirms"
    # every finished run is compared once per prompt set, with the change it was given
    done = study[study["status"] == "done"]
    shots = analysis.vs_baseline[analysis.vs_baseline["prompts"] == "1-shot"]
    assert len(shots) == len(done)
    means = shots.groupby("method")["change"].mean()
    for method, drop in DROP.items():
        assert means[method] == pytest.approx(drop, abs=0.2)
    # zero-shot against the base rows' score of 1.0: the synthetic runs score far above it
    zs = {f.scope: f.verdict for f in analysis.findings if f.key == "zero_shot_vs_base"}
    assert zs == {
        "FMT, zero-shot bleu": "confirms",
        "Prompt, zero-shot bleu": "confirms",
        "LoRA, zero-shot bleu": "confirms",
    }
    summary = analysis.to_dict()["vs_baseline"]
    assert {(r["method"], r["prompts"]) for r in summary} >= {("fmt", "1-shot"), ("lora", "5-shot")}
    assert "FMT degrades few-shot ability" in " ".join(
        table_findings(analysis, study["task"].iloc[0])["finding"]
    )


def test_fmt_that_keeps_few_shot_ability_is_refuted(study: pd.DataFrame) -> None:
    table = with_shots(study)
    gain = table["method"] == "fmt"
    table.loc[gain, "fs1_bleu"] = BASE_SCORE["1-shot"] + 3.0
    verdicts = {(f.key, f.scope): f.verdict for f in fast(table).findings}
    assert verdicts[("fmt_erodes_few_shot", "FMT, 1-shot bleu")] == "refutes"
    assert verdicts[("pet_keeps_few_shot", "LoRA vs FMT, 1-shot bleu")] == "refutes"
