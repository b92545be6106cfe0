"""Spec problems that used to surface late (after pretraining, or only at report time) are refused up front.

``study plan``, ``study plan --data`` and ``study run`` stop before any compute with one line that names the study
file, the YAML path and the fix: finetuning sizes larger than the task's training data, held-out values that leave
too little of a grid axis to fit, unknown ``task.options`` keys and zero-shot directions the task does not have.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli
from ftscale.errors import SpecError
from ftscale.study.spec import parse_spec
from test_study_bad_data import _write_multi30k as write_multi30k
from test_study_spec import BASE

TRAIN_LINES = 12


def _write_multi30k(root: Path, lines: int = TRAIN_LINES) -> Path:
    """A tiny Multi30k under ``root``; returns ``root`` (the task's data_dir)."""
    write_multi30k(root, lines)
    return root


def _data_spec(data_dir: Path, **task: Any) -> dict[str, Any]:
    return {
        "name": "preflight",
        "task": {"name": "multi30k-en-de", "data_dir": str(data_dir), **task},
        "family": {"pretrain": {"ladder": "demo", "sizes": ["t1", "t2"], "total_tokens": 1000}},
        "methods": {"fmt": {}},
        "factors": {"model_size": ["t1", "t2"], "ft_sizes": {"fmt": [4, 8]}, "seeds": 1},
    }


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


# ----- 1a: finetuning sizes larger than the training data -----------------------------------------------------


@pytest.mark.parametrize("command", ["run", "plan"])
def test_ft_size_larger_than_the_training_data_fails_before_any_compute(tmp_path: Path, command: str) -> None:
    data_dir = _write_multi30k(tmp_path / "data")
    spec = _data_spec(data_dir)
    spec["factors"]["ft_sizes"]["fmt"] = [4, 50]  # the train split has 12 examples, task.train_pool is unset
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    study_dir = tmp_path / "study"
    if command == "run":
        done = run_cli("study", "run", str(spec_file), "--dir", str(study_dir), "--no-progress")
    else:
        done = run_cli("study", "plan", str(spec_file), "--data")
    line = _one_line_error(done)
    assert str(spec_file) in line
    assert "factors.ft_sizes.fmt[1]" in line
    assert "50" in line and f"only {TRAIN_LINES} training examples" in line
    assert f"<= {TRAIN_LINES}" in line  # the fix
    assert not study_dir.exists()


def test_train_pool_larger_than_the_data_is_named(tmp_path: Path) -> None:
    data_dir = _write_multi30k(tmp_path / "data")
    spec = _data_spec(data_dir, train_pool=100)
    spec["factors"]["ft_sizes"]["fmt"] = [4, 50]  # <= train_pool, so the spec itself is fine
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    line = _one_line_error(run_cli("study", "plan", str(spec_file), "--data"))
    assert str(spec_file) in line and "factors.ft_sizes.fmt[1]" in line
    assert "task.train_pool (100)" in line


def test_few_shot_larger_than_the_training_data(tmp_path: Path) -> None:
    data_dir = _write_multi30k(tmp_path / "data")
    spec = _data_spec(data_dir)
    spec["evaluation"] = {"few_shot": [1, 20]}
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    line = _one_line_error(run_cli("study", "plan", str(spec_file), "--data"))
    assert str(spec_file) in line and "evaluation.few_shot[1]" in line and f"<= {TRAIN_LINES}" in line


def test_sizes_within_the_training_data_pass_plan_data(tmp_path: Path) -> None:
    data_dir = _write_multi30k(tmp_path / "data")
    spec = _data_spec(data_dir)
    spec["factors"]["ft_sizes"]["fmt"] = [4, TRAIN_LINES]
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    done = run_cli("study", "plan", str(spec_file), "--data")
    assert done.returncode == 0, done.stderr
    assert f"train {TRAIN_LINES}" in done.stdout


# ----- 1b: held-out values that leave too little of an axis to fit ------------------------------------------


HELDOUT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("all_model_sizes", {"model_size": ["xs", "s", "m"]}, "heldout.model_size: holds out 3 of the 3 values"),
    ("two_of_three_sizes", {"model_size": ["s", "m"]}, "heldout.model_size: holds out 2 of the 3 values"),
    ("all_budgets", {"pretrain_tokens": [250, 500, 1000]}, "heldout.pretrain_tokens: holds out 3 of the 3"),
    ("prompt_lengths", {"prompt_length": [4, 8]}, "heldout.prompt_length: holds out 2 of the 3"),
    ("lora_ranks", {"lora_rank": [2, 4, 8]}, "heldout.lora_rank: holds out 3 of the 3"),
    ("ft_sizes", {"ft_sizes": {"lora": [10, 20, 40]}}, "heldout.ft_sizes.lora: holds out 3 of the 3"),
    ("ft_sizes_one_left", {"ft_sizes": {"fmt": [20, 40]}}, "heldout.ft_sizes.fmt: holds out 2 of the 3"),
]


@pytest.mark.parametrize(("case", "heldout", "expected"), HELDOUT_CASES, ids=[c[0] for c in HELDOUT_CASES])
def test_heldout_covering_an_axis_is_refused(case: str, heldout: dict[str, Any], expected: str) -> None:
    spec = copy.deepcopy(BASE)
    spec["heldout"] = heldout
    with pytest.raises(SpecError) as info:
        parse_spec(spec, source="grid.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("grid.yaml: ") and expected in message, message
    assert "leaving" in message and "hold out fewer" in message


def test_heldout_leaving_two_values_is_fine() -> None:
    spec = copy.deepcopy(BASE)
    spec["heldout"] = {"model_size": ["m"], "ft_sizes": {"fmt": [40]}, "prompt_length": [8]}
    parse_spec(spec)
    # a grid of two values with nothing held out is not a held-out problem (the defaults hold out nothing)
    two = copy.deepcopy(BASE)
    two["factors"]["model_size"] = ["xs", "s"]
    assert parse_spec(two).resolved_heldout()["model_size"] == []


def test_plan_refuses_heldout_covering_the_grid(tmp_path: Path) -> None:
    spec = copy.deepcopy(BASE)
    spec["heldout"] = {"model_size": ["xs", "s", "m"]}
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    line = _one_line_error(run_cli("study", "plan", str(spec_file), timeout=120))
    assert str(spec_file) in line and "heldout.model_size" in line


# ----- 1c: unknown task options, zero-shot directions the task does not have ----------------------------------


def test_unknown_task_option_names_the_yaml_path_and_the_known_keys() -> None:
    spec = copy.deepcopy(BASE)
    spec["task"]["options"] = {"n_trian": 100, "seed": 1}
    with pytest.raises(SpecError) as info:
        parse_spec(spec, source="opts.yaml")
    message = str(info.value)
    assert message.startswith("opts.yaml: task.options.n_trian: unknown option"), message
    assert "did you mean 'n_train'" in message and "pretraining_tokens" in message  # the known keys
    assert "\n" not in message


def test_unknown_task_option_is_refused_by_plan(tmp_path: Path) -> None:
    spec = _data_spec(tmp_path / "data", options={"foo": 1})  # no data needed: refused from the spec alone
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    line = _one_line_error(run_cli("study", "plan", str(spec_file), timeout=120))
    assert str(spec_file) in line and "task.options.foo" in line
    assert "zero_shot_sources" in line  # a known key of multi30k tasks


def test_missing_zero_shot_direction_names_the_file_and_the_available_ones(tmp_path: Path) -> None:
    data_dir = _write_multi30k(tmp_path / "data")
    spec = _data_spec(data_dir)
    spec["evaluation"] = {"zero_shot": ["fr-de", "en-fr"]}
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    for args in (
        ("study", "plan", str(spec_file), "--data"),
        ("study", "run", str(spec_file), "--dir", str(tmp_path / "study"), "--no-progress"),
    ):
        line = _one_line_error(run_cli(*args))
        assert line.startswith(f"error: {spec_file}: evaluation.zero_shot[1]:"), line
        assert "available: cs-de, fr-de" in line
    assert not (tmp_path / "study").exists()
