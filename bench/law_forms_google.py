"""Learning-curve extrapolation benchmark of Alabdulmohsin, Neyshabur & Zhai (NeurIPS 2022, arXiv:2209.06640):
every single-factor form of the registry fitted to each of the 92 curves, scored on the held-out larger sizes.

Data: ``benchmark.lang.csv`` and ``benchmark.vision.csv`` (columns ``Domain,Task,Model,Seen Examples,Loss,
Training``) from google-research's ``revisiting_neural_scaling_laws/data``; exact duplicate rows (687 LM rows of
the lang file) are dropped. A curve is one (Domain, Task, Model): 72 IC, 5 NMT, 5 LM, 10 BB.

Protocol (the paper's and its notebook's): fit on the ``Training == 1`` points with x = Seen Examples, predict
the ``Training == 0`` points (all at larger x), score the curve by the RMSE of log loss,
sqrt(mean((log L̂ - log L)^2)). Per domain: median and mean over curves, and wins — the form with the lowest
RMSE on a curve, compared to 3 decimals with ties shared, as in the paper's notebook (a failed fit counts as
a loss of that curve). ``m1`` is the pure power law B·x^-c (the paper's M1): ``power`` with E fixed at e^-60.
The paper's M2 is ``power``, its M3 and M4 are ``m3`` and ``m4``.

Fits use the package defaults (Huber loss δ = 1e-3, summed, default grids and bounds) except the residual:
``--residual log`` (default: the residual the score is measured on) or ``linear``.

Usage: ``python bench/law_forms_google.py [--data DIR] [--forms m4,broken] [--domains IC,LM] [--max-curves 3]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ftscale.errors import FitError
from ftscale.laws.forms import SINGLE_FACTOR_LAWS, FitWarning, ScalingLaw, law_class

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "revisiting_neural_scaling_laws"
FILES = ("benchmark.lang.csv", "benchmark.vision.csv")
DOMAINS = ("IC", "NMT", "LM", "BB")
FORMS = ("m1", *SINGLE_FACTOR_LAWS)
PAPER_NAME = {"m1": "M1", "power": "M2", "m3": "M3", "m4": "M4"}


def make_law(form: str, residual: str) -> ScalingLaw:
    if form == "m1":
        return law_class("power")(residual=residual, fixed={"e": -60.0})
    return law_class(form)(residual=residual)


def load_curves(data: Path) -> pd.DataFrame:
    missing = [name for name in FILES if not (data / name).is_file()]
    if missing:
        sys.exit(f"law_forms_google: {', '.join(missing)} not found in {data} (pass --data DIR)")
    frame = pd.concat([pd.read_csv(data / name) for name in FILES], ignore_index=True)
    return frame.drop_duplicates().reset_index(drop=True)


def fit_curve(
    key: tuple[str, str, str], fit: pd.DataFrame, test: pd.DataFrame, forms: list[str], residual: str
) -> list[dict]:
    """Fit every form to one curve; one record per form (RMSE of log loss on the held-out points)."""
    rows = []
    x_fit, y_fit = fit["Seen Examples"].to_numpy(float), fit["Loss"].to_numpy(float)
    x_test, y_test = test["Seen Examples"].to_numpy(float), test["Loss"].to_numpy(float)
    for form in forms:
        start = time.perf_counter()
        record = {"domain": key[0], "task": key[1], "model": key[2], "form": form, "rmse": math.nan}
        record |= {"failed": False, "fit_warning": False, "runtime_warning": False, "error": ""}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                law = make_law(form, residual).fit(x_fit, y_fit)
                pred = law.predict(x_test)
                if not np.all(np.isfinite(pred) & (pred > 0)):
                    raise FitError("non-finite or non-positive prediction")
                record["rmse"] = float(np.sqrt(np.mean((np.log(pred) - np.log(y_test)) ** 2)))
                record["params"] = law.params_
            except FitError as exc:
                record["failed"], record["error"] = True, str(exc)
        record["fit_warning"] = any(issubclass(w.category, FitWarning) for w in caught)
        record["runtime_warning"] = any(issubclass(w.category, RuntimeWarning) for w in caught)
        record["seconds"] = time.perf_counter() - start
        rows.append(record)
    return rows


def _fit_curve_args(args: tuple) -> list[dict]:
    return fit_curve(*args)


def wins(results: pd.DataFrame) -> pd.Series:
    """Per form: curves on which it has the lowest RMSE (3 decimals, ties shared; failures never win)."""
    total = pd.Series(0.0, index=results["form"].unique())
    for _, curve in results.groupby(["domain", "task", "model"]):
        score = np.floor(curve["rmse"].fillna(np.inf).to_numpy() * 1000) / 1000
        best = score == score.min()
        for form in curve["form"][best]:
            total[form] += 1 / best.sum()
    return total


def summarise(results: pd.DataFrame, forms: list[str]) -> pd.DataFrame:
    rows = []
    for domain in [*[d for d in DOMAINS if d in set(results["domain"])], "all"]:
        part = results if domain == "all" else results[results["domain"] == domain]
        won = wins(part)
        for form in forms:
            cell = part[part["form"] == form]
            rows.append(
                {
                    "domain": domain,
                    "form": form + (f" ({PAPER_NAME[form]})" if form in PAPER_NAME else ""),
                    "curves": len(cell),
                    "median": cell["rmse"].median(),
                    "mean": cell["rmse"].mean(),
                    "wins": won.get(form, 0.0),
                    "failed": int(cell["failed"].sum()),
                    "fit_warn": int(cell["fit_warning"].sum()),
                    "rt_warn": int(cell["runtime_warning"].sum()),
                    "fit_s": cell["seconds"].sum(),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the two benchmark CSVs")
    parser.add_argument("--forms", default=",".join(FORMS), help=f"comma list of {', '.join(FORMS)}")
    parser.add_argument("--domains", default=",".join(DOMAINS), help="comma list of IC, NMT, LM, BB")
    parser.add_argument("--max-curves", type=int, default=None, help="at most this many curves per domain")
    parser.add_argument("--residual", choices=("log", "linear"), default="log")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (curves are split among them)")
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-curve results here")
    args = parser.parse_args()

    forms = [f.strip().lower() for f in args.forms.split(",") if f.strip()]
    unknown = [f for f in forms if f not in FORMS]
    domains = [d.strip().upper() for d in args.domains.split(",") if d.strip()]
    if unknown or not forms or any(d not in DOMAINS for d in domains):
        sys.exit(
            f"law_forms_google: forms must be among {', '.join(FORMS)} and domains among {', '.join(DOMAINS)}"
        )
    frame = load_curves(args.data)
    tasks = []
    for domain in domains:
        keys = list(frame[frame["Domain"] == domain].groupby(["Domain", "Task", "Model"]).groups)
        for key in sorted(keys)[: args.max_curves]:
            curve = frame[
                (frame["Domain"] == key[0]) & (frame["Task"] == key[1]) & (frame["Model"] == key[2])
            ]
            curve = curve.sort_values("Seen Examples")
            tasks.append(
                (key, curve[curve["Training"] == 1], curve[curve["Training"] == 0], forms, args.residual)
            )

    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            records = [r for rows in pool.map(_fit_curve_args, tasks) for r in rows]
    else:
        records = [r for task in tasks for r in fit_curve(*task)]
    total = time.perf_counter() - start
    results = pd.DataFrame(records)
    if args.csv is not None:
        results.drop(columns=["params"], errors="ignore").to_csv(args.csv, index=False)

    table = summarise(results, forms)
    n_rows = len(frame)
    print(
        f"{len(tasks)} curves ({', '.join(f'{d} {sum(t[0][0] == d for t in tasks)}' for d in domains)}), "
        f"{n_rows} unique rows; residual={args.residual}, Huber δ=1e-3, default grids; "
        f"score: RMSE of log loss on Training == 0"
    )
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    failures = results[results["failed"]]
    for _, row in failures.iterrows():
        print(f"failed: {row['form']} on {row['domain']} {row['task']} {row['model']}: {row['error']}")
    print(f"total time {total:.1f} s ({args.jobs} process{'es' if args.jobs > 1 else ''})")


if __name__ == "__main__":
    main()
