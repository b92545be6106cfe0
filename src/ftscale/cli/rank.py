"""``ftscale rank``: rank candidates (base models) by the loss their fitted law predicts at a target data size."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import typer

from ftscale import CURVE_RESIDUAL
from ftscale.cli._console import make_console
from ftscale.cli.fit import _fmt

if TYPE_CHECKING:
    import pandas as pd

console = make_console()


def rank_command(
    csv: str = typer.Argument(
        ..., help="Results CSV: one row per run (long), or a Lin et al. (2024) wide table."
    ),
    target_d: float = typer.Option(
        ..., "--target-d", help="Data size N at which to compare the candidates (e.g. 1638400)."
    ),
    budget_d: float | None = typer.Option(
        None,
        "--budget-d",
        help="Budget M: fit only points with D_f <= M (default: every point); N must exceed M.",
    ),
    law: str = typer.Option(
        "rectified", help="rectified (Lin et al.) | vanilla | power: one law per candidate."
    ),
    candidate_col: str = typer.Option("model", "--candidate-col", help="Column naming the candidates."),
    d: str = typer.Option("ft_examples", "--d", help="Column of the finetuning data size D_f."),
    y: str = typer.Option("loss", "--y", help="Column of the loss."),
    bootstrap: int = typer.Option(
        200, help="Bootstrap resamples per candidate for prediction CIs and paired comparisons (0: none)."
    ),
    level: float = typer.Option(
        0.95,
        help="Confidence level of the intervals; also the share of paired resamples the top pick must win.",
    ),
    seed: int = typer.Option(0, help="Seed of the fits and the bootstrap."),
    residual: str = typer.Option(
        CURVE_RESIDUAL, help="Residual on log L (default, as `fit`) or on L (linear)."
    ),
    loss: str = typer.Option("huber", "--loss", help="huber (as `fit`) or lsq (plain least squares)."),
    solver: str = typer.Option("auto", help="auto | vp | multistart, as `fit`."),
    where: list[str] = typer.Option([], help="Keep only rows with COL=VALUE (repeatable), e.g. family=OPT."),
    zero_shot: bool = typer.Option(
        False,
        "--zero-shot",
        help="Fit the D_f = 0 (zero-shot) points too; only for forms defined there (rectified).",
    ),
    layout: str = typer.Option(
        "auto", help="auto | long | lin2024 (wide table, melted to ft_examples/loss)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Rank candidates by the loss a law fitted to their cheap runs (D_f <= M) predicts at N (Lin et al. 2024).

    Per candidate: fit the law to its points with D_f <= M, predict L(N) with a bootstrap percentile interval,
    rank by the prediction, and name the candidates the top pick does not beat in at least --level of the paired
    resamples (they cannot be told apart from it with these runs).
    """
    import json

    from ftscale.laws.forms import zero_shot_law
    from ftscale.laws.io import parse_where, read_points
    from ftscale.laws.ranking import rank_candidates, ranking_to_dict

    law_key = law.strip().lower()
    if zero_shot:
        zero_shot_law(law_key)
    filters = parse_where(where)
    extra = [candidate_col, *(col for col, _ in filters)]
    zero_ok = [d] if zero_shot else []
    points = read_points(csv, sizes=[d], y=y, extra=extra, layout=layout, zero_ok=zero_ok, where=filters)
    table = rank_candidates(
        points,
        target_d=target_d,
        budget_d=budget_d,
        candidate=candidate_col,
        d=d,
        y=y,
        law=law_key,
        bootstrap=bootstrap,
        seed=seed,
        level=level,
        residual=residual,
        loss=loss,
        solver=solver,
    )
    if json_output:
        sys.stdout.write(json.dumps({"file": str(csv), **ranking_to_dict(table)}) + "\n")
        return
    _print_ranking(table, zero_shot_points=int((points[d] == 0).sum()) if zero_shot else None)


def _size(value: float) -> str:
    """A data size as people write it: 1638400 -> 1,638,400; non-integers as %g."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _print_ranking(table: pd.DataFrame, zero_shot_points: int | None) -> None:
    """The ranking as a rich table, then which candidates the top pick cannot be told apart from."""
    from rich import box
    from rich.table import Table

    attrs = table.attrs
    records = table.to_dict("records")
    d_col, y_col = attrs["d"], attrs["y"]
    budget = "all runs" if attrs["budget_d"] is None else f"runs with {d_col} ≤ {_size(attrs['budget_d'])}"
    title = f"{attrs['law']} law: {y_col} predicted at {d_col} = {_size(attrs['target_d'])} from {budget}"
    pct = f"{attrs['level']:.0%}"
    boot = attrs["bootstrap"] > 0
    same_d = len({r["d_budget"] for r in records}) == 1  # the usual case: one column shown in the caption
    caption = "n: points fitted; " + (
        f"L(M): observed {y_col} at {d_col} = {_size(records[0]['d_budget'])}"
        if same_d
        else f"d_M: largest {d_col} fitted; L(M): its observed {y_col}"
    )
    caption += "; L̂(N): prediction"
    if boot:
        caption += (
            f"; low/high: {pct} percentile interval of {attrs['bootstrap']} resamples; P: share of paired "
            "resamples in which the top pick predicts the lower loss"
        )
    out = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    columns = ["#", "candidate", "n", *([] if same_d else ["d_M"]), "L(M)", "L̂(N)"]
    columns += ["low", "high", "P"] if boot else []
    widths = {"#": 2, "n": 2, "d_M": 7, "P": 4}  # the rest are losses, 6 characters in the .4g format
    for col in columns:
        if col == "candidate":
            out.add_column(col, overflow="fold")
        else:  # numbers keep their width; a long candidate name folds on a narrow terminal
            out.add_column(col, justify="right", no_wrap=True, min_width=widths.get(col, 6))
    for row in records:
        cells = [str(row["rank"]), row["candidate"], str(row["n_points"])]
        cells += [] if same_d else [_size(row["d_budget"])]
        cells += [_fmt(row["loss_budget"]), _fmt(row["predicted"])]
        if boot:
            p_better = row["p_top_better"]
            undefined = p_better is None or math.isnan(p_better)
            cells += [_fmt(row["low"]), _fmt(row["high"]), "–" if undefined else _fmt(p_better, ".2f")]
        out.add_row(*cells)
    console.print(out)

    top = records[0]["candidate"]
    if zero_shot_points == 0:
        console.print(
            f"[yellow]note[/] --zero-shot: the table has no {attrs['d']} = 0 points", highlight=False
        )
    if not boot:
        console.print("[yellow]note[/] no bootstrap: rerun with --bootstrap N to tell close candidates apart")
    elif len(records) > 1:
        close = [r for r in records[1:] if r["indistinguishable"]]
        if close:
            names = ", ".join(f"{r['candidate']} (P = {r['p_top_better']:.2f})" for r in close)
            console.print(
                f"[yellow]cannot tell apart[/] from the top pick {top}: {names} — the top pick predicts the lower "
                f"loss in fewer than {pct} of the paired resamples",
                highlight=False,
            )
        else:
            console.print(
                f"top pick {top} predicts a lower loss than every other candidate in at least {pct} of the "
                "paired resamples",
                highlight=False,
            )
    for row in records:
        if not row["converged"]:
            console.print(f"[yellow]warning[/] {row['candidate']}: the fit did not converge", highlight=False)
        for warning in row["warnings"]:
            console.print(f"[yellow]warning[/] {row['candidate']}: {warning}", highlight=False)
