"""``ftscale fit``: fit a scaling law to a results CSV and report its fit and held-out errors."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ftscale import CURVE_RESIDUAL
from ftscale.cli._console import make_console

console = make_console()


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
    for col in ("fit", "n fit/held", "Δe", "Δh", "floor h", "LoF p", "RMSElog e", "RMSElog h", "conv."):
        summary.add_column(col, justify="left" if col == "fit" else "right", no_wrap=col == "fit")
    for report in reports:
        summary.add_row(
            report.group if report.group is not None else report.law,
            f"{report.n_fit}/{report.n_heldout}",
            _fmt(report.delta_e, ".3g"),
            _fmt(report.delta_h, ".3g"),
            _fmt(report.noise_floor_h, ".2g"),
            _fmt(report.lack_of_fit_p, ".2g"),
            _fmt(report.rmse_log_fit, ".3g"),
            _fmt(report.rmse_log_heldout, ".3g"),
            "yes" if report.converged else "[red]no[/]",
        )
    console.print(summary)
    console.print(
        "floor h: the Δh of a law exact on every held-out cell's true mean, from the seed spread (√(2/π)·s/√n); "
        "LoF p: lack-of-fit F test of the fit cells against the seed noise (small p: the law misses by more "
        "than the seeds vary). Both need cells with several seeds.",
        highlight=False,
    )
    if any(report.predictions for report in reports):
        _print_predictions(reports)
    for report in reports:
        where = f"{report.group}: " if report.group is not None else ""
        if report.heldout_note:
            console.print(f"[yellow]note[/] {where}{report.heldout_note}", highlight=False)
        for warning in report.warnings:
            console.print(f"[yellow]warning[/] {where}{warning}", highlight=False)


def _print_predictions(reports: list) -> None:
    """One table of the requested predictions: the law's loss and, when bootstrapped, its interval."""
    from rich.table import Table

    with_ci = any("low" in row for report in reports for row in report.predictions)
    level = next((r.ci_level for r in reports if r.ci_level is not None), 0.95)
    with_x = any("x" in row for report in reports for row in report.predictions)
    columns = ["fit", *(["x"] if with_x else []), "d", "loss"]
    columns += [f"low {level:.0%}", f"high {level:.0%}", "se"] if with_ci else []
    table = Table(title="predicted loss", title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col == "fit" else "right")
    for report in reports:
        for row in report.predictions:
            cells = [report.group or report.law, *([_fmt(row.get("x"))] if with_x else [])]
            cells += [_fmt(row["d"]), _fmt(row["loss"], ".5g")]
            if with_ci:
                cells += [
                    _fmt(row.get("low"), ".5g"),
                    _fmt(row.get("high"), ".5g"),
                    _fmt(row.get("se"), ".3g"),
                ]
            table.add_row(*cells)
    console.print(table)


def _select_form(
    groups: list, *, x: str | None, d: str, y: str, heldout: object, zero_shot: bool, options: dict
):
    """Score the applicable forms on the FIT split of every group (held-out points stay unseen, so Δh remains a
    test of the chosen form) and choose one for all groups."""
    import pandas as pd

    from ftscale.laws.evaluation import split_points
    from ftscale.laws.forms import LAW_FORMS
    from ftscale.laws.selection import applicable_forms, compare_forms

    axes = [d] if x is None else [x, d]
    frames = []
    for name, frame in groups:
        fit_mask, _ = split_points(frame, axes, heldout)
        frames.append(frame[fit_mask].assign(_group=name))
    forms = [f for f in applicable_forms(x is not None) if LAW_FORMS[f].zero_d_ok or not zero_shot]
    group_column = "_group" if len(frames) > 1 else None
    return compare_forms(pd.concat(frames), x=x, d=d, y=y, forms=forms, groups=group_column, **options)


def _print_comparison(comparison) -> None:
    """The forms ranked by extrapolation error (the chosen one starred), then the one-sentence reason."""
    from rich.table import Table

    from ftscale.laws.selection import SCHEMES

    rows = comparison.table().to_dict("records")
    schemes = [s for s in SCHEMES if any(r[s] == r[s] for r in rows)]  # schemes that ran for some form
    table = Table(title="forms by extrapolation error (RMSE of log loss)", title_justify="left")
    for col in ("form", "k", "score", *schemes, "fit", "AIC", "BIC", "conv."):
        table.add_column(col, justify="left" if col == "form" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["form"] + (" *" if row["form"] == comparison.chosen else ""),
            str(row["params"]),
            *(_fmt(row[col], ".3g") for col in ("score", *schemes, "rmse_log_fit")),
            _fmt(row["aic"], ".0f"),
            _fmt(row["bic"], ".0f"),
            "yes" if row["converged"] else "[red]no[/]",
        )
    console.print(table)
    console.print(f"chosen: {comparison.reason}", highlight=False)


def _report_comparison(comparison, *, csv: str, json_output: bool) -> None:
    import json

    if json_output:
        sys.stdout.write(json.dumps({"file": str(csv), "law": "compare", **comparison.to_dict()}) + "\n")
        return
    _print_comparison(comparison)


def fit_command(
    csv: str = typer.Argument(
        ..., help="Results CSV: one row per run (long), or a Lin et al. (2024) wide table."
    ),
    law: str = typer.Option(
        "multiplicative",
        help="multiplicative | additive | rectified-joint (need --x and --d) | power | rectified | vanilla | m3 | "
        "m4 | broken (need only --d) | auto (the form that extrapolates best) | compare (every form's errors).",
    ),
    x: str | None = typer.Option(
        None, "--x", help="Column of the other factor X (model size, tokens, PET size)."
    ),
    d: str = typer.Option("d", "--d", help="Column of the finetuning data size D_f."),
    y: str = typer.Option("loss", "--y", help="Column of the loss (mean target-token NLL, nats)."),
    heldout: str | None = typer.Option(
        None,
        help="'largest' (every point on the largest value of any axis; the default for a CSV), 'none', or "
        "axis=value pairs such as x=16e9,d=100000 (several values of one axis: d=9e5;1e6). A study's laws: "
        "'study' (its plan's held-out runs, the default), 'largest' or 'none'.",
    ),
    bootstrap: int | None = typer.Option(
        None, help="Bootstrap resamples for parameter CIs (default: 0 for a CSV, 200 for a study directory)."
    ),
    level: float = typer.Option(0.95, help="Confidence level of the bootstrap intervals."),
    seed: int = typer.Option(0, help="Seed of the fit and the bootstrap."),
    residual: str = typer.Option(
        CURVE_RESIDUAL,
        help="Residual on log L (default: extrapolates finetuning curves better, bench/RESULTS.md) or on L "
        "(linear, as the paper prints).",
    ),
    loss: str = typer.Option(
        "huber", "--loss", help="huber (the paper's, with --huber-delta) or lsq (plain least squares)."
    ),
    huber_delta: float = typer.Option(1e-3, "--huber-delta", help="δ of the Huber loss."),
    solver: str = typer.Option(
        "auto",
        help="auto (variable projection where the form allows, else multistart) | vp | multistart (L-BFGS from "
        "a grid of starts, the reference).",
    ),
    predict: list[str] = typer.Option(
        [],
        help="Predict the loss at a point, e.g. d=1638400 or x=1e9,d=1e5 (repeatable); with --bootstrap N the "
        "interval of the N resamples' predictions (200 resamples when --bootstrap is not given).",
    ),
    zero_shot: bool = typer.Option(
        False,
        "--zero-shot",
        help="Keep D_f = 0 (zero-shot) points as data, for forms defined there (rectified); a Lin et al. table "
        "then keeps its 0 column. Without it such rows are an error (long CSV) or dropped (Lin et al. table).",
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

        fit_study(
            Path(csv),
            bootstrap=200 if bootstrap is None else bootstrap,
            seed=seed,
            heldout=heldout or "study",
        )
        return
    heldout = heldout or "largest"
    bootstrap = (200 if predict else 0) if bootstrap is None else bootstrap

    from ftscale.errors import FitError
    from ftscale.laws.evaluation import evaluate_fit
    from ftscale.laws.forms import JOINT_LAWS, law_class, zero_shot_law
    from ftscale.laws.io import parse_heldout, parse_predict, parse_where, read_points

    law_key = law.strip().lower()
    selecting = law_key in ("auto", "compare")  # the form is chosen after the data are read
    if not selecting:
        (zero_shot_law if zero_shot else law_class)(law_key)  # an unknown form is one line, before any work
        if law_key in JOINT_LAWS and x is None:
            raise FitError(
                f"law {law_key} is joint in (X, D_f): name the X column with --x (and D_f with --d)"
            )
        if law_key not in JOINT_LAWS and x is not None:
            raise FitError(
                f"law {law_key} depends on D_f only: drop --x {x} (or fit one law per X with --group {x})"
            )
    if bootstrap < 0:
        raise FitError(f"--bootstrap must be >= 0, got {bootstrap}")
    if not 0 < level < 1:
        raise FitError(f"--level must lie in (0, 1), got {level}")
    filters = parse_where(where)
    sizes = [d] if x is None else [x, d]
    extra = [c for c in [group, *(col for col, _ in filters)] if c is not None]
    zero_ok = [d] if zero_shot else []
    points = read_points(csv, sizes=sizes, y=y, extra=extra, layout=layout, zero_ok=zero_ok, where=filters)
    axis_columns = {"d": d} if x is None else {"x": x, "d": d}
    heldout_rule = parse_heldout(heldout, axis_columns)
    points_to_predict = parse_predict(predict, axis_columns)
    options = {
        "residual": residual,
        "loss": loss,
        "huber_delta": huber_delta,
        "reduction": reduction,
        "seed": seed,
        "solver": solver,
    }

    groups = [(None, points)]
    if group is not None:
        groups = [
            (f"{k:g}" if isinstance(k, float) else str(k), g) for k, g in points.groupby(group, sort=True)
        ]
    comparison = None
    if selecting:
        comparison = _select_form(
            groups, x=x, d=d, y=y, heldout=heldout_rule, zero_shot=zero_shot, options=options
        )
        if law_key == "compare":
            _report_comparison(comparison, csv=csv, json_output=json_output)
            return
        law_key = comparison.chosen
    estimator = law_class(law_key)(**options)
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
                predict=points_to_predict,
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
            "loss": loss,
            "huber_delta": huber_delta,
            "solver": solver,
            "reduction": reduction,
            "zero_shot": zero_shot,
            "bootstrap": bootstrap,
            "seed": seed,
            "fits": [r.to_dict() for r in reports],
            "selection": None if comparison is None else comparison.to_dict(),
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    if comparison is not None:
        _print_comparison(comparison)
    _print_fit_reports(reports, title=f"{law_key} law on {csv}: Δ = mean |L̂ − L| (held out: {heldout})")
