"""The real-data presets (``small*.yaml``) plan the paper's full design, generation is limited to the first seeds,
and the shared pretraining corpus mixes its languages evenly."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from ftscale.data.corpus import balanced, pretraining_texts
from ftscale.study.plan import build_plan
from ftscale.study.spec import load_spec, parse_spec
from test_study_spec import BASE

SMALL_PRESETS = ("small", "small-en-zh", "small-sum")


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_small_presets_cover_the_full_design(name: str) -> None:
    spec = load_spec(REPO_ROOT / "configs" / f"{name}.yaml")
    f = spec.factors
    # the reproduction's minimum: >= 5 sizes, >= 5 checkpoints of both kinds, >= 5 PET sizes, >= 6 D_f, 3 seeds
    assert len(f.model_size) >= 5
    assert len(f.pretrain_tokens.budgets) >= 5 and f.pretrain_tokens.checkpoint_kind == "both"
    assert len(f.prompt_length) >= 5 and len(f.lora_rank) >= 5
    assert all(len(sizes) >= 6 for sizes in f.ft_sizes.values()) and set(f.ft_sizes) == {
        "fmt",
        "prompt",
        "lora",
    }
    assert f.seeds == 3
    assert spec.family.pretrain.corpus == "shared"
    plan = build_plan(spec)
    runs = [job for job in plan.jobs if job.kind == "finetune"]
    generating = [job for job in runs if job.params["evaluation"]["generation"]]
    # generation metrics on seed 0 of every cell, the loss on every run
    assert {job.axes["seed"] for job in generating} == {0}
    assert len(generating) * f.seeds == len(runs)
    cells = {
        (job.axes["method"], job.axes["model_size"], job.axes["pretrain_tokens"], job.axes["checkpoint_kind"])
        for job in runs
    }
    intermediate = {c for c in cells if c[3] == "intermediate"}
    annealed = {c for c in cells if c[3] == "annealed"}
    assert len(intermediate) == len(annealed) == 3 * (len(f.pretrain_tokens.budgets) - 1)


def test_tasks_of_the_same_languages_share_one_base_family() -> None:
    """small (Multi30k En->De) and small-sum (Klexikon De, plus English in the shared corpus) read the same
    corpus, so their tokenizer and pretraining jobs are the same jobs (one family in the cache); En->Zh's is not."""

    def family_ids(name: str) -> set[str]:
        plan = build_plan(load_spec(REPO_ROOT / "configs" / f"{name}.yaml"))
        return {job.id for job in plan.jobs if job.kind in ("tokenizer", "pretrain")}

    assert family_ids("small") == family_ids("small-sum")
    assert len(family_ids("small")) == 6 and not family_ids("small") & family_ids("small-en-zh")


def test_generation_seeds_limits_generation_and_keeps_other_ids() -> None:
    plain = build_plan(parse_spec(copy.deepcopy(BASE)))
    limited_spec = copy.deepcopy(BASE)
    limited_spec["evaluation"] = {"generation_seeds": 1, "zero_shot": ["fr-de"], "few_shot": [1]}
    limited = build_plan(parse_spec(limited_spec))
    assert len(plain.jobs) == len(limited.jobs)
    for job in limited.jobs:
        if job.kind != "finetune":
            continue
        evaluation = job.params["evaluation"]
        if job.axes["seed"] == 0:
            assert (
                evaluation["generation"]
                and evaluation["zero_shot"] == ["fr-de"]
                and evaluation["few_shot"] == [1]
            )
        else:
            assert (
                not evaluation["generation"]
                and evaluation["zero_shot"] == []
                and evaluation["few_shot"] == []
            )
        assert "generation_seeds" not in evaluation
    # a spec without the option plans exactly the ids it planned before the option existed
    explicit = copy.deepcopy(BASE)
    explicit["evaluation"] = {"generation_seeds": None}
    assert [j.id for j in build_plan(parse_spec(explicit)).jobs] == [j.id for j in plain.jobs]


def test_balanced_mix_takes_the_language_with_fewest_characters() -> None:
    docs = {"de": ["a" * 100, "b" * 100], "en": ["x" * 10] * 30}
    tagged = list(balanced(docs))
    assert {name for name, _ in tagged} == {"de", "en"}
    out = [doc for _, doc in tagged]
    assert sorted(out) == sorted(docs["de"] + docs["en"])
    # after the first long German document, English catches up before German goes on
    assert out[0] == "a" * 100 and out[1:11] == ["x" * 10] * 10 and out[11] == "b" * 100
    emitted = {"de": 0, "en": 0}
    for doc in out[:21]:
        emitted["de" if doc[0] in "ab" else "en"] += len(doc)
    assert abs(emitted["de"] - emitted["en"]) <= 100


@pytest.mark.shared_data
def test_shared_corpus_mixes_both_languages_from_the_start(shared_data: Path) -> None:
    task = {"name": "multi30k-en-de", "data_dir": str(shared_data), "options": {}}
    head = list(itertools.islice(pretraining_texts(task, "shared"), 200))
    german = sum(len(d) for d in head if any(w in d for w in (" der ", " die ", " und ")))
    total = sum(len(d) for d in head)
    assert 0.3 < german / total < 0.7
    # every (language, source) stream gets its share: Multi30k's German is not drowned by Wikipedia articles
    from ftscale.data.datasets import pretraining_corpus

    corpus = pretraining_corpus(shared_data, langs=["de", "en"], seed=0)
    assert set(corpus.by_source["de"]) == {"klexikon-wiki", "multi30k", "eltec"}
    for lang, docs in corpus.documents.items():
        assert sorted(d for group in corpus.by_source[lang].values() for d in group) == sorted(docs)
    captions = set(corpus.by_source["de"]["multi30k"])
    in_domain = sum(len(d) for d in head if d in captions)
    assert in_domain / total > 0.15


def test_pretraining_mix_counts_what_the_run_reads() -> None:
    from ftscale.data.corpus import pretraining_mix
    from ftscale.data.tokenizer import train_tokenizer

    task = {"name": "synthetic-en-de", "options": {"n_train": 200, "pretraining_tokens": 60_000}}
    texts = list(itertools.islice(pretraining_texts(task, None), 200))
    tokenizer = train_tokenizer(texts, vocab_size=300)
    rows = pretraining_mix(task, None, tokenizer, total_tokens=5_000, seq_len=64)
    assert [row["stream"] for row in rows] == ["de", "en"]
    assert sum(row["share"] for row in rows) == pytest.approx(1.0)
    read = sum(row["tokens"] for row in rows)
    assert read >= 5_000 and all(row["documents"] > 0 and row["characters"] > 0 for row in rows)
    # the round-robin of the task's own text: both languages have (nearly) the same number of documents
    assert abs(rows[0]["documents"] - rows[1]["documents"]) <= 1
    # a short run reads part of each stream once; epochs count the whole stream's text
    assert all(0 < row["epochs"] < 1 and row["available_tokens"] > row["tokens"] for row in rows)
    for row in rows:
        assert row["epochs"] == pytest.approx(row["tokens"] / row["available_tokens"])
    # a run longer than the corpus repeats all of it: every stream the same number of times
    available = sum(row["available_tokens"] for row in rows)
    long = pretraining_mix(task, None, tokenizer, total_tokens=6 * available, seq_len=64)
    assert all(row["tokens"] == row["available_tokens"] for row in long)
    needed = (6 * available // 64) * 64 + 1
    assert [row["epochs"] for row in long] == pytest.approx([needed / available] * 2)


def test_mix_command_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    from conftest import cli_env
    from ftscale.study.store import Store
    from test_study_baseline_plan import HF

    preset = str(REPO_ROOT / "configs" / "small.yaml")
    (tmp_path / "hf.yaml").write_text(yaml.safe_dump(HF))
    Store.prepare(tmp_path / "fresh", load_spec(preset)).close()  # planned, nothing run
    cases = [
        ((preset, "--dir", str(tmp_path / "absent")), "not a study directory"),
        ((str(tmp_path / "hf.yaml"), "--dir", str(tmp_path / "absent")), "loaded from the hub"),
        ((preset, "--dir", str(tmp_path / "fresh")), "tokenizer job"),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "ftscale", "study", "mix", *args],
            capture_output=True,
            text=True,
            env=cli_env(),
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_plan_data_prints_the_split_sizes() -> None:
    import subprocess
    import sys

    from conftest import cli_env

    out = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "plan", "tiny", "--data"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("task "))
    assert line.startswith("task synthetic-en-de: train 2,000, dev 100, test 200, zero-shot fr-de")
