"""Benchmark: choosing a base model from cheap finetuning runs (Lin et al. 2024), law predictions vs a baseline.

Run from the repository root: ``python bench/rank_lin2024.py [--data DIR] [--tasks wmt19,gigaword,flan]
[--jobs 1]``. For each of Lin et al.'s three tables (30 models, test loss after finetuning on 0, 200, 400, ...,
1,638,400 examples) and each budget M = N/8, N/16, ..., N/512 with N = 1,638,400, every model's law is fitted to
its points 200 ... M (``ftscale.laws.ranking.rank_candidates``, point predictions, no bootstrap) and the 30
models are ranked by the predicted loss at N. Against the true loss at N it reports, as Lin et al. do:

- r: Pearson correlation of the predicted and the true loss at N across the models;
- RelAcc: (L_worst − L_pick) / (L_worst − L_best) of the true losses at N, where pick is the top-ranked model
  (1 = the true best was picked, 0 = the true worst);
- best: whether the pick is the true best.

Methods: the rectified law B / (D_l + D^β) + E without and with the zero-shot point (D = 0, only for a form
that declares ``zero_d_ok``), the vanilla law (B·D^-β + E)^α, the power law A·D^-β + E, and the baseline that
ranks by the observed loss at M (Lin et al.'s "SubTuning"). Fits use the package defaults (summed Huber,
δ = 1e-3, of the linear residual; the form's Hoffmann-style grid of starts).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ftscale.laws.io import read_lin2024  # noqa: E402
from ftscale.laws.ranking import rank_candidates  # noqa: E402

TASKS = ("wmt19", "gigaword", "flan")
RATIOS = (8, 16, 32, 64, 128, 256, 512)
# method label -> (law form or None for the observed-loss baseline, keep the zero-shot point)
METHODS = {
    "rectified": ("rectified", False),
    "rectified+0": ("rectified", True),
    "vanilla": ("vanilla", False),
    "power": ("power", False),
    "loss at M": (None, False),
}


def scores(predicted: pd.Series, true: pd.Series) -> dict[str, float]:
    """Pearson r of predicted vs true loss, RelAcc and best-hit of the lowest prediction (Lin et al. 2024)."""
    predicted = predicted.reindex(true.index)
    finite = np.isfinite(predicted.to_numpy(dtype=float))
    r = float(np.corrcoef(predicted[finite], true[finite])[0, 1])
    pick = predicted[finite].idxmin()
    best, worst = true.min(), true.max()
    return {
        "r": r,
        "relacc": float((worst - true[pick]) / (worst - best)),
        "best": bool(true[pick] == best),
        "failed": int((~finite).sum()),
    }


def run_cell(args: tuple[str, Path, int, str, str]) -> dict:
    """One (task, budget ratio, method): predictions at N for the 30 models and their scores."""
    task, data, ratio, method, residual = args
    form, zero_shot = METHODS[method]
    long = read_lin2024(data / f"{task}.csv", include_zero_shot=True)
    target = float(long["ft_examples"].max())
    budget = target / ratio
    true = long[long["ft_examples"] == target].set_index("model")["loss"]
    seen = long[(long["ft_examples"] <= budget) & ((long["ft_examples"] > 0) | zero_shot)]
    if form is None:
        at_budget = seen[seen["ft_examples"] == seen["ft_examples"].max()]
        predicted = at_budget.set_index("model")["loss"]
    else:
        table = rank_candidates(seen, target_d=target, budget_d=budget, law=form, residual=residual)
        predicted = table.set_index("candidate")["predicted"]
    n_fits = 0 if form is None else len(predicted)
    return {
        "task": task,
        "ratio": ratio,
        "budget": budget,
        "method": method,
        "fits": n_fits,
        **scores(predicted, true),
    }


def cell_text(row: pd.Series | None) -> str:
    if row is None:
        return "n/a"
    failed = f" ({row['failed']} failed)" if row["failed"] else ""
    return f"{row['r']:6.3f} {100 * row['relacc']:5.1f} {'yes' if row['best'] else 'no ':3s}{failed}"


def print_table(title: str, frame: pd.DataFrame, methods: list[str], hits: bool = False) -> None:
    print(f"\n{title}")
    width = 20
    print(f"{'ratio':>6} {'M':>8}  " + "".join(f"{m:>{width}}" for m in methods))
    print(f"{'':>6} {'':>8}  " + "".join(f"{'r  RelAcc% best':>{width}}" for _ in methods))
    for (ratio, budget), block in frame.groupby(["ratio", "budget"], sort=True):
        cells = []
        for method in methods:
            rows = block[block["method"] == method]
            if rows.empty:
                cells.append("n/a")
            elif hits:
                cells.append(
                    f"{rows['r'].mean():6.3f} {100 * rows['relacc'].mean():5.1f} "
                    f"{int(rows['best'].sum())}/{len(rows)}"
                )
            else:
                cells.append(cell_text(rows.iloc[0]))
        print(f"{'1/' + str(ratio):>6} {budget:>8g}  " + "".join(f"{c:>{width}}" for c in cells))
    summary = []
    for method in methods:
        rows = frame[frame["method"] == method]
        summary.append(
            "n/a"
            if rows.empty
            else f"{rows['r'].mean():6.3f} {100 * rows['relacc'].mean():5.1f} {int(rows['best'].sum())}/{len(rows)}"
        )
    print(f"{'mean':>6} {'':>8}  " + "".join(f"{c:>{width}}" for c in summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "finetuning_scaling_law_lin2024",
        help="directory with flan.csv, gigaword.csv, wmt19.csv",
    )
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--jobs", type=int, default=1, help="processes for the fits")
    parser.add_argument(
        "--residual", choices=("linear", "log"), default="linear", help="residual of the fits"
    )
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    absent = [t for t in tasks if not (args.data / f"{t}.csv").is_file()]
    if absent:
        sys.exit(
            f"error: Lin et al. (2024) data not found: no {absent[0]}.csv in {args.data} (pass --data DIR)"
        )

    methods = list(METHODS)
    units = [
        (task, args.data, ratio, method, args.residual)
        for task in tasks
        for ratio in RATIOS
        for method in methods
    ]
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run_cell, units))
    else:
        results = [run_cell(unit) for unit in units]
    elapsed = time.perf_counter() - start
    frame = pd.DataFrame(results)

    shown = list(METHODS)
    print(
        "Ranking 30 models by predicted loss at N = 1,638,400 from runs on 200 ... M examples "
        "(Lin et al. 2024 tables).\nPer method: Pearson r (predicted vs true loss at N), RelAcc (%), "
        f"top pick = true best. Residual: {args.residual}."
    )
    for task in tasks:
        print_table(f"{task} (30 models)", frame[frame["task"] == task], shown)
    print_table(f"mean over {len(tasks)} tasks (best = hits out of tasks)", frame, shown, hits=True)
    print(
        f"\n{frame['fits'].sum()} law fits in {elapsed:.1f} s ({args.jobs} process{'es' if args.jobs > 1 else ''})"
    )


if __name__ == "__main__":
    main()
