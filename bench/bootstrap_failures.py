"""Benchmark: how many two-stage bootstrap refits of a study fail to converge (and how many needed a cold refit).

Run from the repository root: ``python bench/bootstrap_failures.py STUDY_DIR_OR_CSV [--resamples 200] [--seed 123]``
(e.g. the directory ``ftscale demo`` wrote). For every task and method it fits the paper's two-stage
multiplicative law on the study's fitting cells, as the report does, then bootstraps it: each resample is refitted
warm-started from the full-data optimum; one whose warm refit does not converge is refitted from the whole grid
("cold"); a resample that fails both counts as failed and is dropped from the intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ftscale.analysis.cells import build_cells, load_results, validate_results  # noqa: E402
from ftscale.analysis.fits import fit_task_method  # noqa: E402
from ftscale.laws.bootstrap import bootstrap_two_stage  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    frame = validate_results(load_results(args.study), str(args.study))
    done = frame[(frame["status"] == "done") & frame["loss"].notna() & (frame["method"] != "base")]
    cells = build_cells(done, "study")
    print(f"{args.study}: {args.resamples} resamples per task/method, seed {args.seed}")
    for (task, method), tm_cells in cells.groupby(["task", "method"], sort=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            joint, factors = fit_task_method(tm_cells, str(task), str(method), "multiplicative")
            start = time.perf_counter()
            result = bootstrap_two_stage(
                factors, n_resamples=args.resamples, seed=args.seed, stage1=tuple(joint.stage1)
            )
        print(
            f"  {task}/{method}: failed {result.n_failed} of {args.resamples}, cold refits {getattr(result, 'n_cold', 'n/a')}, "
            f"{time.perf_counter() - start:.1f} s"
        )


if __name__ == "__main__":
    main()
