"""``ftscale import``: runs people already have → the results table ``fit``, ``report`` and ``advise`` read."""

from __future__ import annotations

from pathlib import Path

import typer

from ftscale.cli._console import make_console

console = make_console()

_FIELD_HELP = (
    "Where a field comes from: NAME=KIND:VALUE with KIND key (a config key, dotted), tag, metric, "
    "regex (one group, on the run's name; regex@path, regex@tags), const. Fields: task, method, model_params, "
    "model_size, pretrain_tokens, checkpoint_kind, pet_size, ft_examples, seed, factor, heldout. Repeatable."
)


def import_command(
    locations: list[str] = typer.Argument(
        ...,
        metavar="SOURCE...",
        help="Trainer output directories, TensorBoard log directories, an mlruns/ directory or MLflow tracking "
        "URI, W&B run directories (wandb/), or a W&B runs export (.csv / .json).",
    ),
    out: Path = typer.Option(..., "--out", help="The results table to write (.csv or .parquet)."),
    source: str | None = typer.Option(
        None,
        "--source",
        help="hf | tensorboard | mlflow | wandb | wandb-export (default: from what is there).",
    ),
    mapping_file: Path | None = typer.Option(
        None, "--mapping", help="YAML file with task, loss {metric, pick} and fields (see docs)."
    ),
    fields: list[str] = typer.Option([], "--field", help=_FIELD_HELP),
    loss: str | None = typer.Option(
        None, "--loss", help="The metric that is the loss (default: the source's eval loss, e.g. eval_loss)."
    ),
    pick: str | None = typer.Option(None, "--pick", help="best (lowest logged value, default) | last."),
    task: str | None = typer.Option(None, "--task", help="Task name of every run (default: 'task')."),
    metrics: list[str] = typer.Option(
        [],
        "--metric",
        help="An extra column from a metric, COLUMN=METRIC (e.g. bleu=eval_bleu), at the loss's step.",
    ),
) -> None:
    """Import finetuning runs (HF Trainer, TensorBoard, MLflow, W&B) into one results table: the columns of
    ``ftscale study export``, so ``ftscale fit/report/advise`` read it unchanged."""
    from ftscale.errors import UserError
    from ftscale.importers import import_runs, load_mapping
    from ftscale.study.store import write_table

    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UserError(f"--out {out}: name a .csv or .parquet file")
    mapping = load_mapping(mapping_file, fields=fields, loss=loss, pick=pick, task=task, metrics=metrics)
    table = import_runs(locations, mapping, source, notify=lambda line: console.print(line, markup=False))
    path = write_table(table, out, suffix.lstrip("."))
    by_method = table.groupby("method").size()
    counts = ", ".join(f"{count} {method}" for method, count in by_method.items())
    factors = ", ".join(
        f"{name} {int(table[f'in_{name}'].sum())}"
        for name in ("model_size", "pretrain_tokens", "pet_size")
        if table[f"in_{name}"].any()
    )
    console.print(f"imported {len(table)} runs ({counts}; factor runs: {factors or 'none'}) → {path}")
