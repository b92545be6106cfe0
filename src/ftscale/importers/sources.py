"""Readers of the places finetuning runs already live, each through its own library, into :class:`RawRun`.

- Hugging Face ``Trainer`` output directories: ``transformers.TrainerState`` (``trainer_state.json``), the run's
  ``all_results.json`` / ``eval_results.json`` / ``train_results.json``, ``peft.PeftConfig`` (the adapter: method
  and PET size) and ``transformers.AutoConfig`` (the model: its non-embedding parameters, counted on the meta
  device);
- TensorBoard event files: ``tbparse`` (scalars, and the hyper-parameters of ``add_hparams``);
- MLflow: the ``mlflow`` client on a local ``mlruns/`` directory or any tracking URI;
- Weights & Biases: offline run directories through W&B's own reader (``wandb leet inspect --json``), and runs
  tables exported from the W&B web app as CSV or JSON (``pandas``).

A run's configuration is flattened to dotted keys (``model.hidden_size``), its metrics are step series, and the
values a source states itself (a PEFT adapter's method and rank) are its defaults for the mapping's fields.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ftscale.errors import DataError, UserError

SOURCES = ("hf", "tensorboard", "mlflow", "wandb", "wandb-export")
# Each source's own name of the evaluation loss, the default of the mapping's loss metric.
DEFAULT_LOSS = {
    "hf": ("eval_loss",),
    "tensorboard": ("eval/loss", "eval_loss"),
    "mlflow": ("eval_loss", "eval/loss"),
    "wandb": ("eval/loss", "eval_loss"),
    "wandb-export": ("eval/loss", "eval_loss"),
}
HF_RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json")
PEFT_METHODS = {"LORA": ("lora", "r"), "PROMPT_TUNING": ("prompt", "num_virtual_tokens")}


@dataclass
class RawRun:
    """One run as its source recorded it."""

    source: str
    name: str
    path: str  # where it came from: a directory, ``file#row``, ``uri#run_id``
    config: dict[str, Any] = field(default_factory=dict)  # flattened to dotted keys
    tags: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> (step, value)
    summary: dict[str, float] = field(default_factory=dict)  # final values (no step)
    defaults: dict[str, Any] = field(default_factory=dict)  # field values the source itself states
    problems: dict[str, str] = field(default_factory=dict)  # field -> why the source could not state it


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); fix or remove the file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def detect_source(path: Path) -> str:
    """Which reader a path needs, from what it holds."""
    if path.is_file():
        if path.suffix in (".csv", ".json"):
            return "wandb-export"
        if path.suffix == ".wandb":
            return "wandb"
        if path.name.startswith("events.out.tfevents"):
            return "tensorboard"
        raise DataError(f"{path}: not a source ftscale can import; give --source ({', '.join(SOURCES)})")
    if not path.is_dir():
        raise DataError(f"{path}: not found")
    if (path / "trainer_state.json").is_file() or any(path.rglob("trainer_state.json")):
        return "hf"
    if any(path.rglob("*.wandb")):
        return "wandb"
    if any(path.rglob("events.out.tfevents*")):
        return "tensorboard"
    if any(path.rglob("meta.yaml")):
        return "mlflow"
    raise DataError(
        f"{path}: no Trainer output (trainer_state.json), TensorBoard events, W&B runs (*.wandb) or MLflow store "
        f"(meta.yaml) found; give --source ({', '.join(SOURCES)}) or check the path"
    )


def read_runs(
    location: str, source: str | None = None, histories: Collection[str] | None = None
) -> list[RawRun]:
    """Every run at ``location`` (a path, or an MLflow tracking URI). ``histories``: the metrics whose every
    logged value is needed (the loss, mapped metrics); a tracking server is asked for only those histories, the
    other metrics come as their last values. None: all."""
    is_uri = re.match(r"^[a-z][a-z0-9+.-]*://", location) is not None or location.startswith("file:")
    if source is None:
        source = "mlflow" if is_uri else detect_source(Path(location))
    if source not in SOURCES:
        raise UserError(f"--source {source!r}: choose one of {', '.join(SOURCES)}")
    if source != "mlflow" and not Path(location).exists():
        raise DataError(f"{location}: not found")
    reader = {
        "hf": read_trainer_dirs,
        "tensorboard": read_tensorboard,
        "mlflow": read_mlflow,
        "wandb": read_wandb_offline,
        "wandb-export": read_wandb_export,
    }[source]
    runs = list(reader(location, histories) if source == "mlflow" else reader(location))
    if not runs:
        raise DataError(f"{location}: no {source} runs found")
    return runs


# --- Hugging Face Trainer output directories -----------------------------------------------------------------


def _trainer_run_dirs(root: Path) -> list[Path]:
    """Run directories under ``root``: those with a ``trainer_state.json``; a ``checkpoint-N`` directory only
    stands for its run when the run itself saved no final state (then the last checkpoint does)."""
    found = sorted(p.parent for p in root.rglob("trainer_state.json"))
    if (root / "trainer_state.json").is_file() and root not in found:
        found.insert(0, root)
    runs: dict[Path, Path] = {}
    for directory in found:
        match = re.fullmatch(r"checkpoint-(\d+)", directory.name)
        if match is None:
            runs[directory] = directory
            continue
        parent = directory.parent
        if (parent / "trainer_state.json").is_file():
            continue
        best = runs.get(parent)
        if best is None or int(match.group(1)) > int(best.name.split("-")[1]):
            runs[parent] = directory
    return [runs[key] for key in sorted(runs)]


def read_trainer_dirs(location: str) -> Iterator[RawRun]:
    from transformers import TrainerState

    root = Path(location)
    for directory in _trainer_run_dirs(root):
        run_dir = directory.parent if re.fullmatch(r"checkpoint-\d+", directory.name) else directory
        try:
            state = TrainerState.load_from_json(str(directory / "trainer_state.json"))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{directory / 'trainer_state.json'}: not a Trainer state ({exc})") from None
        run = RawRun(
            source="hf", name=run_dir.name if run_dir != root else root.resolve().name, path=str(run_dir)
        )
        trainer = {k: v for k, v in vars(state).items() if k not in ("log_history", "stateful_callbacks")}
        run.config.update(flatten(trainer, "trainer."))
        for entry in state.log_history:
            step = _number(entry.get("step"))
            for key, value in entry.items():
                number = _number(value)
                if key not in ("step", "epoch") and number is not None and step is not None:
                    run.series.setdefault(key, []).append((step, number))
        results: dict[str, Any] = {}
        for name in HF_RESULT_FILES:
            if (run_dir / name).is_file():
                results.update(_read_json(run_dir / name))
        run.config.update(flatten(results, "results."))
        run.summary.update({k: v for k, v in ((k, _number(v)) for k, v in results.items()) if v is not None})
        _adapter_facts(run, run_dir, directory)
        yield run


def _adapter_facts(run: RawRun, run_dir: Path, state_dir: Path) -> None:
    """Method and PET size from a PEFT adapter (none: full-model tuning), and the model's non-embedding
    parameters from its ``config.json`` (the run's own, else the adapter's base model)."""
    from peft import PeftConfig

    adapter_dir = next((d for d in (run_dir, state_dir) if (d / "adapter_config.json").is_file()), None)
    base_name = None
    if adapter_dir is None:
        run.defaults["method"] = "fmt"
    else:
        try:
            adapter = PeftConfig.from_pretrained(str(adapter_dir))
        except KeyError as exc:  # peft knows no such peft_type
            raise DataError(
                f"{adapter_dir / 'adapter_config.json'}: peft_type {exc} is not a PEFT method peft knows"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(
                f"{adapter_dir / 'adapter_config.json'}: not a PEFT adapter config ({exc})"
            ) from None
        settings = adapter.to_dict()
        run.config.update(flatten(json.loads(json.dumps(settings, default=str)), "adapter."))
        peft_type = str(getattr(adapter.peft_type, "value", adapter.peft_type))
        if peft_type in PEFT_METHODS:
            method, size_key = PEFT_METHODS[peft_type]
            run.defaults["method"] = method
            run.defaults["pet_size"] = settings.get(size_key)
        else:
            run.problems["method"] = (
                f"its adapter is {peft_type}, which ftscale does not model (LoRA or prompt tuning)"
            )
        base_name = settings.get("base_model_name_or_path")
    config_dir = next((d for d in (run_dir, state_dir) if (d / "config.json").is_file()), None)
    where = str(config_dir) if config_dir is not None else base_name
    if where is None:
        run.problems["model_params"] = "the run has no config.json and no adapter naming its base model"
        return
    try:
        config, counts = model_config(where)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        run.problems["model_params"] = f"its model config {where!r} cannot be read ({first[:200]})"
        return
    run.config.update(flatten(config, "model."))
    run.defaults["model_params"] = counts.non_embedding
    run.defaults["base_total_params"] = counts.total  # the regime check's tokens per parameter


@cache
def model_config(path_or_id: str) -> tuple[dict[str, Any], Any]:
    """A model's configuration and its parameter counts (``non_embedding``: X on the model-size axis), counted by
    building the model on the meta device (no weights are read or allocated)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from ftscale.models.family import parameter_counts

    config = AutoConfig.from_pretrained(path_or_id)
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(config)
        except ValueError:  # not a causal LM architecture (e.g. an encoder-decoder)
            model = AutoModel.from_config(config)
    return json.loads(config.to_json_string()), parameter_counts(model)


# --- TensorBoard -----------------------------------------------------------------------------------------------


def read_tensorboard(location: str) -> Iterator[RawRun]:
    """One run per directory of event files. ``SummaryWriter.add_hparams`` writes a run's hyper-parameters (and
    their metrics) into a sub-directory of the run (named by a timestamp unless ``run_name`` is given): such a
    sub-directory is part of its parent run, not a run of its own."""
    from tbparse import SummaryReader

    root = Path(location)
    with warnings.catch_warnings():  # tbparse's own pandas deprecations are none of the user's business
        warnings.filterwarnings("ignore", module="tbparse")
        reader = SummaryReader(str(root), pivot=False, extra_columns={"dir_name"})
        scalars = reader.scalars
        hparams = reader.hparams
    scalar_dirs = set(scalars["dir_name"]) if not scalars.empty else set()
    hparam_dirs = set(hparams["dir_name"]) if not hparams.empty else set()

    def owner(name: str) -> str:
        parent = str(Path(name).parent) if "/" in name else ""
        return parent if name in hparam_dirs and name != parent and parent in scalar_dirs else name

    runs: dict[str, RawRun] = {}
    for name in sorted(scalar_dirs | hparam_dirs):
        key = owner(name)
        run = runs.get(key)
        if run is None:
            run = runs[key] = RawRun(
                source="tensorboard",
                name=Path(key).name if key else root.resolve().name,
                path=str(root / key),
            )
        if name in scalar_dirs:
            rows = scalars[scalars["dir_name"] == name]
            for tag, group in rows.groupby("tag", sort=True):
                points = zip(group["step"], group["value"], strict=True)
                run.series.setdefault(str(tag), []).extend((float(s), float(v)) for s, v in points)
        if name in hparam_dirs:
            mine = hparams[hparams["dir_name"] == name]
            run.config.update({str(t): v for t, v in zip(mine["tag"], mine["value"], strict=True)})
    yield from runs.values()


# --- MLflow ----------------------------------------------------------------------------------------------------


def read_mlflow(location: str, histories: Collection[str] | None = None) -> Iterator[RawRun]:
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise UserError("importing MLflow runs needs 'mlflow': pip install 'ftscale[import]'") from None
    uri = location
    if re.match(r"^[a-z][a-z0-9+.-]*:", location) is None:
        uri = Path(location).resolve().as_uri()
    if uri.startswith("file:"):
        # reading a local mlruns/ directory (MLflow 3 keeps its file store for existing data behind this switch)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiments = client.search_experiments()
        for experiment in experiments:
            for found in _all_runs(client, experiment.experiment_id):
                info, data = found.info, found.data
                run = RawRun(source="mlflow", name=info.run_name or info.run_id, path=f"{uri}#{info.run_id}")
                run.config.update(data.params)
                run.tags.update({k: v for k, v in data.tags.items() if not k.startswith("mlflow.")})
                run.tags.setdefault("experiment", experiment.name)
                run.summary.update({k: float(v) for k, v in data.metrics.items()})
                for key in data.metrics if histories is None else set(data.metrics) & set(histories):
                    history = client.get_metric_history(info.run_id, key)
                    run.series[key] = [(float(m.step), float(m.value)) for m in history]
                yield run
    except MlflowException as exc:
        first = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0]
        raise DataError(f"{location}: cannot read the MLflow store ({first[:300]})") from None


def _all_runs(client: Any, experiment_id: str) -> Iterator[Any]:
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


# --- Weights & Biases ------------------------------------------------------------------------------------------


def _wandb_cli() -> list[str]:
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UserError("importing W&B runs needs 'wandb': pip install 'ftscale[import]'") from None
    script = Path(sys.executable).with_name("wandb")
    return [str(script)] if script.is_file() else [shutil.which("wandb") or "wandb"]


def read_wandb_offline(location: str) -> Iterator[RawRun]:
    """Offline (or synced) run directories, each holding a ``run-<id>.wandb`` transaction log, read with W&B's own
    reader: ``wandb leet inspect --json`` prints its records one JSON object a line."""
    root = Path(location)
    logs = [root] if root.is_file() else sorted(root.rglob("*.wandb"))
    for log in logs:
        try:
            done = subprocess.run(
                [*_wandb_cli(), "leet", "inspect", "--json", str(log)],
                capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_SILENT": "true"},
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataError(f"{log}: W&B's reader did not run ({exc})") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DataError(f"{log}: W&B cannot read this run ({last[:300]}); is wandb >= 0.31 installed?")
        run = RawRun(source="wandb", name=log.stem, path=str(log.parent))
        for line in done.stdout.splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            kind = record.get("type")
            if kind == "run":
                body = record["run"]
                run.name = body.get("display_name") or body.get("run_id") or run.name
                config = (body.get("config") or {}).get("update") or {}
                run.config.update(flatten({k: v for k, v in config.items() if k != "_wandb"}))
                run.tags.update({tag: "true" for tag in body.get("tags") or []})
                if body.get("project"):
                    run.tags.setdefault("project", body["project"])
            elif kind == "config":
                update = (record["config"] or {}).get("update") or {}
                run.config.update(flatten({k: v for k, v in update.items() if k != "_wandb"}))
            elif kind == "history":
                body = record["history"]
                items = body.get("item") or {}
                step = _number((body.get("step") or {}).get("num", items.get("_step")))
                for key, value in flatten(items).items():
                    number = _number(value)
                    if not key.startswith("_") and number is not None and step is not None:
                        run.series.setdefault(key, []).append((step, number))
            elif kind == "summary":
                update = flatten((record["summary"] or {}).get("update") or {})
                run.summary.update(
                    {k: v for k, v in ((k, _number(v)) for k, v in update.items()) if v is not None}
                )
        yield run


def read_wandb_export(location: str) -> Iterator[RawRun]:
    """A runs table exported from the W&B web app (CSV, or JSON records): one row a run, its ``Name`` and
    ``Tags`` columns, config and summary values as columns (every other column is both a config key and a
    summary metric)."""
    import pandas as pd

    path = Path(location)
    try:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_json(path, orient="records")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the W&B export ({str(exc).splitlines()[0][:200]})") from None
    columns = {c.lower(): c for c in frame.columns}
    name_column = columns.get("name") or columns.get("display_name") or columns.get("run")
    for index, row in frame.iterrows():
        values = {str(k): v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        name = str(values.get(name_column, f"row{index + 2}")) if name_column else f"row{index + 2}"
        run = RawRun(source="wandb-export", name=name, path=f"{path}#{name}")
        tags = values.pop(columns.get("tags", "Tags"), "")
        run.tags.update({t.strip(): "true" for t in str(tags).split(",") if t.strip()})
        run.config.update(flatten(values))
        run.summary.update({k: v for k, v in ((k, _number(v)) for k, v in values.items()) if v is not None})
        yield run
