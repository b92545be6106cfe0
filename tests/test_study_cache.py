"""The family cache: a pretrained family built once, reused by a second study, safe under two studies at once,
listed and removed from the command line, and untouched by ``study reset``."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from ftscale.study.cache import entry_lock, list_entries, read_entry, run_cached
from ftscale.study.driver import reset_jobs, run_study
from ftscale.study.jobs import run_job
from ftscale.study.results import results_table
from ftscale.study.spec import parse_spec
from test_study_runner import MICRO


def _spec(cache: str) -> Any:
    raw = copy.deepcopy(MICRO)
    raw["family"]["pretrain"]["sizes"] = ["t1"]
    raw["methods"] = {"fmt": raw["methods"]["fmt"]}
    raw["factors"] = {"model_size": ["t1"], "ft_sizes": {"fmt": [8]}, "seeds": 1}
    raw["evaluation"] = {"generation": False, "zero_shot": [], "few_shot": []}
    raw["execution"]["family_cache"] = cache
    return parse_spec(raw, "cached.yaml")


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("cache")
    cache, study = root / "families", root / "first"
    summary = run_study(_spec(str(cache)), study, run_job, progress=False)
    assert summary.failed == 0, summary.failed_jobs
    assert summary.reused == 0
    return cache, study, summary


def test_family_jobs_live_in_the_cache_and_the_study_links_them(first: tuple[Path, Path, Any]) -> None:
    cache, study, _ = first
    entries = list_entries(cache)
    assert [(e.kind, e.complete) for e in entries] == [("tokenizer", True), ("pretrain", True)]
    for entry in entries:
        link = study / "jobs" / entry.name
        assert link.is_symlink() and link.resolve() == entry.path.resolve()
        assert read_entry(entry.path)["metrics"]  # the job's metrics, for a study that reuses it
    assert (entries[1].path / "ckpt-8192").is_dir()
    # the other jobs stay in the study directory
    assert not any(
        p.is_symlink() for p in (study / "jobs").iterdir() if not p.name.startswith(("tok", "pre"))
    )


def test_a_second_study_reuses_the_family(first: tuple[Path, Path, Any], tmp_path: Path) -> None:
    cache, study, summary = first
    second = tmp_path / "second"
    again = run_study(_spec(str(cache)), second, run_job, progress=False)
    assert again.failed == 0 and again.reused == 2
    assert again.executed == summary.executed - 2  # the tokenizer and the pretraining run did not run again
    a, b = results_table(study), results_table(second)
    assert list(b["loss"]) == list(a["loss"])  # same base model, same seed: the same finetuning result
    assert list(b["base_val_loss"]) == list(a["base_val_loss"])


def test_with_the_cache_off_jobs_stay_in_the_study(tmp_path: Path) -> None:
    summary = run_study(_spec("off"), tmp_path / "study", run_job, progress=False)
    assert summary.failed == 0 and summary.cache is None
    assert not any(p.is_symlink() for p in (tmp_path / "study" / "jobs").iterdir())


def test_a_study_waits_for_another_building_the_same_entry(tmp_path: Path) -> None:
    entry = tmp_path / "pretrain-0123456789abcdef"
    entry.mkdir()
    calls: list[str] = []
    result: dict[str, Any] = {}

    def second_study() -> None:
        result["metrics"] = run_cached("pretrain", {}, entry, lambda: calls.append("ran") or {"x": 2})

    with entry_lock(entry):  # the first study holds the entry while it builds it
        waiter = threading.Thread(target=second_study)
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and "metrics" not in result  # blocked on the lock, not running the job
        (entry / "entry.json").write_text(json.dumps({"metrics": {"x": 1}}))  # the first study finishes
    waiter.join(timeout=10)
    assert result["metrics"] == {"x": 1} and calls == []  # it took the finished entry and ran nothing


def test_cli_lists_and_removes_entries(first: tuple[Path, Path, Any], tmp_path: Path) -> None:
    cache, _, _ = first
    copy_root = tmp_path / "families"
    import shutil

    shutil.copytree(cache, copy_root)
    (copy_root / "pretrain-00000000deadbeef").mkdir()  # an interrupted build
    listed = run_cli("cache", "list", "--dir", str(copy_root), "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["entries"]
    assert sorted((e["kind"], e["complete"]) for e in entries) == [
        ("pretrain", False),
        ("pretrain", True),
        ("tokenizer", True),
    ]
    built = next(e for e in entries if e["kind"] == "pretrain" and e["complete"])
    assert built["description"] == "pretrain t1 · demo ladder · 8,192 tokens"
    text = run_cli("cache", "list", "--dir", str(copy_root))
    assert text.returncode == 0 and "partial" in text.stdout and "3 entries" in text.stdout

    with entry_lock(copy_root / "pretrain-00000000deadbeef"):  # a study is building it
        busy = run_cli("cache", "remove", "--dir", str(copy_root), "pretrain-00000000")
    assert busy.returncode == 2 and len(busy.stderr.strip().splitlines()) == 1 and "in use" in busy.stderr
    unknown = run_cli("cache", "remove", "--dir", str(copy_root), "nosuchentry")
    assert unknown.returncode == 2 and "no cache entry matches" in unknown.stderr
    removed = run_cli("cache", "remove", "--dir", str(copy_root), "--all")
    assert removed.returncode == 0, removed.stderr
    assert list_entries(copy_root) == []


def test_reset_unlinks_a_cached_job_and_the_rerun_reuses_it(tmp_path: Path) -> None:
    cache = tmp_path / "families"
    study = tmp_path / "study"
    assert run_study(_spec(str(cache)), study, run_job, progress=False).failed == 0
    reset = reset_jobs(study, ["pretrain t1"])
    assert {row["kind"] for row in reset} == {"pretrain", "finetune"}
    pretrain = next(e for e in list_entries(cache) if e.kind == "pretrain")
    assert pretrain.complete and not (study / "jobs" / pretrain.name).exists()
    again = run_study(_spec(str(cache)), study, run_job, progress=False)
    assert again.failed == 0 and again.reused == 1 and (study / "jobs" / pretrain.name).is_symlink()


def test_a_partial_entry_is_resumed_by_the_next_study(tmp_path: Path) -> None:
    cache = tmp_path / "families"
    assert run_study(_spec(str(cache)), tmp_path / "a", run_job, progress=False).failed == 0
    pretrain = next(e for e in list_entries(cache) if e.kind == "pretrain")
    (pretrain.path / "entry.json").unlink()  # as if the study building it had been killed before the end
    assert not next(e for e in list_entries(cache) if e.kind == "pretrain").complete
    again = run_study(_spec(str(cache)), tmp_path / "b", run_job, progress=False)
    assert again.failed == 0 and again.reused == 1  # the tokenizer; the pretraining job ran in its entry
    assert read_entry(pretrain.path) is not None and (pretrain.path / "ckpt-8192").is_dir()


def test_a_relative_cache_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Study directories link to entries; a relative link target would resolve from the link's own folder."""
    from ftscale.study.cache import cache_root

    monkeypatch.chdir(tmp_path)
    assert cache_root("families") == tmp_path.resolve() / "families"
    monkeypatch.setenv("FTSCALE_FAMILY_CACHE", "rel/cache")
    assert cache_root() == tmp_path.resolve() / "rel" / "cache"
    assert cache_root("off") is None
