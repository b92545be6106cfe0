"""``ftscale demo``: the tiny study end to end, or (``--points``) the paper's laws recovered from synthetic points."""

from __future__ import annotations

from pathlib import Path

import typer

from ftscale import paper
from ftscale.cli._console import make_console
from ftscale.errors import EXIT_JOBS_FAILED, UserError

console = make_console()


# ----- ftscale demo (synthetic points until the study orchestration lands) ----------------------------------

# The paper's Table 4, WMT En-De: per method the model-size law (A_m, α_m), the pretraining law (A_p, α_p) and the
# shared (β, E). The demo samples noisy points from these laws on the Table 1b grids and checks that the fit finds
# them again. Held out: model 16B, pretraining 209B (interior), the largest D_f of each method.
_DEMO_TRUTH = {
    method: {
        "model_size": (column["A_m"], column["alpha_m"]),
        "pretrain_tokens": (column["A_p"], column["alpha_p"]),
        "beta": column["beta"],
        "E": column["E"],
    }
    for method, column in paper.TABLE4["en-de"].items()
}
_DEMO_X = {"model_size": tuple(paper.MODEL_PARAMS.values()), "pretrain_tokens": paper.PRETRAIN_TOKENS}
_DEMO_X_HELDOUT = {"model_size": paper.MODEL_PARAMS["16B"], "pretrain_tokens": paper.PRETRAIN_TOKENS[3]}
_DEMO_D = paper.FT_EXAMPLES


def _sci(value: float) -> str:
    """Compact number: 2.4e+05 → 2.4e5, 0.62 → 0.62."""
    return f"{value:.2g}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def _demo_points(seed: int, noise: float, n_seeds: int):
    """Noisy runs (one row per seed) from the true laws on the paper-like grid."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for method, truth in _DEMO_TRUTH.items():
        for factor, xs in _DEMO_X.items():
            a, alpha = truth[factor]
            for x in xs:
                for d in _DEMO_D[method]:
                    clean = a * x**-alpha * d ** -truth["beta"] + truth["E"]
                    for run_seed in range(n_seeds):
                        rows.append(
                            {
                                "method": method,
                                "factor": factor,
                                "x": x,
                                "d": d,
                                "seed": run_seed,
                                "loss": clean + noise * rng.standard_normal(),
                            }
                        )
    return pd.DataFrame(rows)


def demo_command(
    out: str | None = typer.Option(
        None, help="Study directory (default ./ftscale-demo; with --points, where points.csv goes)."
    ),
    workers: int = typer.Option(2, help="Jobs run at once (each job gets an equal share of the cores)."),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples for the report's confidence intervals."),
    points: bool = typer.Option(
        False,
        "--points",
        help="Quick look (seconds): fit laws to synthetic points drawn from the paper's Table 4.",
    ),
    seed: int = typer.Option(0, help="Seed of the synthetic noise (--points)."),
    noise: float = typer.Option(
        0.005, help="Standard deviation of the per-run loss noise in nats (--points)."
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also rerun jobs that failed for good (diverged runs)."
    ),
) -> None:
    """Run the tiny study (pretrain a model family, finetune it with FMT / prompt / LoRA), fit, report."""
    if not points:
        _study_demo(
            out or "ftscale-demo", workers, bootstrap, progress=not no_progress, retry_failed=retry_failed
        )
        return
    _points_demo(out, seed, noise)


def _study_demo(out: str, workers: int, bootstrap: int, progress: bool, retry_failed: bool = False) -> None:
    """The main job: the ``tiny`` preset end to end, then the analysis and the HTML report."""
    import time

    from ftscale.analysis import cached_analyse, load_results
    from ftscale.report import tables
    from ftscale.report.html import write_report
    from ftscale.study.driver import resolve_job_function, run_study
    from ftscale.study.spec import load_spec, resolve_spec_path

    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    if bootstrap < 0:
        raise UserError(f"--bootstrap {bootstrap}: must be >= 0 (0: no confidence intervals)")
    start = time.perf_counter()
    spec = load_spec("tiny")
    study_dir = Path(out)
    console.print(
        f"ftscale demo: the '{spec.name}' study into {study_dir}/ (rerun to resume)", highlight=False
    )
    summary = run_study(
        spec,
        study_dir,
        resolve_job_function(),
        workers=workers,
        progress=progress,
        spec_text=resolve_spec_path("tiny").read_text(encoding="utf-8"),
        retry_failed=retry_failed,
    )
    if summary.reused:
        console.print(
            f"{summary.reused} pretrained family jobs reused from the family cache {summary.cache} "
            "('ftscale cache list')",
            highlight=False,
        )
    if summary.failed:
        from ftscale.cli.study import print_failures

        print_failures(summary, study_dir, retry_hint="ftscale demo --retry-failed")
        raise typer.Exit(EXIT_JOBS_FAILED)
    analysis = cached_analyse(load_results(study_dir), n_bootstrap=bootstrap, seed=0)
    report = write_report(analysis, study_dir / "report", title="ftscale demo: the tiny study")
    for task in analysis.tasks:
        console.print(f"\n[bold]{task}[/]: fitted joint laws L = A·X^-α·D^-β + E (bootstrap 95% CIs)")
        console.print(tables.to_markdown(tables.table4(analysis, task)), markup=False)
        console.print("[bold]Critical finetuning-data sizes[/]")
        console.print(tables.to_markdown(tables.table_critical(analysis, task)), markup=False)
    from ftscale.cli.report import print_findings

    print_findings(analysis)
    console.print(
        f"\n[bold green]done[/] in {time.perf_counter() - start:.0f} s: {summary.total} jobs. "
        f"Report: {(report / 'report.html').resolve()}",
        highlight=False,
    )


def _points_demo(out: str | None, seed: int, noise: float) -> None:
    """Fit joint laws to synthetic FMT / Prompt / LoRA runs and print Δe, Δh and critical data sizes."""
    import time
    import warnings

    from rich.table import Table

    from ftscale.errors import DataError
    from ftscale.laws.critical import critical_data_size
    from ftscale.laws.evaluation import aggregate_cells, fit_errors, split_points
    from ftscale.laws.fitting import fit_two_stage
    from ftscale.laws.forms import MultiplicativeLaw

    if noise < 0:
        raise DataError(f"--noise must be >= 0, got {noise}")
    start = time.perf_counter()
    runs = _demo_points(seed, noise, n_seeds=3)
    if out is not None:
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise DataError(f"--out {out}: exists and is not a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        runs.to_csv(out_dir / "points.csv", index=False)
    cells = aggregate_cells(runs, ["method", "factor", "x", "d"], "loss")  # the paper averages 3 subsets

    params = Table(title="Fitted multiplicative laws L = A·X^-α·D^-β + E (dim rows: the true laws)")
    for col in ("method", "factor", "A", "α", "β", "E", "Δe", "Δh"):
        params.add_column(col, justify="left" if col in ("method", "factor") else "right", no_wrap=True)
    fitted: dict[str, dict] = {}
    messages: list[str] = []
    counts = [0, 0]  # fitting / held-out cells over all fits
    for method, truth in _DEMO_TRUTH.items():
        factors, splits = {}, {}
        for factor in _DEMO_X:
            frame = cells[(cells.method == method) & (cells.factor == factor)]
            heldout = {"x": [_DEMO_X_HELDOUT[factor]], "d": [max(_DEMO_D[method])]}
            fit_mask, held_mask = split_points(frame, ("x", "d"), heldout)
            splits[factor] = (frame[fit_mask], frame[held_mask])
            fit_frame = frame[fit_mask]
            factors[factor] = (fit_frame[["x", "d"]].to_numpy(), fit_frame["loss"].to_numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in result.warnings and shown below
            result = fit_two_stage(factors, stage1=tuple(_DEMO_X), form="multiplicative")
        fitted[method] = result.laws
        messages += [f"{method}: {w}" for w in result.warnings]
        for factor, law in result.laws.items():
            fit_frame, held_frame = splits[factor]
            e = fit_errors(law, fit_frame[["x", "d"]].to_numpy(), fit_frame["loss"].to_numpy())
            h = fit_errors(law, held_frame[["x", "d"]].to_numpy(), held_frame["loss"].to_numpy())
            p, (a_true, alpha_true) = law.params_, truth[factor]
            short = factor.split("_")[0]
            counts[0] += e["n"]
            counts[1] += h["n"]
            params.add_row(
                method,
                short,
                _sci(p["A"]),
                f"{p['alpha']:.3f}",
                f"{p['beta']:.3f}",
                f"{p['E']:.3f}",
                f"{e['mad']:.4f}",
                f"{h['mad']:.4f}",
            )
            params.add_row(
                "",
                "",
                _sci(a_true),
                f"{alpha_true:.3f}",
                f"{truth['beta']:.3f}",
                f"{truth['E']:.3f}",
                "",
                "",
                style="dim",
            )
    console.print(params)
    console.print(
        f"{len(runs)} runs (3 seeds each) averaged into {counts[0]} fitting and {counts[1]} held-out cells; "
        "Δe / Δh = mean |L̂ − L| on them.",
        highlight=False,
    )
    for message in messages:
        console.print(f"[yellow]warning[/] {message}", highlight=False)

    def true_law(method: str):
        truth = _DEMO_TRUTH[method]
        a, alpha = truth["model_size"]
        return MultiplicativeLaw.from_params(A=a, alpha=alpha, beta=truth["beta"], E=truth["E"])

    def roots_text(cp) -> str:
        return ", ".join(_sci(r) for r in cp.roots) if cp.roots else "none"

    pairs = (("fmt", "prompt"), ("fmt", "lora"), ("prompt", "lora"))
    crit = Table(title="Critical data size D_f^c from the model-size laws: fitted (true)")
    crit.add_column("X")
    for a, b in pairs:
        crit.add_column(f"{a} vs {b}", justify="right", no_wrap=True)
    for x in _DEMO_X["model_size"]:
        row = [f"{x / 1e9:g}B"]
        for a, b in pairs:
            got = critical_data_size(fitted[a]["model_size"], fitted[b]["model_size"], x, d_max=1e9)
            want = critical_data_size(true_law(a), true_law(b), x, d_max=1e9)
            row.append(f"{roots_text(got)} ({roots_text(want)})")
        crit.add_row(*row)
    console.print(crit)
    console.print(
        "Below D_f^c the first method of a pair is predicted better (lower loss), above it the second "
        "(none: no crossing up to 1e9 examples).",
        highlight=False,
    )
    if out is not None:
        console.print(f"points written to {Path(out) / 'points.csv'}", highlight=False)
    console.print(
        f"[dim]Synthetic-points demo finished in {time.perf_counter() - start:.1f} s. The full demo "
        "(`ftscale demo`) pretrains a tiny model family and finetunes it with FMT / prompt / LoRA.[/]"
    )
