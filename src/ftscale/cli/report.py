"""CLI commands of the analysis and report layers (``report``, ``advise``, ``fit``, ``reproduce``) as typer
functions for the main app.

Register them with ``app.command("report")(report)`` etc.; every user mistake raises a ``UserError`` that the
main entry point prints as one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ftscale.cli._console import make_console

console = make_console()


def _fit_only_requested(x: str | None, y: str | None, d: str | None) -> bool:
    return any(v is not None for v in (x, y, d))


def _fit_only(
    study: Path,
    x: str | None,
    y: str | None,
    d: str | None,
    factor: str | None,
    max_models: int | None,
    method: str | None = None,
) -> None:
    from ftscale.analysis import analyse_points, load_points
    from ftscale.errors import UserError
    from ftscale.report import tables

    if x is None:
        raise UserError("fit-only mode needs --x COLUMN (the other factor, e.g. model size)")
    result = analyse_points(
        load_points(study, x=x, y=y, d=d, factor=factor, method=method), max_models=max_models
    )
    console.print(f"[bold]Fit-only analysis of {result.source}[/]")
    for name, frame in (
        ("Joint laws per group", result.joint),
        ("Single-factor laws per model", result.single),
    ):
        console.print(f"\n[bold]{name}[/]")
        console.print(tables.to_markdown(frame.round(5)), markup=False)
    if len(result.crossings):
        console.print("\n[bold]Crossings of model pairs[/]")
        console.print(
            tables.to_markdown(result.crossings[["group", "model_a", "model_b", "description"]]), markup=False
        )
    for note in result.notes:
        console.print(f"note: {note}", markup=False)


def report(
    study: Path = typer.Argument(
        ..., help="Study directory (results.parquet/csv) or a results CSV/Parquet file"
    ),
    out: Path = typer.Option(
        Path("report"), "--out", help="Output directory for report.html, report.md, analysis.json"
    ),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples for CIs (0: none)"),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap"),
    x: str | None = typer.Option(None, "--x", help="Fit-only: column of the other factor X"),
    d: str | None = typer.Option(
        None, "--d", help="Fit-only: column of the finetuning data size (wide table if omitted)"
    ),
    y: str | None = typer.Option(None, "--y", help="Fit-only: column of the loss"),
    method: str | None = typer.Option(
        None, "--method", help="Fit-only: column of the method; each method gets its own laws (default: one)"
    ),
    factor: str | None = typer.Option(
        None, "--factor", help="Fit-only: column grouping rows into factors/families"
    ),
    max_models: int | None = typer.Option(
        None, "--max-models", help="Fit-only: single laws for at most N models per group"
    ),
) -> None:
    """Analyse a study and write a self-contained HTML report (or a fit-only analysis of any CSV)."""
    from ftscale.analysis import cached_analyse, load_results

    if _fit_only_requested(x, y, d):
        _fit_only(study, x, y, d, factor, max_models, method)
        return
    from ftscale.report.html import check_out_dir, write_report

    check_out_dir(out)  # before the analysis, which can take minutes

    analysis = cached_analyse(load_results(study), n_bootstrap=bootstrap, seed=seed)
    path = write_report(analysis, out)
    console.print(f"report written to {path / 'report.html'} (+ report.md, analysis.json)")
    print_findings(analysis)


def advise(
    study: Path = typer.Argument(..., help="Study directory or results file"),
    examples: int = typer.Option(..., "--examples", help="Your finetuning data budget (number of examples)"),
    model: str | None = typer.Option(
        None, "--model", help="Only this base model (default: every base model of the study)"
    ),
    candidates: list[str] | None = typer.Option(
        None, "--candidate", help="Candidate base sizes to compare (repeat; --model is compared too)"
    ),
    task: str | None = typer.Option(None, "--task", help="Task (needed when the study has several)"),
    bootstrap: int = typer.Option(
        200,
        "--bootstrap",
        help="Bootstrap resamples for the CI (the report's default: its analysis is reused)",
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Recommend a finetuning method (and base size) for a data budget, with predicted loss and CI.

    The study's analysis is cached: after ``ftscale report`` (or a first ``advise``) with the same bootstrap and
    seed, every further question is answered in seconds."""
    from ftscale.analysis import cached_analyse, load_results
    from ftscale.report.advise import advise as make_advice
    from ftscale.report.advise import check_examples

    check_examples(examples)  # before the analysis, which can take minutes
    analysis = cached_analyse(load_results(study), n_bootstrap=bootstrap, seed=seed)
    console.print(
        make_advice(analysis, examples, model=model, candidates=candidates or None, task=task).render()
    )


STUDY_HELDOUT = (
    "study",
    "largest",
    "none",
)  # held-out rules of a study's analysis (its plan's own, or a split)


def fit_study(study: Path, bootstrap: int = 200, seed: int = 0, heldout: str = "study") -> None:
    """Fit the joint laws of a study and print Table 4, held-out errors, critical sizes and findings."""
    from ftscale.analysis import cached_analyse, load_results
    from ftscale.errors import UserError
    from ftscale.report import tables

    if heldout not in STUDY_HELDOUT:
        raise UserError(
            f"--heldout {heldout!r}: a study's joint laws hold out by the study's plan ('study', its default), "
            "'largest' or 'none'; axis=value pairs are for one law on a CSV (--x/--d)"
        )
    split = (
        {} if heldout == "study" else {"heldout": heldout}
    )  # the default shares the report's cached analysis
    analysis = cached_analyse(load_results(study), n_bootstrap=bootstrap, seed=seed, **split)
    for task in analysis.tasks:
        console.print(f"\n[bold]Task {task}[/] — Table 4 (bootstrap CIs)")
        console.print(tables.to_markdown(tables.table4(analysis, task)), markup=False)
        console.print("[bold]Held-out error Δh[/]")
        console.print(tables.to_markdown(tables.table_errors(analysis, task)), markup=False)
        console.print("[bold]Critical data sizes[/]")
        console.print(tables.to_markdown(tables.table_critical(analysis, task)), markup=False)
    print_findings(analysis)


def print_findings(analysis) -> None:
    """The paper's findings as checked, each task's regime verdict first: findings out of regime describe the
    budget, not finetuning."""
    from ftscale.cli.study import print_warnings
    from ftscale.report import tables

    for task in analysis.tasks:
        verdict = tables.regime_verdict(analysis, task)
        color = "green" if verdict.startswith("In regime") else "yellow"
        console.print(f"[{color}]regime[/] {task}: ", end="")
        console.print(verdict, markup=False)
        print_warnings(analysis.regime[task].warnings if task in analysis.regime else [])
    colors = {"confirms": "green", "refutes": "red", "cannot tell": "yellow"}
    for f in analysis.findings:
        color = colors.get(f.verdict, "white")
        console.print(f"[{color}]{f.verdict:>11}[/] {f.task} {f.scope}: {f.statement} — ", end="")
        console.print(f.detail, markup=False)


def reproduce(
    results_dir: Path = typer.Argument(
        ..., metavar="RESULTS_DIR", help="Directory holding manifest.json and the results CSVs."
    ),
    doc: Path = typer.Option(..., "--doc", help="Markdown document with generated blocks."),
    check: bool = typer.Option(False, "--check", help="Compare instead of writing; exit 1 on differences."),
    plots: Path | None = typer.Option(None, "--plots", help="Also write key figures as PNGs here."),
) -> None:
    """Regenerate (or --check) the generated blocks of a reproduction write-up from committed results."""
    from ftscale.report.reproduction import reproduce as run_reproduction

    code = run_reproduction(results_dir, doc, check=check, plots=plots)
    if code:
        raise typer.Exit(code)
