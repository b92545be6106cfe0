"""How long a whole study takes, planned from a measured slice: a few sizes × every D_f × every method × all seeds.

For each size in ``--sizes`` the script writes a slice of the preset (the same spec with ``model_size: [SIZE]``
and no other factor) under ``DIR/SIZE/`` and runs it with ``ftscale study run --workers N`` on the already built
family (the family cache supplies the base models; build them first with ``ftscale study run PRESET --dir D
--until pretrain``). A rerun resumes or only reads the finished slices. It prints, per method and D_f, the mean
steps, best step, job seconds and budget-bound runs of every slice, then prices every finetuning and baseline job
of the full plan: a run costs the mean seconds of its (method, D_f) cell in the slice of the same size, or for a
size without a slice the log-linear interpolation in non-embedding parameters between the nearest measured sizes
(the end pair beyond them); runs on intermediate checkpoints and at other PET sizes are priced as their base
size's cell. The planned wall time is the sum over ``--workers``, as the local executor runs them.

Usage: ``python bench/study_slice.py small --dir runs/slice --sizes xs,m,xl --workers 2``
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def slice_spec(preset: Path, size: str) -> dict:
    spec = yaml.safe_load(preset.read_text())
    spec["name"] = f"{spec['name']}-slice-{size}"
    factors = spec["factors"]
    spec["factors"] = {
        "model_size": [size],
        "ft_sizes": factors["ft_sizes"],
        "seeds": factors.get("seeds", 1),
    }
    return spec


def run_slice(preset: Path, size: str, out: Path, workers: int) -> Path:
    directory = out / size
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "slice.yaml"
    spec_path.write_text(yaml.safe_dump(slice_spec(preset, size), sort_keys=False))
    cmd = [sys.executable, "-m", "ftscale", "study", "run", str(spec_path), "--dir", str(directory / "study"),
           "--workers", str(workers), "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True)
    return directory / "study"


def interpolate(x: float, known: dict[float, float]) -> float:
    """Log-linear in x between the two nearest known points (the end pair outside them)."""
    xs = sorted(known)
    if x in known or len(xs) == 1:
        return known.get(x, known[xs[0]])
    i = max(1, min(len(xs) - 1, next((k for k, v in enumerate(xs) if v > x), len(xs) - 1)))
    x0, x1 = xs[i - 1], xs[i]
    t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(known[x0]) + t * (math.log(known[x1]) - math.log(known[x0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="a preset name (configs/NAME.yaml) or a study file")
    parser.add_argument("--dir", type=Path, required=True, help="where the slices run (resumable)")
    parser.add_argument("--sizes", default="xs,m,xl")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd

    from ftscale.models.family import family, parameter_counts
    from ftscale.study.plan import build_plan
    from ftscale.study.regime import budget_bound_flags
    from ftscale.study.results import baseline_table, results_table
    from ftscale.study.spec import load_spec

    preset = Path(args.preset)
    if not preset.exists():
        preset = REPO / "configs" / f"{args.preset}.yaml"
    spec = load_spec(preset)
    ladder = family(spec.family.pretrain.ladder, vocab_size=spec.tokenizer.vocab_size)
    params_of = {name: parameter_counts(model).non_embedding for name, model in ladder.items()}

    cells: dict[tuple[str, int], dict[float, float]] = {}
    baselines: dict[float, float] = {}
    rows = []
    for size in args.sizes.split(","):
        study = run_slice(preset, size, args.dir, args.workers)
        runs = results_table(study)
        runs = runs[runs["status"] == "done"].copy()
        runs["budget_bound"] = budget_bound_flags(runs)
        for (method, d_f), cell in runs.groupby(["method", "ft_examples"]):
            cells.setdefault((method, int(d_f)), {})[params_of[size]] = cell["duration_s"].mean()
            rows.append({"size": size, "method": method, "d_f": int(d_f), "runs": len(cell),
                         "steps": cell["steps_run"].mean(), "best_step": cell["best_step"].mean(),
                         "job_s": cell["duration_s"].mean(), "budget_bound": int(cell["budget_bound"].sum())})  # fmt: skip
        base = baseline_table(study)
        baselines[params_of[size]] = base["duration_s"].mean()
        print(f"slice {size}: {len(runs)} runs, {runs['duration_s'].sum():,.0f} job-seconds, "
              f"{int(runs['budget_bound'].sum())} budget-bound", flush=True)  # fmt: skip

    table = pd.DataFrame(rows)
    print("\n| size | method | D_f | runs | mean steps | mean best step | mean job s | budget-bound |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table.itertuples(index=False):
        print(f"| {r.size} | {r.method} | {r.d_f} | {r.runs} | {r.steps:.0f} | {r.best_step:.0f} | {r.job_s:.1f} "
              f"| {r.budget_bound} |")  # fmt: skip

    plan = build_plan(spec)
    seconds = {"finetune": 0.0, "baseline": 0.0}
    counts = {"finetune": 0, "baseline": 0}
    for job in plan.jobs:
        if job.kind not in seconds:
            continue
        x = params_of[job.params["base"]["size"]]
        if job.kind == "finetune":
            cost = interpolate(x, cells[(job.axes["method"], int(job.axes["ft_examples"]))])
        else:
            cost = interpolate(x, baselines)
        seconds[job.kind] += cost
        counts[job.kind] += 1
    total = sum(seconds.values())
    print(f"\nfull plan of {spec.name}: {counts['finetune']} finetuning runs ≈ {seconds['finetune']:,.0f} job-s, "
          f"{counts['baseline']} baselines ≈ {seconds['baseline']:,.0f} job-s; at {args.workers} workers "
          f"≈ {total / args.workers / 60:.0f} min on a built family")  # fmt: skip


if __name__ == "__main__":
    main()
