"""``ftscale fit``: fit a scaling law to a results CSV and report its fit and held-out errors."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

console = Console()


# ----- ftscale fit ------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".4g") -> str:
    if value is None:
        return "–"
    try:
        return format(value, spec)  # NaN formats as "nan"
    except (TypeError, ValueError):
        return str(value)


def _print_fit_reports(reports: list, title: str) -> None:
    """Rich tables: one parameter table per fit (with CIs when bootstrapped), then one summary of errors."""
    from rich.table import Table

    for report in reports:
        heading = f"{report.law} law" + (f" — {report.group}" if report.group is not None else "")
        table = Table(title=heading, title_justify="left")
        table.add_column("param")
        table.add_column("estimate", justify="right")
        if report.ci is not None:
            pct = f"{report.ci_level:.0%}"
            for col in (f"low {pct}", f"high {pct}", "se"):
                table.add_column(col, justify="right")
        for name, value in report.params.items():
            row = [name, _fmt(value)]
            if report.ci is not None:
                ci = report.ci.loc[name] if name in report.ci.index else None
                row += [_fmt(None if ci is None else float(ci[c])) for c in ("low", "high", "se")]
            table.add_row(*row)
        console.print(table)

    summary = Table(title=title, title_justify="left")
    for col in ("fit", "n fit/held", "Δe", "Δh", "RMSElog e", "RMSElog h", "conv."):
        summary.add_column(col, justify="left" if col == "fit" else "right", no_wrap=col == "fit")
    for report in reports:
        summary.add_row(
            report.group if report.group is not None else report.law,
            f"{report.n_fit}/{report.n_heldout}",
            _fmt(report.delta_e, ".3g"),
            _fmt(report.delta_h, ".3g"),
            _fmt(report.rmse_log_fit, ".3g"),
            _fmt(report.rmse_log_heldout, ".3g"),
            "yes" if report.converged else "[red]no[/]",
        )
    console.print(summary)
    for report in reports:
        where = f"{report.group}: " if report.group is not None else ""
        if report.heldout_note:
            console.print(f"[yellow]note[/] {where}{report.heldout_note}", highlight=False)
        for warning in report.warnings:
            console.print(f"[yellow]warning[/] {where}{warning}", highlight=False)


def fit_command(
    csv: str = typer.Argument(
        ..., help="Results CSV: one row per run (long), or a Lin et al. (2024) wide table."
    ),
    law: str = typer.Option(
        "multiplicative",
        help="multiplicative | additive (need --x and --d) | power | rectified | vanilla (need only --d).",
    ),
    x: str | None = typer.Option(
        None, "--x", help="Column of the other factor X (model size, tokens, PET size)."
    ),
    d: str = typer.Option("d", "--d", help="Column of the finetuning data size D_f."),
    y: str = typer.Option("loss", "--y", help="Column of the loss (mean target-token NLL, nats)."),
    heldout: str = typer.Option(
        "largest",
        help="'largest' (every point on the largest value of any axis), 'none', or axis=value "
        "pairs such as x=16e9,d=100000 (several values of one axis: d=9e5;1e6).",
    ),
    bootstrap: int | None = typer.Option(
        None, help="Bootstrap resamples for parameter CIs (default: 0 for a CSV, 200 for a study directory)."
    ),
    level: float = typer.Option(0.95, help="Confidence level of the bootstrap intervals."),
    seed: int = typer.Option(0, help="Seed of the fit and the bootstrap."),
    residual: str = typer.Option(
        "linear", help="Huber residual on L (linear, as the paper prints) or log L."
    ),
    reduction: str = typer.Option("sum", help="Sum or mean of the Huber losses."),
    group: str | None = typer.Option(None, help="Fit one law per value of this column (e.g. model, method)."),
    where: list[str] = typer.Option([], help="Keep only rows with COL=VALUE (repeatable), e.g. family=OPT."),
    layout: str = typer.Option(
        "auto", help="auto | long | lin2024 (wide table, melted to ft_examples/loss)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Fit a scaling law to a results CSV (parameters, Δe, Δh, RMSE of log loss), or a study's joint laws.

    Given a study directory (or its exported results with --law study), fits the paper's two-stage joint laws
    per task and method and prints Table 4, the held-out errors, critical data sizes and the findings check.
    """
    import json

    if Path(csv).is_dir() or law.strip().lower() == "study":
        from ftscale.cli.report import fit_study

        fit_study(Path(csv), bootstrap=200 if bootstrap is None else bootstrap, seed=seed)
        return
    bootstrap = 0 if bootstrap is None else bootstrap

    from ftscale.errors import DataError, FitError
    from ftscale.laws.evaluation import evaluate_fit
    from ftscale.laws.forms import JOINT_LAWS, law_class
    from ftscale.laws.io import parse_heldout, read_points

    law_key = law.strip().lower()
    law_cls = law_class(law_key)
    if law_key in JOINT_LAWS and x is None:
        raise FitError(f"law {law_key} is joint in (X, D_f): name the X column with --x (and D_f with --d)")
    if law_key not in JOINT_LAWS and x is not None:
        raise FitError(
            f"law {law_key} depends on D_f only: drop --x {x} (or fit one law per X with --group {x})"
        )
    if bootstrap < 0:
        raise FitError(f"--bootstrap must be >= 0, got {bootstrap}")
    if not 0 < level < 1:
        raise FitError(f"--level must lie in (0, 1), got {level}")
    filters = []
    for item in where:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise DataError(f"--where {item!r}: expected COL=VALUE, e.g. family=OPT")
        filters.append((column.strip(), value.strip()))
    sizes = [d] if x is None else [x, d]
    extra = [c for c in [group, *(col for col, _ in filters)] if c is not None]
    points = read_points(csv, sizes=sizes, y=y, extra=extra, layout=layout)
    for column, value in filters:
        points = points[points[column].astype(str) == value]
        if points.empty:
            raise DataError(f"{csv}: no rows left after --where {column}={value}")
    axis_columns = {"d": d} if x is None else {"x": x, "d": d}
    heldout_rule = parse_heldout(heldout, axis_columns)
    estimator = law_cls(residual=residual, reduction=reduction, seed=seed)

    groups = [(None, points)]
    if group is not None:
        groups = [
            (f"{k:g}" if isinstance(k, float) else str(k), g) for k, g in points.groupby(group, sort=True)
        ]
    reports = []
    for name, frame in groups:
        label = None if name is None else f"{group}={name}"
        reports.append(
            evaluate_fit(
                estimator,
                frame,
                x=x,
                d=d,
                y=y,
                heldout=heldout_rule,
                bootstrap=bootstrap,
                seed=seed,
                level=level,
                group=label,
            )
        )

    if json_output:
        payload = {
            "file": str(csv),
            "law": law_key,
            "x": x,
            "d": d,
            "y": y,
            "heldout": heldout,
            "residual": residual,
            "reduction": reduction,
            "bootstrap": bootstrap,
            "seed": seed,
            "fits": [r.to_dict() for r in reports],
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    _print_fit_reports(reports, title=f"{law_key} law on {csv}: Δ = mean |L̂ − L| (held out: {heldout})")
