"""Study spec validation: every invalid input is one line naming the file and the YAML path, exit 2, and the
study directory is left untouched."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, run_cli
from ftscale.errors import SpecError
from ftscale.study.spec import load_spec, parse_spec

BASE: dict[str, Any] = {
    "name": "t",
    "task": {"name": "synthetic-en-de", "train_pool": 500},
    "tokenizer": {"vocab_size": 256},
    "family": {"pretrain": {"sizes": ["xs", "s", "m"], "total_tokens": 1000}},
    "methods": {"fmt": {"lr": 1e-3}, "prompt": {"prompt_length": 4}, "lora": {"lora_rank": 4}},
    "factors": {
        "model_size": ["xs", "s", "m"],
        "pretrain_tokens": {"budgets": [250, 500, 1000]},
        "prompt_length": [2, 4, 8],
        "lora_rank": [2, 4, 8],
        "ft_sizes": {"fmt": [10, 20, 40], "prompt": [10, 20, 40], "lora": [10, 20, 40]},
        "seeds": 2,
    },
}


def mutate(path: str, value: Any, delete: bool = False) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return spec


def _without_prompt() -> dict[str, Any]:
    spec = mutate("methods.prompt", None)
    del spec["factors"]["ft_sizes"]["prompt"]
    return spec


# (case id, YAML text or a spec dict, substring expected in the one-line error)
CASES: list[tuple[str, Any, str]] = [
    ("bad_yaml", "name: t\nfactors: [1, 2\n", "invalid YAML"),
    ("empty_file", "", "the file is empty"),
    ("top_level_list", "- 1\n- 2\n", "expected a mapping"),
    ("unknown_top_key", {**BASE, "factor": {}}, "factor: unknown key (did you mean 'factors'?)"),
    (
        "unknown_nested_key",
        mutate("methods.lora", {"lora_rnak": 4}),
        "methods.lora.lora_rnak: unknown key (did you mean 'lora_rank'?)",
    ),
    (
        "negative_ft_size",
        mutate("factors.ft_sizes.fmt", [10, -5, 40]),
        "factors.ft_sizes.fmt[1]: must be > 0",
    ),
    ("empty_ft_sizes", mutate("factors.ft_sizes.lora", []), "factors.ft_sizes.lora: must not be empty"),
    ("empty_model_size", mutate("factors.model_size", []), "factors.model_size: must not be empty"),
    ("unknown_method", mutate("methods.adapter", {"lr": 1.0}), "methods.adapter: unknown key"),
    (
        "unknown_method_in_ft_sizes",
        mutate("factors.ft_sizes.lorra", [10]),
        "factors.ft_sizes.lorra: unknown method (did you mean 'lora'?)",
    ),
    ("base_model_not_in_sizes", mutate("base_model", "xxl"), "base_model: unknown size 'xxl'"),
    (
        "heldout_size_not_in_grid",
        mutate("heldout", {"model_size": ["xl"]}),
        "heldout.model_size[0]: 'xl' is not in factors.model_size",
    ),
    (
        "heldout_ft_size_not_in_grid",
        mutate("heldout", {"ft_sizes": {"fmt": [30]}}),
        "heldout.ft_sizes.fmt[0]: 30 is not in factors.ft_sizes.fmt",
    ),
    ("bad_task_name", mutate("task.name", "Multi 30k!"), "task.name: 'Multi 30k!' does not match"),
    ("seeds_zero", mutate("factors.seeds", 0), "factors.seeds: must be > 0"),
    (
        "unknown_size_in_factor",
        mutate("factors.model_size", ["xs", "S"]),
        "factors.model_size[1]: unknown size 'S' (did you mean 's'?)",
    ),
    ("missing_task", mutate("task", None, delete=True), "task: required key is missing"),
    (
        "two_families",
        mutate("family.hf", {"models": [{"name": "a", "id": "org/a", "params": 10}]}),
        "family: give exactly one",
    ),
    (
        "budget_over_total",
        mutate("factors.pretrain_tokens", {"budgets": [250, 5000]}),
        "factors.pretrain_tokens.budgets[1]: 5000 exceeds",
    ),
    (
        "annealed_without_annealing",
        mutate("factors.pretrain_tokens", {"budgets": [250], "checkpoint_kind": "annealed"}),
        "needs family.pretrain.annealed: true",
    ),
    (
        "bad_checkpoint_kind",
        mutate("factors.pretrain_tokens", {"budgets": [250], "checkpoint_kind": "final"}),
        "factors.pretrain_tokens.checkpoint_kind: input should be",
    ),
    (
        "pet_sweep_without_method",
        _without_prompt(),
        "factors.prompt_length: sweeping prompt_length needs methods.prompt",
    ),
    (
        "ft_size_over_pool",
        mutate("factors.ft_sizes.fmt", [10, 20, 900]),
        "factors.ft_sizes.fmt[2]: 900 exceeds task.train_pool (500)",
    ),
    ("lr_not_a_number", mutate("methods.fmt", {"lr": "fast"}), "methods.fmt.lr:"),
    ("sizes_not_a_list", mutate("family.pretrain.sizes", "xs"), "family.pretrain.sizes:"),
    ("duplicate_size", mutate("family.pretrain.sizes", ["xs", "s", "m", "s"]), "size 's' is listed twice"),
    ("bad_zero_shot_direction", mutate("evaluation", {"zero_shot": ["french"]}), "evaluation.zero_shot[0]:"),
    (
        "method_without_ft_sizes",
        mutate("factors.ft_sizes", {"fmt": [10], "prompt": [10]}),
        "factors.ft_sizes: missing finetuning sizes for method 'lora'",
    ),
    ("vocab_too_small", mutate("tokenizer.vocab_size", 3), "tokenizer.vocab_size: must be >= 64"),
]


def _snapshot(directory: Path) -> dict[str, tuple[int, float]] | None:
    if not directory.exists():
        return None
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime) for p in directory.rglob("*")
    }


def test_the_base_spec_is_valid() -> None:
    spec = parse_spec(copy.deepcopy(BASE))
    assert spec.base_size == "xs"
    assert spec.resolved_heldout()["model_size"] == ["m"]
    assert spec.resolved_heldout()["pretrain_tokens"] == [500]  # interior, as the paper


@pytest.mark.parametrize(("case", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_spec_is_one_line_and_writes_nothing(
    tmp_path: Path, case: str, content: Any, expected: str, request: pytest.FixtureRequest
) -> None:
    spec_file = tmp_path / f"{case}.yaml"
    spec_file.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    study_dir = tmp_path / "study"
    index = [c[0] for c in CASES].index(case)
    if index % 2:  # half the cases: an existing directory must be left exactly as it was
        study_dir.mkdir()
        (study_dir / "notes.txt").write_text("keep me")
    before = _snapshot(study_dir)
    result = run_cli("study", "run", str(spec_file), "--dir", str(study_dir))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    assert str(spec_file) in lines[0]
    assert expected in lines[0], lines[0]
    assert _snapshot(study_dir) == before


def test_missing_spec_file(tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    result = run_cli("study", "run", str(tmp_path / "nope.yaml"), "--dir", str(study_dir))
    assert result.returncode == 2
    assert "study file not found" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not study_dir.exists()


def test_several_problems_are_all_listed(tmp_path: Path) -> None:
    spec = mutate("factors.seeds", 0)
    spec["factors"]["ft_sizes"]["fmt"] = [10, -1]
    spec["base_model"] = "huge"
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert any("factors.seeds: must be > 0" in line for line in lines)
    assert any("factors.ft_sizes.fmt[1]: must be > 0" in line for line in lines)
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_presets_are_valid() -> None:
    for name in ("tiny", "small", "paper"):
        load_spec(REPO_ROOT / "configs" / f"{name}.yaml")


def test_hf_family_checkpoints_must_exist(tmp_path: Path) -> None:
    spec = copy.deepcopy(BASE)
    spec["family"] = {
        "hf": {
            "models": [
                {"name": "big", "id": "org/big", "params": 100, "tokens": 1000},
                {
                    "name": "small",
                    "id": "org/small",
                    "params": 10,
                    "tokens": 1000,
                    "checkpoints": [
                        {"revision": "step1", "tokens": 250},
                        {"revision": "step2", "tokens": 500},
                    ],
                },
                {"name": "mid", "id": "org/mid", "params": 50, "tokens": 1000},
            ]
        }
    }
    spec["factors"]["model_size"] = ["small", "mid", "big"]
    parsed = parse_spec(copy.deepcopy(spec))
    assert parsed.size_names == ["small", "mid", "big"] and parsed.base_size == "small"
    spec["factors"]["pretrain_tokens"] = {"budgets": [250, 750]}
    with pytest.raises(SpecError, match=r"budgets\[1\]: 750 is not a checkpoint of base model 'small'"):
        parse_spec(spec)
