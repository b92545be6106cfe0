"""Benchmark: law forms and fitting objectives on extrapolation to the largest finetuning sizes.

Run from the repository root: ``python bench/law_forms_heldout.py [--data DIR] [--part lin|ours|both]``.

Two questions, answered on held-out larger sizes (the task a law is used for):

1. Which residual scale and loss should fit finetuning curves by default: linear (L̂ − L, as Zhang et al. print)
   or log (log L̂ − log L, Hoffmann et al.), Huber (δ = 1e-3) or least squares?
2. How do the law forms compare when the largest sizes are held out?

``lin``: Lin et al. (2024)'s 90 curves (30 models × 3 tasks; test loss after full finetuning on 200 … 1,638,400
examples). Per curve, two splits: fit D_f < 1,638,400 and predict it ("largest 1"); fit D_f ≤ 204,800 and
predict the three largest ("largest 3"). Error: RMSE of log loss on the held-out points; reported as the mean and
median over curves per form and objective. Forms power / rectified / vanilla run under all four objectives, the
other single-factor forms under the default objective only.

``ours``: the committed reproduction results (``docs/reproduction/*.csv``, three tasks × three methods): the
model-size factor's cells (seed means), the largest base model and the largest D_f held out (the paper's split),
each joint form fitted alone (not the two-stage protocol). Error: Δh (mean |L̂ − L| on held-out cells, nats),
beside the noise floor of those cells.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ftscale.laws.evaluation import evaluate_fit, fit_errors  # noqa: E402
from ftscale.laws.forms import JOINT_LAWS, LAW_FORMS, SINGLE_FACTOR_LAWS, FitWarning  # noqa: E402
from ftscale.laws.io import read_lin2024  # noqa: E402

OBJECTIVES = {
    "linear huber": {"residual": "linear", "loss": "huber"},
    "linear lsq": {"residual": "linear", "loss": "lsq"},
    "log huber": {"residual": "log", "loss": "huber"},
    "log lsq": {"residual": "log", "loss": "lsq"},
}
ALL_OBJECTIVE_FORMS = ("power", "rectified", "vanilla")
N_MAX = 1_638_400


def _fit_rmse(form: str, options: dict, d_fit, y_fit, d_held, y_held) -> float:
    law = LAW_FORMS[form](**options)
    try:
        law.fit(d_fit, y_fit)
    except Exception:
        return float("nan")
    return fit_errors(law, d_held, y_held)["rmse_log"]


def lin_part(data: Path) -> None:
    splits = {"largest 1": (N_MAX / 2, [N_MAX]), "largest 3": (N_MAX / 8, [N_MAX / 4, N_MAX / 2, N_MAX])}
    rows = []
    start = time.perf_counter()
    for table in ("flan", "gigaword", "wmt19"):
        long = read_lin2024(data / "finetuning_scaling_law_lin2024" / f"{table}.csv")
        for model, curve in long.groupby("model"):
            d, y = curve["ft_examples"].to_numpy(float), curve["loss"].to_numpy(float)
            for split, (fit_max, held) in splits.items():
                fit, test = d <= fit_max, np.isin(d, held)
                for form in SINGLE_FACTOR_LAWS:
                    objectives = (
                        OBJECTIVES
                        if form in ALL_OBJECTIVE_FORMS
                        else {"linear huber": OBJECTIVES["linear huber"]}
                    )
                    for name, options in objectives.items():
                        rmse = _fit_rmse(form, options, d[fit], y[fit], d[test], y[test])
                        rows.append(
                            {
                                "table": table,
                                "model": model,
                                "split": split,
                                "form": form,
                                "objective": name,
                                "rmse": rmse,
                            }
                        )
    frame = pd.DataFrame(rows)
    print(
        f"Lin et al. curves: {frame[['table', 'model']].drop_duplicates().shape[0]} curves, {len(frame)} fits, "
        f"{time.perf_counter() - start:.0f} s; failed fits: {int(frame['rmse'].isna().sum())}"
    )
    for split in splits:
        sub = frame[frame["split"] == split]
        summary = sub.groupby(["form", "objective"])["rmse"].agg(["mean", "median", "count"]).reset_index()
        best = sub.loc[sub.groupby(["table", "model"])["rmse"].idxmin().dropna()]
        wins = best.groupby(["form", "objective"]).size().rename("best on")
        summary = summary.merge(wins, on=["form", "objective"], how="left").fillna({"best on": 0})
        print(f"\n{split} held out: RMSE of log loss over curves (lower is better)")
        print(summary.sort_values("mean").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        per_task = sub.pivot_table(
            index=["form", "objective"], columns="table", values="rmse", aggfunc="mean"
        )
        print(per_task.to_string(float_format=lambda v: f"{v:.4f}"))
    # the objective question on its own: for each form, which objective wins per curve
    for split in splits:
        sub = frame[(frame["split"] == split) & frame["form"].isin(ALL_OBJECTIVE_FORMS)]
        best = sub.loc[sub.groupby(["table", "model", "form"])["rmse"].idxmin().dropna()]
        print(f"\n{split}: curves on which each objective extrapolates best, per form")
        print(best.groupby(["form", "objective"]).size().unstack(fill_value=0).to_string())


def ours_part() -> None:
    rows = []
    start = time.perf_counter()
    for path in sorted((ROOT / "docs" / "reproduction").glob("*.csv")):
        frame = pd.read_csv(path, low_memory=False)
        frame = frame[
            (frame["status"] == "done") & (frame["method"] != "base") & frame["in_model_size"].astype(bool)
        ]
        for method, runs in frame.groupby("method"):
            for form in JOINT_LAWS:
                for name, options in OBJECTIVES.items():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", FitWarning)
                        report = evaluate_fit(
                            LAW_FORMS[form](**options), runs, x="model_params", d="ft_examples"
                        )
                    rows.append(
                        {
                            "task": path.stem,
                            "method": method,
                            "form": form,
                            "objective": name,
                            "delta_h": report.delta_h,
                            "rmse_log_h": report.rmse_log_heldout,
                            "floor": report.noise_floor_h,
                            "lof_p": report.lack_of_fit_p,
                        }
                    )
    table = pd.DataFrame(rows)
    print(
        f"\nOur reproduction results (model-size factor, largest X and D_f held out): {len(table)} fits, "
        f"{time.perf_counter() - start:.0f} s; noise floor of the held-out cells {table['floor'].mean():.4f} nats"
    )
    summary = table.groupby(["form", "objective"])[["delta_h", "rmse_log_h"]].mean().reset_index()
    print(summary.sort_values("delta_h").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\nΔh per task and method (mean over the four objectives), beside the noise floor:")
    pivot = table.pivot_table(index=["task", "method"], columns="form", values="delta_h", aggfunc="mean")
    pivot["floor"] = table.groupby(["task", "method"])["floor"].mean()
    print(pivot.to_string(float_format=lambda v: f"{v:.4f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--part", choices=("lin", "ours", "both"), default="both")
    args = parser.parse_args()
    if args.part in ("lin", "both"):
        if not (args.data / "finetuning_scaling_law_lin2024").is_dir():
            sys.exit(f"error: {args.data / 'finetuning_scaling_law_lin2024'} not found; pass --data DIR")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            lin_part(args.data)
    if args.part in ("ours", "both"):
        ours_part()


if __name__ == "__main__":
    main()
