"""``ftscale study run | plan | status | export``: run a study grid, inspect it, export its results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from ftscale.cli._console import make_console
from ftscale.errors import EXIT_JOBS_FAILED, UserError
from ftscale.study.regime import MAX_BUDGET_BOUND_SHARE, MAX_PRETRAIN_EPOCHS

study_app = typer.Typer(
    help="Run a scaling study (a grid of pretraining and finetuning jobs) and inspect its store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = make_console()


@study_app.command("run")
def run_command(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml", help="The study specification."),
    study_dir: Path = typer.Option(
        ..., "--dir", help="Study directory (created; rerun the same command to resume)."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        help="Jobs run at once (local: a process pool splitting cores; slurm: jobs queued or running at once, "
        "default every job that is ready).",
    ),
    backend: str = typer.Option(
        "local",
        "--backend",
        help="Where jobs run: local (this machine), ray (a Ray cluster) or slurm (Slurm job arrays through "
        "submitit, with the resources of execution.slurm in STUDY.yaml).",
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: start one locally); only with --backend ray."
    ),
    max_retries: int = typer.Option(2, "--max-retries", help="Retries of a failed job within this run."),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Also rerun jobs that failed for good (diverged runs); a rerun always retries jobs that failed "
        "with an error.",
    ),
    force: bool = typer.Option(False, "--force", help="Run even if DIR holds a different spec."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    until: str | None = typer.Option(
        None,
        "--until",
        help="Stop after this kind of job: tokenizer | pretrain | baseline (e.g. pretrain, then 'lr-sweep').",
    ),
) -> None:
    """Run every job of STUDY.yaml that is not done yet in DIR (resumes after a crash)."""
    from ftscale.study.driver import resolve_job_function, run_study
    from ftscale.study.executors import check_backend
    from ftscale.study.spec import load_spec, resolve_spec_path

    spec = load_spec(spec_path)
    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    if max_retries < 0:
        raise UserError(f"--max-retries {max_retries}: must be >= 0")
    check_backend(backend, address)
    job_fn = resolve_job_function()
    summary = run_study(
        spec,
        study_dir,
        job_fn,
        backend=backend,
        workers=workers,
        address=address,
        max_retries=max_retries,
        progress=not no_progress,
        force=force,
        spec_text=resolve_spec_path(spec_path).read_text(encoding="utf-8", errors="replace"),
        until=until,
        retry_failed=retry_failed,
    )
    console.print(
        f"study {spec.name}: {summary.done}/{summary.total} jobs done, {summary.failed} failed "
        f"({summary.executed} attempts in this run) → {study_dir}"
        + (f"; {summary.reused} family jobs reused from {summary.cache}" if summary.reused else "")
        + (f"; jobs after '{until}' left for a run without --until" if until else ""),
        highlight=False,
    )
    if summary.failed:
        print_failures(summary, study_dir, retry_hint="the same command with --retry-failed")
        raise typer.Exit(EXIT_JOBS_FAILED)


def print_failures(summary, study_dir: Path, retry_hint: str, limit: int = 10) -> None:
    """The failed jobs of a run (label, id, reason) and what a rerun does with them."""
    err = make_console(stderr=True)
    for job_id, reason in list(summary.failed_jobs.items())[:limit]:
        label = summary.labels.get(job_id, "")
        err.print(f"  [red]failed[/] {label} ({job_id[:12]}): {reason}", highlight=False, soft_wrap=True)
    if summary.failed > limit:
        err.print(f"  ... and {summary.failed - limit} more")
    final = len(summary.final)
    again = summary.failed - final
    parts = []
    if again:
        parts.append(
            "rerun the same command to retry jobs that failed with an error (and those they blocked)"
        )
    if final:
        parts.append(f"{final} failed for good (diverged) and run again only with {retry_hint}")
    err.print(f"see 'ftscale study status {study_dir}'; " + "; ".join(parts), highlight=False, soft_wrap=True)


@study_app.command("plan")
def plan_command(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml"),
    data: bool = typer.Option(False, "--data", help="Also load the task and print its split sizes."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan and its regime checks as JSON."),
) -> None:
    """Print the jobs the study expands to (per kind and per factor × method) and whether it is in regime: per
    base model its parameters, pretraining tokens and tokens per parameter, per finetuning cell the steps and epochs
    its budget allows, and one warning line per problem. Runs nothing."""
    from ftscale.study.plan import build_plan
    from ftscale.study.regime import plan_regime
    from ftscale.study.spec import load_spec

    spec = load_spec(spec_path)
    splits = None
    if data:
        from ftscale.data.corpus import task_data
        from ftscale.study.jobs import preflight

        preflight(spec)  # the same checks as 'study run': missing files, unknown zero-shot directions
        splits = task_data(spec.task.model_dump(mode="json"))
    plan = build_plan(spec)
    counts = plan.counts()
    regime = plan_regime(spec)
    if as_json:
        payload = {
            "study": spec.name,
            "jobs": {"total": counts["total"], "kinds": counts["kinds"], "shared": counts["shared"]},
            "factors": [
                {"factor": factor, "method": method, **cell}
                for (factor, method), cell in sorted(counts["factors"].items())
            ],
            **regime.to_dict(),
        }
        if splits is not None:
            payload["data"] = _split_sizes(splits)
        print(json.dumps(payload, indent=2))
        return
    if splits is not None:
        sizes = ", ".join(f"{name} {n:,}" for name, n in _split_sizes(splits).items())
        pool = f" (train pool capped at {spec.task.train_pool:,})" if spec.task.train_pool else ""
        console.print(f"task {splits.task.name}: {sizes}{pool}", highlight=False, soft_wrap=True)
    table = Table(title=f"study {spec.name}: {counts['total']} jobs")
    table.add_column("factor")
    table.add_column("method")
    table.add_column("runs", justify="right")
    table.add_column("held out", justify="right")
    for (factor, method), cell in sorted(counts["factors"].items()):
        table.add_row(factor, method, str(cell["runs"]), str(cell["heldout"]))
    console.print(table)
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts["kinds"].items())
    console.print(f"jobs: {kinds}; {counts['shared']} finetuning runs are shared by several factors")
    print_models(regime.models, title="base models")
    budget = Table(title="finetuning budget per cell (early stopping may end a run sooner)")
    for column in ("method", "D_f", "batch", "steps", "epochs", "set by", "dev loss every"):
        budget.add_column(column, justify="left" if column in ("method", "set by") else "right")
    for cell in regime.cells:
        budget.add_row(
            cell.method,
            f"{cell.ft_examples:,}",
            str(cell.batch_size),
            f"{cell.steps:,}",
            f"{cell.epochs:.3g}",
            "step cap" if cell.capped_by == "steps" else "max_epochs",
            f"{cell.eval_every:,} steps" if cell.eval_every is not None else "–",
        )
    console.print(budget)
    print_warnings(regime.warnings)


def _split_sizes(splits) -> dict[str, int]:
    sizes = {"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)}
    sizes.update({f"zero-shot {name}": len(ex) for name, ex in sorted(splits.zero_shot.items())})
    return sizes


def _count(value: int | float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def print_models(models, title: str) -> None:
    """The base models' parameters, pretraining tokens, tokens per parameter and (after pretraining) val loss."""
    if not models:
        return
    table = Table(title=title)
    for column in ("size", "non-embedding", "total params", "pretrain tokens", "tokens/param", "val loss"):
        table.add_column(column, justify="left" if column == "size" else "right")
    for m in models:
        ratio = m.tokens_per_param
        table.add_row(
            m.name,
            _count(m.non_embedding_params),
            _count(m.total_params),
            _count(m.pretrain_tokens),
            "unknown" if ratio is None else f"{ratio:.3g}",
            "–" if m.val_loss is None else f"{m.val_loss:.4f}",
        )
    console.print(table)


def print_warnings(warnings: list[str]) -> None:
    for line in warnings:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


@study_app.command("status")
def status_command(
    study_dir: Path = typer.Argument(..., metavar="DIR"),
    as_json: bool = typer.Option(False, "--json", help="Print the counts and regime checks as JSON."),
) -> None:
    """Counts of done / running / failed / pending jobs per kind and factor, the failures' reasons, and whether the
    study is in regime: the budget-bound share of finished finetuning runs (best dev loss at their last
    evaluation) per method and D_f, the base models' tokens per parameter and validation losses, and one warning
    line per problem."""
    from ftscale.study.regime import results_regime
    from ftscale.study.results import results_table
    from ftscale.study.slurm import submitted_slurm_jobs
    from ftscale.study.store import Store

    with Store.open(study_dir) as store:
        rows = store.rows()
        active = store.lock_is_held()
        current = store.meta("spec_hash")
    # Jobs of an older plan (kept after 'study run --force' with a changed spec) are not part of this study.
    older = [row for row in rows if current is not None and row["spec_hash"] != current]
    rows = [row for row in rows if current is None or row["spec_hash"] == current]
    statuses = ("done", "running", "failed", "pending")
    groups: dict[str, dict[str, int]] = {}
    for row in rows:
        keys = [row["kind"]] + [f"  {row['kind']} · {factor}" for factor in sorted(row["factors"] or {})]
        for key in keys:
            counts = groups.setdefault(key, dict.fromkeys(statuses, 0))
            counts[row["status"]] += 1
    regime = results_regime(results_table(study_dir))
    if as_json:
        payload = {
            "study_dir": str(study_dir),
            "active": active,
            "jobs": {key.strip(): counts for key, counts in groups.items()},
            "older_plan_jobs": len(older),
            "failed": [
                {"id": row["id"], "label": row["label"], "reason": row["reason"], "kind": row["failure_kind"]}
                for row in rows
                if row["status"] == "failed"
            ],
            **regime.to_dict(),
        }
        print(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{study_dir}: {len(rows)} jobs" + ("" if active else " (no run active)"))
    table.add_column("kind · factor")
    for name in statuses:
        table.add_column(name, justify="right")
    for key, counts in groups.items():
        table.add_row(key, *(str(counts[name]) for name in statuses))
    console.print(table)
    if older:
        done = sum(row["status"] == "done" for row in older)
        console.print(
            f"{len(older)} job(s) of an older plan are kept but not run ({done} done); not counted above"
        )
    stale = [row for row in rows if row["status"] == "running"]
    submitted = submitted_slurm_jobs(study_dir)
    if stale and not active:
        console.print(
            f"[yellow]{len(stale)} job(s) marked running belong to a stopped run; rerun to resume[/]"
        )
    if submitted and not active:
        console.print(
            f"[yellow]{len(submitted)} Slurm job(s) submitted by a stopped run may still be queued or running; "
            "'study run --backend slurm' follows them to their end[/]"
        )
    failed = [row for row in rows if row["status"] == "failed"]
    for row in failed[:20]:
        final = " [dim](for good: rerun with --retry-failed)[/]" if row["failure_kind"] == "final" else ""
        console.print(
            f"[red]failed[/] {row['label']} ({row['id'][:12]}): {row['reason']}{final}", highlight=False
        )
    if len(failed) > 20:
        console.print(f"... and {len(failed) - 20} more failed jobs")
    print_regime(regime)


def print_regime(regime) -> None:
    """The regime checks of finished runs: base models (with the ladder's order) and budget-bound runs."""
    print_models(regime.models, title="base models (final checkpoints)")
    if regime.ladder_ordered is not None:
        console.print(
            "ladder ordered by validation loss: " + ("yes" if regime.ladder_ordered else "[red]no[/]"),
            highlight=False,
        )
    if regime.budget_bound:
        table = Table(title="budget-bound runs: best dev loss at the last evaluation")
        for column in ("method", "D_f", "finished", "budget-bound", "share"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for cell in regime.budget_bound:
            table.add_row(
                cell.method,
                f"{cell.ft_examples:,}",
                str(cell.runs),
                str(cell.budget_bound),
                f"{cell.share:.0%}",
            )
        console.print(table)
        console.print(
            f"budget-bound share: {regime.budget_bound_share:.0%} of {regime.runs} finished runs "
            f"(in regime: ≤ {MAX_BUDGET_BOUND_SHARE:.0%})",
            highlight=False,
        )
    print_warnings(regime.warnings)


@study_app.command("reset")
def reset_command(
    study_dir: Path = typer.Argument(..., metavar="DIR"),
    jobs: list[str] = typer.Argument(
        ..., metavar="JOB...", help="Job ids (or 6+ character prefixes) or labels, e.g. 'pretrain s'."
    ),
) -> None:
    """Invalidate jobs: each named job and every job that depends on it becomes pending, its results are
    forgotten and its directory deleted; the next 'study run' recomputes them. Refused while a run is active."""
    from ftscale.study.driver import reset_jobs

    reset = reset_jobs(study_dir, jobs)
    for row in reset:
        console.print(f"reset {row['label']} ({row['id'][:12]}, was {row['status']})", highlight=False)
    console.print(f"{len(reset)} job(s) reset in {study_dir}; rerun 'ftscale study run' to recompute them")


@study_app.command("mix")
def mix_command(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml"),
    study_dir: Path = typer.Option(..., "--dir", help="Study directory whose tokenizer job is done."),
) -> None:
    """The pretraining mix of the study's base family: documents, characters and tokens per stream (language /
    source) within the pretraining budget, counted with the study's own tokenizer, and the epochs the run makes
    over each stream's text (a warning above 4)."""
    from ftscale.data.corpus import pretraining_mix
    from ftscale.study.jobs import TOKENIZER_DIR
    from ftscale.study.plan import build_plan, job_dir_name
    from ftscale.study.spec import load_spec
    from ftscale.study.store import Store

    spec = load_spec(spec_path)
    pre = spec.family.pretrain
    if pre is None:
        raise UserError(
            f"{spec_path}: the family is loaded from the hub; there is no pretraining mix to show"
        )
    plan = build_plan(spec)
    (tokenizer_job,) = [job for job in plan.jobs if job.kind == "tokenizer"]
    with Store.open(study_dir) as store:
        row = next((r for r in store.rows() if r["id"] == tokenizer_job.id), None)
    if row is None or row["status"] != "done":
        raise UserError(f"{study_dir}: the tokenizer job of {spec_path} is not done; run the study first")
    from ftscale.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(study_dir / "jobs" / job_dir_name(tokenizer_job) / TOKENIZER_DIR)
    rows = pretraining_mix(
        spec.task.model_dump(mode="json"), pre.corpus, tokenizer, pre.total_tokens, pre.seq_len
    )
    table = Table(
        title=f"pretraining mix of {spec.name}: {pre.total_tokens:,} tokens ({pre.corpus or 'task'} corpus)"
    )
    for column in ("stream", "documents", "characters", "tokens", "share", "of text", "epochs"):
        table.add_column(column, justify="left" if column == "stream" else "right")
    for r in rows:
        table.add_row(
            r["stream"],
            f"{r['documents']:,}",
            f"{r['characters']:,}",
            f"{r['tokens']:,}",
            f"{r['share']:.1%}",
            f"{r['available_tokens']:,}",
            f"{r['epochs']:.2f}",
        )
    console.print(table)
    repeated = [r for r in rows if r["epochs"] > MAX_PRETRAIN_EPOCHS]
    if repeated:
        listed = ", ".join(f"{r['stream']} {r['epochs']:.1f}" for r in repeated)
        print_warnings(
            [
                f"repeated pretraining text: {len(repeated)} stream(s) read more than {MAX_PRETRAIN_EPOCHS:g} "
                f"epochs ({listed}); give the corpus more text or lower family.pretrain.total_tokens"
            ]
        )


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: give comma-separated numbers, e.g. {option} 1e-3,3e-3") from None


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"{option} {text!r}: give comma-separated whole numbers, e.g. {option} 100,800"
        ) from None


@study_app.command("lr-sweep")
def lr_sweep_command(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml"),
    study_dir: Path = typer.Option(..., "--dir", help="Study directory whose base models are pretrained."),
    methods: str | None = typer.Option(None, "--methods", help="Comma-separated methods (default: all)."),
    factors: str = typer.Option(
        "0.1,0.3,1,3,10", "--factors", help="Rates swept: the spec's rate of each method times these."
    ),
    lrs: str | None = typer.Option(None, "--lrs", help="Sweep these rates instead (every chosen method)."),
    size: str | None = typer.Option(None, "--size", help="Model size to tune on (default: the smallest)."),
    ft_examples: str | None = typer.Option(
        None,
        "--ft-examples",
        help="Finetuning examples per run, comma-separated for several (default: the method's largest size).",
    ),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per rate; the mean best dev loss decides."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (default: all cores)."),
    out: Path | None = typer.Option(None, "--out", help="Also write every run as a CSV file."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Pick each method's learning rate on the smallest model, as the paper did on its smallest model: the
    study's own finetuning run with only the rate changed, scored by best dev loss (the test split is never
    read). Finished runs are kept in DIR/lr-sweep/; rerun to resume or to add rates and seeds."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ftscale.study.lrsweep import plan_sweep, run_sweep, summarise
    from ftscale.study.spec import load_spec

    spec = load_spec(spec_path)
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads}: must be >= 1")
    if out is not None and out.suffix.lower() != ".csv":
        raise UserError(f"--out {out}: give a .csv file name")
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else None
    runs = plan_sweep(
        spec,
        methods=chosen,
        lrs=_floats(lrs, "--lrs"),
        factors=_floats(factors, "--factors") or [],
        size=size,
        ft_examples=_ints(ft_examples, "--ft-examples"),
        seeds=seeds,
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=no_progress,
        console=console,
    )
    with progress:
        task = progress.add_task("lr sweep", total=len(runs))

        def on_run(run, done: int, total: int) -> None:
            if run is not None:
                progress.update(task, completed=done, description=f"lr sweep · {run.method} lr={run.lr:g}")

        finished = run_sweep(spec, study_dir, runs, threads=threads, on_run=on_run)
    if out is not None:
        from dataclasses import asdict

        import pandas as pd

        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([asdict(run) for run in finished]).to_csv(out, index=False)
    size_name = finished[0].size if finished else "?"
    for choice in summarise(finished, spec):
        table = Table(
            title=f"{choice.method} · {size_name} · {choice.ft_examples:,} examples · {seeds} seed(s)"
        )
        table.add_column("lr", justify="right")
        table.add_column("best dev loss", justify="right")
        if seeds > 1:
            table.add_column("± std", justify="right")
        table.add_column("at step", justify="right")
        table.add_column("")
        for lr, loss in choice.losses.items():
            marks = [m for m, on in (("best", lr == choice.best_lr), ("spec", lr == choice.spec_lr)) if on]
            row = [f"{lr:g}", f"{loss:.4f}" if math.isfinite(loss) else "diverged"]
            if seeds > 1:
                row.append(f"{choice.spreads[lr]:.4f}")
            row.append(f"{choice.best_steps[lr]:.0f}")
            table.add_row(*row, ", ".join(marks))
        console.print(table)
        gap = choice.spec_gap
        verdict = f"{choice.method} at {choice.ft_examples:,} examples: best lr {choice.best_lr:g} (spec {choice.spec_lr:g}"
        verdict += f", {gap:+.4f} nats worse)" if gap is not None and gap > 0 else ")"
        if choice.at_edge:
            verdict += " [yellow]at the edge of the grid: widen --factors[/]"
        console.print(verdict, highlight=False)
    if out is not None:
        console.print(f"wrote {out}")


@study_app.command("export")
def export_command(
    study_dir: Path = typer.Argument(..., metavar="DIR"),
    fmt: str = typer.Option("csv", "--format", help="csv | parquet"),
    out: Path = typer.Option(..., "--out", help="Output file."),
    raw: bool = typer.Option(
        False, "--raw", help="Every job as stored (tokenizer and pretraining jobs too, JSON columns kept)."
    ),
    baselines: bool = typer.Option(
        False,
        "--baselines",
        help="Also write one row per un-finetuned base model (method 'base'): the report's zero-/few-shot reference.",
    ),
) -> None:
    """Export the results: one row per finetuning run in the report's columns (``ftscale report FILE`` reads it),
    with ``--baselines`` plus one row per base model evaluated without finetuning, or with ``--raw`` one row per
    job as stored (axes, factors, held-out flags, metrics, timings)."""
    from ftscale.study.results import export_results
    from ftscale.study.store import Store

    if fmt not in ("csv", "parquet"):
        raise UserError(f"--format {fmt!r}: choose csv or parquet")
    if raw and baselines:
        raise UserError(
            "--baselines: --raw already exports every job, baselines included; use one of the two"
        )
    if raw:
        with Store.open(study_dir) as store:
            path = store.export(out, fmt)
    else:
        path = export_results(study_dir, out, fmt, baselines=baselines)
    console.print(f"wrote {path}")
