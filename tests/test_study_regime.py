"""Regime diagnostics: tokens per parameter and epochs per cell before the runs (``study plan``), the budget-bound
share and the ladder's order after them (``study status``, the report), on synthetic studies with known answers."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import run_cli
from ftscale.finetune.params import method_params, planned_steps
from ftscale.models.family import family, spec_parameter_counts
from ftscale.study.driver import run_study
from ftscale.study.plan import build_plan
from ftscale.study.regime import (
    MAX_BUDGET_BOUND_SHARE,
    MIN_EPOCHS_AT_CAP,
    MIN_TOKENS_PER_PARAM,
    budget_bound_flags,
    plan_regime,
    results_regime,
)
from ftscale.study.results import results_table
from ftscale.study.spec import parse_spec
from test_study_fakes import (
    REGIME_LARGEST_D,
    REGIME_STEPS,
    REGIME_UNORDERED_ENV,
    regime_is_budget_bound,
    regime_job,
    regime_val_loss,
)
from test_study_spec import BASE


def _spec(**changes: Any) -> Any:
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = raw
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return parse_spec(raw)


# --- before the runs ------------------------------------------------------------------------------------------


def test_plan_reports_tokens_per_parameter_of_every_size() -> None:
    spec = _spec()
    regime = plan_regime(spec)
    ladder = family("cpu", vocab_size=spec.tokenizer.vocab_size)
    assert [m.name for m in regime.models] == ["xs", "s", "m"]
    for model in regime.models:
        counts = spec_parameter_counts(ladder[model.name])
        assert (model.total_params, model.non_embedding_params) == (counts.total, counts.non_embedding)
        assert model.pretrain_tokens == 1000  # every size reads the same tokens
        assert model.tokens_per_param == pytest.approx(1000 / counts.total)
    (line,) = [w for w in regime.warnings if w.startswith("under-trained")]
    assert "3 of 3" in line and "family.pretrain.total_tokens" in line
    need = math.ceil(MIN_TOKENS_PER_PARAM * regime.models[-1].total_params)
    assert f"needs {need:,}" in line


def test_plan_budget_per_cell_matches_the_finetuning_loop() -> None:
    spec = _spec(methods__fmt={"lr": 1e-3, "batch_size": 4, "max_steps": 30, "max_epochs": 5})
    cells = {(c.method, c.ft_examples): c for c in plan_regime(spec).cells}
    fmt = method_params("fmt", {"lr": 1e-3, "batch_size": 4, "max_steps": 30, "max_epochs": 5})
    for n in (10, 20, 40):
        cell = cells[("fmt", n)]
        assert cell.steps == planned_steps(n, 4, 30, 5) == fmt.steps_for(n)
        assert cell.epochs == pytest.approx(cell.steps / math.ceil(n / 4))
    assert (cells[("fmt", 10)].steps, cells[("fmt", 10)].capped_by) == (15, "epochs")  # 5 epochs × 3 batches
    assert (cells[("fmt", 40)].steps, cells[("fmt", 40)].capped_by) == (30, "steps")  # 3 of 5 epochs
    assert {c.eval_every for c in cells.values()} == {fmt.eval_every}
    every_epoch = _spec(methods__fmt={"lr": 1e-3, "batch_size": 4, "eval_every": 8, "eval_every_epochs": 1})
    cadence = {c.ft_examples: c.eval_every for c in plan_regime(every_epoch).cells if c.method == "fmt"}
    assert cadence == {10: 3, 20: 5, 40: 8}  # one epoch, or eval_every steps where that is sooner
    warnings = [w for w in plan_regime(spec).warnings if "methods.fmt" in w]
    assert len(warnings) == 1 and "3 of 3 cells" in warnings[0] and "max_epochs to ≥ 10" in warnings[0]


def test_a_spec_in_regime_gets_no_warning() -> None:
    total = math.ceil(MIN_TOKENS_PER_PARAM * max(m.total_params for m in plan_regime(_spec()).models))
    stops = {"max_steps": 1000, "max_epochs": 100}
    spec = _spec(
        family__pretrain={"sizes": ["xs", "s", "m"], "total_tokens": total},
        methods={"fmt": {"lr": 1e-3, **stops}, "prompt": {"prompt_length": 4, **stops}, "lora": stops},
        factors__pretrain_tokens={"budgets": [total // 4, total // 2, total]},
        task__max_source_tokens=64,
        task__max_target_tokens=64,  # an example fits the 128-token pretraining sequences
    )
    assert plan_regime(spec).warnings == []


def test_pretraining_shorter_than_a_finetuning_example_is_flagged() -> None:
    spec = _spec(family__pretrain={"sizes": ["xs", "s", "m"], "total_tokens": 1000, "seq_len": 64})
    (line,) = [w for w in plan_regime(spec).warnings if w.startswith("short pretraining sequences")]
    assert "seq_len is 64" in line and "256+ tokens" in line  # the task's default 128 + 128
    longer = _spec(
        family__pretrain={"sizes": ["xs", "s", "m"], "total_tokens": 1000, "seq_len": 64},
        task__max_source_tokens=32,
        task__max_target_tokens=32,
    )
    assert not any(w.startswith("short pretraining") for w in plan_regime(longer).warnings)


def test_unknown_tokens_of_published_models_are_unknown_not_guessed() -> None:
    raw = copy.deepcopy(BASE)
    raw["family"] = {
        "hf": {
            "models": [
                {"name": "a", "id": "org/a", "params": 1000, "tokens": 30_000, "total_params": 1200},
                {"name": "b", "id": "org/b", "params": 5000},
            ]
        }
    }
    raw["factors"].update({"model_size": ["a", "b"], "pretrain_tokens": None})
    regime = plan_regime(parse_spec(raw))
    a, b = regime.models
    assert a.tokens_per_param == pytest.approx(25.0) and b.tokens_per_param is None
    assert b.total_params is None and b.pretrain_tokens is None
    assert any(w.startswith("pretraining tokens unknown for b") for w in regime.warnings)
    assert not any(w.startswith("under-trained") for w in regime.warnings)
    assert regime.to_dict()["base_models"][1]["tokens_per_param"] is None


def test_plan_json_gives_the_documented_keys(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(BASE))
    done = run_cli("study", "plan", str(path), "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["jobs"]["total"] == len(build_plan(parse_spec(copy.deepcopy(BASE))).jobs)
    model = payload["base_models"][0]
    assert {"name", "total_params", "non_embedding_params", "pretrain_tokens", "tokens_per_param"} <= set(
        model
    )
    assert {"method", "ft_examples", "steps", "epochs", "capped_by", "eval_every"} <= set(payload["cells"][0])
    assert payload["warnings"] and payload["thresholds"]["min_tokens_per_param"] == MIN_TOKENS_PER_PARAM
    text = run_cli("study", "plan", str(path))
    assert text.returncode == 0 and "tokens/param" in text.stdout and "warning: under-trained" in text.stdout


# --- after the runs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regime_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    spec = parse_spec(copy.deepcopy(BASE))
    study_dir = tmp_path_factory.mktemp("regime") / "s"
    summary = run_study(spec, study_dir, regime_job, progress=False)
    assert summary.failed == 0
    return spec, study_dir


def test_budget_bound_share_per_method_and_d(regime_study: tuple[Any, Path]) -> None:
    spec, study_dir = regime_study
    runs = [job for job in build_plan(spec).jobs if job.kind == "finetune"]
    regime = results_regime(results_table(study_dir))
    expected: dict[tuple[str, int], list[int]] = {}
    for job in runs:
        cell = expected.setdefault((job.axes["method"], job.axes["ft_examples"]), [0, 0])
        cell[0] += regime_is_budget_bound(job.axes, REGIME_LARGEST_D)
        cell[1] += 1
    got = {(c.method, c.ft_examples): [c.budget_bound, c.runs] for c in regime.budget_bound}
    assert got == expected
    assert regime.budget_bound_share == pytest.approx(sum(b for b, _ in expected.values()) / len(runs))
    assert regime.method_shares()["prompt"] == 1.0
    (line,) = [w for w in regime.warnings if w.startswith("budget-bound runs")]
    assert f"{regime.budget_bound_share:.0%} of {len(runs)} finished runs" in line


def test_ladder_losses_and_order_come_from_the_pretraining_jobs(regime_study: tuple[Any, Path]) -> None:
    spec, study_dir = regime_study
    regime = results_regime(results_table(study_dir))
    total = spec.family.pretrain.total_tokens
    assert [m.name for m in regime.models] == ["xs", "s", "m"]
    for i, model in enumerate(regime.models):
        assert model.val_loss == pytest.approx(regime_val_loss(model.name, total, False))
        assert model.total_params == 100 * (i + 1)
        assert model.tokens_per_param == pytest.approx(total / model.total_params)
    assert regime.ladder_ordered is True
    assert not any(w.startswith("base-model ladder") for w in regime.warnings)
    # the pretraining factor's runs see the loss of their own (intermediate / annealed) checkpoint
    table = results_table(study_dir)
    row = table[(table["checkpoint_kind"] == "intermediate") & (table["pretrain_tokens"] == 250)].iloc[0]
    assert row["base_val_loss"] == pytest.approx(regime_val_loss(row["model_size"], 250, False))


def test_an_unordered_ladder_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REGIME_UNORDERED_ENV, "m")
    spec = parse_spec(copy.deepcopy(BASE))
    run_study(spec, tmp_path / "s", regime_job, progress=False)
    regime = results_regime(results_table(tmp_path / "s"))
    assert regime.ladder_ordered is False
    (line,) = [w for w in regime.warnings if w.startswith("base-model ladder not ordered")]
    assert "m (" in line and "is not below s (" in line


def test_status_json_and_text_show_the_regime(regime_study: tuple[Any, Path]) -> None:
    _, study_dir = regime_study
    done = run_cli("study", "status", str(study_dir), "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    regime = results_regime(results_table(study_dir))
    assert payload["budget_bound_share"] == pytest.approx(regime.budget_bound_share)
    assert [m["tokens_per_param"] for m in payload["base_models"]] == pytest.approx(
        [m.tokens_per_param for m in regime.models]
    )
    assert [m["val_loss"] for m in payload["base_models"]] == pytest.approx(
        [m.val_loss for m in regime.models]
    )
    assert payload["ladder_ordered"] is True and payload["jobs"]["finetune"]["done"] > 0
    text = run_cli("study", "status", str(study_dir))
    assert text.returncode == 0, text.stderr
    assert "budget-bound share" in text.stdout and "warning: budget-bound runs" in text.stdout
    assert "ladder ordered by validation loss: yes" in text.stdout


def test_flags_need_the_steps_a_run_took() -> None:
    frame = pd.DataFrame(
        {"best_step": [40, 20, 40, None], "steps_run": [40, 40, None, 40], "method": "fmt", "status": "done"}
    )
    assert budget_bound_flags(frame).tolist() == [True, False, pd.NA, pd.NA]
    assert budget_bound_flags(frame.drop(columns="steps_run")).isna().all()


def test_share_at_the_threshold_is_in_regime() -> None:
    n = 20
    bound = int(MAX_BUDGET_BOUND_SHARE * n)
    frame = pd.DataFrame(
        {
            "method": "lora",
            "status": "done",
            "ft_examples": 100,
            "best_step": [REGIME_STEPS] * bound + [1] * (n - bound),
            "steps_run": REGIME_STEPS,
        }
    )
    regime = results_regime(frame)
    assert regime.budget_bound_share == pytest.approx(MAX_BUDGET_BOUND_SHARE)
    assert regime.warnings == []


@pytest.mark.parametrize("name", ["tiny", "small", "small-en-zh", "small-sum"])
def test_the_presets_are_planned_in_regime(name: str) -> None:
    """Every size reads the same pretraining tokens, at least 20 per parameter of the largest, and every
    finetuning cell's budget allows at least 10 epochs, so a run ends by early stopping, not by its cap."""
    from ftscale.study.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    regime = plan_regime(spec)
    assert len({m.pretrain_tokens for m in regime.models}) == 1
    assert min(m.tokens_per_param for m in regime.models) >= MIN_TOKENS_PER_PARAM
    assert min(cell.epochs for cell in regime.cells) >= MIN_EPOCHS_AT_CAP
    assert regime.warnings == []
    # >= 4 sizes (the demo, 11.6x) or >= 5 over >= 12x in non-embedding parameters (the real-data presets)
    x = sorted(m.non_embedding_params for m in regime.models)
    assert len(x) >= 4 and x[-1] / x[0] >= 11.5
    assert name == "tiny" or (len(x) >= 5 and x[-1] / x[0] >= 12)
    assert spec.family.pretrain.ladder == ("demo" if name == "tiny" else "cpu")


def test_export_gives_each_runs_budget_and_stop_in_epochs(regime_study: tuple[Any, Path]) -> None:
    """``epochs_allowed`` is the budget the plan gives the run's cell; ``epochs_run`` and ``best_epoch`` are its
    steps over the steps of one pass over its data (the regime table of the reproduction reads them)."""
    spec, study_dir = regime_study
    table = results_table(study_dir)
    assert len(table) and table[["epochs_allowed", "epochs_run", "best_epoch"]].notna().all().all()
    for row in table.itertuples():
        params = spec.methods.enabled()[row.method]
        per_epoch = math.ceil(row.ft_examples / params.batch_size)
        assert row.epochs_allowed == pytest.approx(params.epochs_for(row.ft_examples))
        assert row.epochs_run == pytest.approx(REGIME_STEPS / per_epoch)
        assert row.best_epoch == pytest.approx(row.best_step / per_epoch)
