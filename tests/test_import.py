"""``ftscale import`` on artefacts the real libraries wrote: HF Trainer runs (with and without a PEFT adapter),
TensorBoard event files, an MLflow store, W&B offline runs and a W&B runs export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import cli_env, run_cli
from ftscale.errors import DataError, UserError
from ftscale.importers import ImportMapping, import_runs, load_mapping
from ftscale.importers.mapping import parse_field_flag
from ftscale.importers.sources import RawRun, read_runs
from ftscale.importers.table import as_count, params_label, results_frame
from ftscale.study.results import LEADING_COLUMNS

# A small grid: two model sizes × two data sizes for FMT, and LoRA at two ranks on the smaller model.
GRID = [
    ("fmt", "m1", 1000, None, 100, 3.0),
    ("fmt", "m1", 1000, None, 400, 2.6),
    ("fmt", "m2", 4000, None, 100, 2.7),
    ("fmt", "m2", 4000, None, 400, 2.3),
    ("lora", "m1", 1000, 4, 100, 3.2),
    ("lora", "m1", 1000, 4, 400, 2.9),
    ("lora", "m1", 1000, 8, 100, 3.1),
    ("lora", "m1", 1000, 8, 400, 2.8),
    ("lora", "m2", 4000, 4, 100, 2.9),
    ("lora", "m2", 4000, 4, 400, 2.6),
]


def _run_name(method: str, model: str, rank: int | None, n: int) -> str:
    return f"{method}-{model}" + (f"-r{rank}" if rank else "") + f"-n{n}"


def _curve(final: float) -> list[float]:
    """A dev-loss curve whose best value is ``final`` at step 20 and that rises after it (overfitting)."""
    return [final + 0.5, final + 0.1, final, final + 0.05]


# ----- mapping ------------------------------------------------------------------------------------------------


def test_field_flags_and_mapping_file(tmp_path: Path) -> None:
    assert parse_field_flag("seed=const:3")[1].const == 3
    name, source = parse_field_flag(r"pretrain_tokens=regex@path:tok(\d+)")
    assert name == "pretrain_tokens" and source.on == "path"
    for bad in ("seed", "seed=nope:1", "seed=const", r"x=regex:(\d)(\d)", "seed=regex:(", "seed=key@path:a"):
        with pytest.raises(UserError):
            name, _ = parse_field_flag(bad)
            load_mapping(fields=[bad])
    with pytest.raises(UserError, match="unknown field"):
        load_mapping(fields=["colour=const:1"])
    spec = tmp_path / "map.yaml"
    spec.write_text(
        "task: t\nloss: {metric: dev, pick: last}\nfields:\n  seed: {const: 1}\n  ft_examples: {key: n}\n"
    )
    mapping = load_mapping(spec, fields=["seed=const:2"], pick="best")
    assert mapping.task == "t" and mapping.loss.metric == "dev" and mapping.loss.pick == "best"
    assert mapping.fields["seed"].const == 2 and mapping.fields["ft_examples"].key == "n"
    spec.write_text("fields:\n  seed: {const: 1, tag: s}\n")
    with pytest.raises(UserError, match=r"map.yaml: fields.seed.*exactly one"):
        load_mapping(spec)
    spec.write_text("loss: [oops\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_mapping(spec)
    assert [params_label(n) for n in (2992, 1.3e6, 7e9, 40)] == ["2.99k", "1.3M", "7B", "40p"]
    assert (
        as_count("1.2M") == 1.2e6 and as_count("600k") == 6e5 and as_count(7) == 7.0 and as_count("x") is None
    )


def _raw(name: str, **config: object) -> RawRun:
    return RawRun(source="mlflow", name=name, path=f"uri#{name}", config=dict(config),
                  series={"eval_loss": [(10.0, 3.0), (20.0, 2.5), (30.0, 2.7)]})  # fmt: skip


def test_missing_and_ambiguous_fields_name_the_run_and_field() -> None:
    mapping = load_mapping(fields=["ft_examples=key:n", "method=const:fmt", "model_params=key:p"])
    with pytest.raises(DataError, match=r"run 'a' \(uri#a\): ft_examples: config key 'n' not found"):
        results_frame([_raw("a", p=10)], mapping)
    ambiguous = load_mapping(fields=[r"ft_examples=regex:n(\d+)", "method=const:fmt", "model_params=const:5"])
    with pytest.raises(DataError, match=r"run 'n1-n2'.*ft_examples: ambiguous"):
        results_frame([_raw("n1-n2")], ambiguous)
    with pytest.raises(DataError, match=r"run 'a'.*method: nothing gives it"):
        results_frame(
            [_raw("a", n=5, p=10)], load_mapping(fields=["ft_examples=key:n", "model_params=key:p"])
        )
    lora = load_mapping(fields=["ft_examples=key:n", "method=const:lora", "model_params=key:p"])
    with pytest.raises(DataError, match=r"run 'a'.*pet_size: a lora run needs its PET size"):
        results_frame([_raw("a", n=5, p=10)], lora)
    with pytest.raises(DataError, match=r"run 'a'.*loss: metric 'bleu' not logged; it has eval_loss"):
        results_frame([_raw("a", n=5, p=10)], load_mapping(fields=["method=const:fmt"], loss="bleu"))
    twice = [_raw("a", n=5, p=10), _raw("b", n=5, p=10)]
    with pytest.raises(DataError, match=r"run 'a'.*and run 'b'.*same seed"):
        results_frame(twice, mapping)


def test_best_and_last_loss_and_the_factor_grid() -> None:
    runs = [
        RawRun(
            source="mlflow",
            name=name,
            path=f"u#{name}",
            series={"eval_loss": [(s * 10.0, v) for s, v in enumerate(_curve(loss), 1)]},
            config={"p": params, "n": n, "m": method, "r": rank},
        )
        for method, _model, params, rank, n, loss in GRID
        for name in [_run_name(method, _model, rank, n)]
    ]
    fields = ["ft_examples=key:n", "method=key:m", "model_params=key:p", "pet_size=key:r"]
    best = results_frame(runs, load_mapping(fields=fields))
    assert list(best.columns[: len([c for c in LEADING_COLUMNS if c in best.columns])]) == [
        c for c in LEADING_COLUMNS if c in best.columns
    ]
    expected = [loss for *_, loss in GRID]
    assert best["loss"].tolist() == pytest.approx(expected) and set(best["best_step"]) == {30.0}
    last = results_frame(runs, load_mapping(fields=fields, pick="last"))
    assert last["loss"].tolist() == pytest.approx([v + 0.05 for v in expected])
    # where the best dev loss was and the last evaluation, whichever value is taken: the regime check's input
    from ftscale.study.regime import budget_bound_flags

    assert set(last["best_step"]) == {30.0} and set(last["steps_run"]) == {40.0}
    assert not budget_bound_flags(last).any()
    for run in runs:
        run.series["eval_loss"] = run.series["eval_loss"][:3]  # stopped while still improving
    assert budget_bound_flags(results_frame(runs, load_mapping(fields=fields))).all()
    flags = best.set_index("run_name")[["in_model_size", "in_pet_size"]]
    # LoRA's anchor rank is 4 (used with both models): rank 8 runs are only in the PET-size factor
    assert flags.loc["lora-m1-r8-n100"].tolist() == [False, True]
    assert flags.loc["lora-m1-r4-n100"].tolist() == [True, True]
    assert flags.loc["lora-m2-r4-n100"].tolist() == [True, False]
    assert flags.loc["fmt-m2-n400"].tolist() == [True, False]
    assert not best["in_pretrain_tokens"].any() and "heldout_model_size" not in best.columns
    # an explicit factor field overrides the grid
    lora = [run for run in runs if run.config["m"] == "lora" and run.config["p"] == 1000]
    explicit = results_frame(lora, load_mapping(fields=[*fields, "factor=const:pet_size"]))
    assert explicit["in_pet_size"].all() and not explicit["in_model_size"].any()
    with pytest.raises(DataError, match="full-model tuning run has no PET size"):
        results_frame(runs, load_mapping(fields=[*fields, "factor=const:pet_size"]))


# ----- HF Trainer ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trainer_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real two-step Trainer runs on a tiny GPT-2: full-model tuning and LoRA (rank 4)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    base_dir = root / "base"
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)
    ).save_pretrained(base_dir)
    rows = [{"input_ids": [i % 60 + 1] * 8, "labels": [i % 60 + 1] * 8} for i in range(16)]
    for name, lora in (("fmt-n16", False), ("lora-n16", True)):
        model = GPT2LMHeadModel.from_pretrained(base_dir)
        if lora:
            model = get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn"], task_type="CAUSAL_LM"))
        args = TrainingArguments(
            output_dir=str(root / "runs" / name), max_steps=2, per_device_train_batch_size=4,
            eval_strategy="steps", eval_steps=1, logging_steps=1, save_strategy="no", report_to=[],
            use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:4])
        trainer.train()
        trainer.save_model()
        trainer.save_state()
        trainer.save_metrics("eval", trainer.evaluate())
    return root


def test_trainer_directories_with_and_without_an_adapter(trainer_runs: Path) -> None:
    table = import_runs([str(trainer_runs / "runs")], load_mapping(fields=[r"ft_examples=regex:n(\d+)"]))
    table = table.set_index("run_name")
    assert table.loc["fmt-n16", "method"] == "fmt" and table.loc["lora-n16", "method"] == "lora"
    assert table.loc["lora-n16", "pet_size"] == 4 and pd.isna(table.loc["fmt-n16", "pet_size"])
    # X: non-embedding parameters of the base model (the full model's config.json; the adapter's base model)
    from transformers import GPT2LMHeadModel

    from ftscale.models.family import parameter_counts

    counts = parameter_counts(GPT2LMHeadModel.from_pretrained(trainer_runs / "base"))
    assert table["model_params"].tolist() == [counts.non_embedding] * 2
    assert table["base_total_params"].tolist() == [counts.total] * 2
    for name in ("fmt-n16", "lora-n16"):
        state = json.loads((trainer_runs / "runs" / name / "trainer_state.json").read_text())
        evals = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
        assert len(evals) >= 2 and table.loc[name, "loss"] == pytest.approx(min(evals))
        assert table.loc[name, "ft_examples"] == 16 and table.loc[name, "source"] == "hf"


# ----- TensorBoard --------------------------------------------------------------------------------------------


def _write_tensorboard(root: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for method, _model, params, rank, n, loss in GRID:
        writer = SummaryWriter(str(root / _run_name(method, _model, rank, n)))
        for step, value in enumerate(_curve(loss), 1):
            writer.add_scalar("eval/loss", value, step * 10)
            writer.add_scalar("train/loss", value + 1, step * 10)
        hparams = {"method": method, "params": params, "n_examples": n, "lora_r": rank or 0}
        writer.add_hparams(hparams, {"hparam/best": loss})  # into a sub-directory of the run
        writer.close()


def test_tensorboard_logs(tmp_path: Path) -> None:
    _write_tensorboard(tmp_path / "tb")
    fields = [
        "method=key:method",
        "model_params=key:params",
        "ft_examples=key:n_examples",
        "pet_size=key:lora_r",
    ]
    table = import_runs([str(tmp_path / "tb")], load_mapping(fields=fields)).set_index("run_name")
    assert len(table) == len(GRID) and set(table["source"]) == {"tensorboard"}
    for method, model, _params, rank, n, loss in GRID:
        row = table.loc[_run_name(method, model, rank, n)]
        assert row["loss"] == pytest.approx(loss) and row["best_step"] == 30 and row["ft_examples"] == n
    assert set(table["loss_metric"]) == {"eval/loss"}


# ----- MLflow -------------------------------------------------------------------------------------------------


def test_mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    experiment = client.create_experiment("ft")
    for method, model, params, rank, n, loss in GRID:
        run = client.create_run(
            experiment, run_name=_run_name(method, model, rank, n), tags={"method": method}
        )
        client.log_param(run.info.run_id, "model.n_params", params)
        client.log_param(run.info.run_id, "data.n", n)
        if rank:
            client.log_param(run.info.run_id, "lora_r", rank)
        for step, value in enumerate(_curve(loss), 1):
            client.log_metric(run.info.run_id, "eval_loss", value, step=step * 10)
            client.log_metric(run.info.run_id, "train_loss", value + 1, step=step * 10)
        client.set_terminated(run.info.run_id)
    fields = [
        "method=tag:method",
        "model_params=key:model.n_params",
        "ft_examples=key:data.n",
        r"pet_size=regex:-r(\d+)-",
    ]
    table = import_runs([str(store)], load_mapping(fields=fields, task="wmt")).set_index("run_name")
    assert len(table) == len(GRID) and set(table["task"]) == {"wmt"}
    for method, model, params, rank, n, loss in GRID:
        row = table.loc[_run_name(method, model, rank, n)]
        assert (row["loss"], row["model_params"], row["ft_examples"]) == (pytest.approx(loss), params, n)
    # a tracking URI works as well as the directory
    assert len(import_runs([store.as_uri()], load_mapping(fields=fields))) == len(GRID)
    # the store is asked only for the histories the import needs; other metrics come as their last values
    (run, *_) = read_runs(store.as_uri(), histories={"eval_loss"})
    assert (
        set(run.series) == {"eval_loss"} and len(run.series["eval_loss"]) == 4 and "train_loss" in run.summary
    )


# ----- Weights & Biases ---------------------------------------------------------------------------------------

_WANDB_SCRIPT = """
import sys, wandb
from test_import import GRID, _curve, _run_name
for method, model, params, rank, n, loss in GRID:
    run = wandb.init(project="ft", name=_run_name(method, model, rank, n), dir=sys.argv[1], tags=[method],
                     config={"model": {"params": params}, "data": {"n": n}, "lora": {"r": rank}})
    for step, value in enumerate(_curve(loss), 1):
        run.log({"eval/loss": value}, step=step * 10)
    run.finish()
"""


def test_wandb_offline_runs_and_export(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    env = dict(cli_env(), WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", _WANDB_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    fields = ["model_params=key:model.params", "ft_examples=key:data.n", "pet_size=key:lora.r"]
    fields.append("method=regex@tags:(fmt|lora)")
    table = import_runs([str(tmp_path / "wandb")], load_mapping(fields=fields)).set_index("run_name")
    assert len(table) == len(GRID) and set(table["source"]) == {"wandb"}
    for method, model, _params, rank, n, loss in GRID:
        row = table.loc[_run_name(method, model, rank, n)]
        assert row["loss"] == pytest.approx(loss) and row["method"] == method and row["best_step"] == 30

    # the runs table the W&B web app exports: Name, Tags, config and summary columns
    export = pd.DataFrame(
        [
            {"Name": _run_name(m, model, r, n), "State": "finished", "Tags": m, "model.params": p, "data.n": n,
             "lora.r": r, "eval/loss": loss}
            for m, model, p, r, n, loss in GRID
        ]
    )  # fmt: skip
    export.to_csv(tmp_path / "export.csv", index=False)
    exported = import_runs([str(tmp_path / "export.csv")], load_mapping(fields=fields)).set_index("run_name")
    pd.testing.assert_series_equal(
        exported["loss"].sort_index(), table["loss"].sort_index(), check_exact=False
    )
    assert set(exported["source"]) == {"wandb-export"} and exported["best_step"].isna().all()
    export.to_json(tmp_path / "export.json", orient="records")
    as_json = import_runs([str(tmp_path / "export.json")], load_mapping(fields=fields)).set_index("run_name")
    pd.testing.assert_series_equal(as_json["loss"].sort_index(), exported["loss"].sort_index())


# ----- the command --------------------------------------------------------------------------------------------


def test_cli_writes_the_table_fit_reads_and_fails_in_one_line(tmp_path: Path) -> None:
    _write_tensorboard(tmp_path / "tb")
    out = tmp_path / "results.csv"
    base = ["import", str(tmp_path / "tb"), "--out", str(out), "--field", "method=key:method",
            "--field", "model_params=key:params", "--field", "pet_size=key:lora_r"]  # fmt: skip
    missing = run_cli(*base)
    assert missing.returncode == 2 and not out.exists()
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "ft_examples" in lines[0] and "run '" in lines[0], missing.stderr
    mapping = tmp_path / "import.yaml"
    mapping.write_text("task: demo\nfields:\n  ft_examples: {key: n_examples}\n")
    done = run_cli(*base, "--mapping", str(mapping), "--metric", "train_loss=train/loss")
    assert done.returncode == 0, done.stderr
    assert (
        f"imported {len(GRID)} runs" in done.stdout and f"{len(GRID)} tensorboard runs read in" in done.stdout
    )
    table = pd.read_csv(out)
    # the extra column is the metric at the step of the best dev loss
    assert set(table["task"]) == {"demo"} and (table["train_loss"] - table["loss"]).round(6).eq(1).all()
    assert {
        "run_id",
        "task",
        "method",
        "status",
        "in_model_size",
        "model_params",
        "ft_examples",
        "loss",
    } <= set(table.columns)
    fitted = run_cli("fit", str(out), "--x", "model_params", "--d", "ft_examples", "--where", "method=fmt",
                     "--heldout", "none")  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    # a study's laws take the study's held-out rules, not a CSV's axis=value pairs (once silently ignored)
    split = run_cli("fit", str(out), "--law", "study", "--heldout", "x=5", "--bootstrap", "0")
    assert split.returncode == 2 and "--heldout 'x=5'" in split.stderr, split.stderr
    bad = run_cli("import", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.csv"))
    assert bad.returncode == 2 and "not found" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_empty_mapping_is_valid() -> None:
    assert ImportMapping().loss.pick == "best"


def test_a_run_that_saved_only_checkpoints_is_read_from_its_last_one(tmp_path: Path) -> None:
    from transformers import TrainerState

    for step, loss in ((10, 2.0), (20, 1.5)):
        folder = tmp_path / "run-n50" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        history = [{"eval_loss": 3.0, "step": 5}, {"eval_loss": loss, "step": step}]
        TrainerState(global_step=step, log_history=history).save_to_json(str(folder / "trainer_state.json"))
    import ftscale  # the notebook form: one path, fields as a dict

    fields = {"ft_examples": r"regex:n(\d+)", "model_params": "const:1e6"}
    (row,) = ftscale.import_runs(tmp_path, fields=fields).to_dict("records")
    assert (
        row["run_name"] == "run-n50"
        and row["loss"] == 1.5
        and row["best_step"] == 20
        and row["method"] == "fmt"
    )


def test_models_known_only_by_name_still_separate_the_pretraining_factor() -> None:
    """Without parameter counts, a model's name tells its checkpoints from another model's; without either, two
    models' runs at one checkpoint collide and the error asks for what tells them apart."""
    grid = [("m1", 100, 3.0), ("m1", 200, 2.8), ("m2", 200, 2.5)]
    runs = [
        RawRun(
            source="mlflow",
            name=f"{model}-tok{tokens}-n{n}",
            path=f"u#{model}{tokens}{n}",
            series={"eval_loss": [(1.0, loss + n / 1000)]},
        )
        for model, tokens, loss in grid
        for n in (10, 20)
    ]
    fields = [r"pretrain_tokens=regex:tok(\d+)", r"ft_examples=regex:-n(\d+)", "method=const:fmt"]
    table = results_frame(runs, load_mapping(fields=[*fields, r"model_size=regex:^(m\d)"]))
    members = table.set_index("run_name")["in_pretrain_tokens"]
    assert members.to_dict() == {name: not name.startswith("m2") for name in members.index}
    assert set(table.loc[table["model_size"] == "m1", "checkpoint_kind"]) == {"final", "intermediate"}
    with pytest.raises(DataError, match=r"map what tells them apart .*model_size"):
        results_frame(runs, load_mapping(fields=fields))


def test_damaged_artefacts_are_one_line_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "run-n5"
    broken.mkdir(parents=True)
    (broken / "trainer_state.json").write_text("{oops")
    unknown = tmp_path / "unknown" / "run-n5"
    unknown.mkdir(parents=True)
    (unknown / "trainer_state.json").write_text('{"log_history": [{"eval_loss": 1.0, "step": 1}]}')
    (unknown / "adapter_config.json").write_text('{"peft_type": "NOPE"}')
    for folder, expected in (("broken", "not a Trainer state"), ("unknown", "peft_type 'NOPE'")):
        done = run_cli(
            "import",
            str(tmp_path / folder),
            "--out",
            str(tmp_path / "o.csv"),
            "--field",
            "ft_examples=const:5",
        )
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()
