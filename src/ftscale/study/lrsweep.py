"""``ftscale study lr-sweep``: each method's learning rate picked on the study's smallest model, as the paper tuned
its learning rates on its smallest (1B) model before running the grid.

A sweep run is the study's own finetuning run of the smallest model (same base checkpoint, data subset, batch
size, step budget, early stopping, dev slice) with only the learning rate changed, and it is scored by its best
dev loss, the quantity that selects checkpoints in the study. The test split is never read. Every finished run
is saved under ``DIR/lr-sweep/`` at once, so an interrupted sweep resumes where it stopped, and a rerun with
more rates or seeds only runs what is new.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ftscale.errors import UserError
from ftscale.study.executors import JobContext
from ftscale.study.plan import Job, StudyPlan, build_plan, job_dir_name
from ftscale.study.spec import StudySpec

SWEEP_DIR = "lr-sweep"
# The paper's grids span about two decades around each method's rate; five points a half-decade apart do that.
DEFAULT_FACTORS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class SweepRun:
    """One finished sweep run. ``dev_loss`` is the best dev loss (mean target NLL, nats; ``inf`` if diverged)."""

    method: str
    size: str
    lr: float
    seed: int
    ft_examples: int
    dev_loss: float
    status: str
    best_step: int
    steps_run: int
    seconds: float


@dataclass(frozen=True)
class MethodChoice:
    """A method's sweep at one finetuning-data size summarised: mean best dev loss per rate (over seeds), the
    winner and the spec's rate."""

    method: str
    ft_examples: int
    spec_lr: float
    losses: dict[float, float]
    spreads: dict[float, float]  # sample std of the best dev loss over seeds (0 with one seed)
    best_steps: dict[float, float]  # mean step of the best dev loss (0: the rate never beat the base model)
    best_lr: float

    @property
    def at_edge(self) -> bool:
        """The best rate is the grid's lowest or highest: the optimum may lie outside it."""
        finite = [lr for lr, loss in self.losses.items() if math.isfinite(loss)]
        return (
            len(self.losses) > 1 and self.best_lr in (min(self.losses), max(self.losses)) and len(finite) > 0
        )

    @property
    def spec_gap(self) -> float | None:
        """Dev loss of the spec's rate minus the best one (None when the spec's rate was not swept)."""
        if self.spec_lr not in self.losses:
            return None
        return self.losses[self.spec_lr] - self.losses[self.best_lr]


def _template_jobs(plan: StudyPlan, spec: StudySpec, size: str | None) -> dict[str, Job]:
    """Per method, the study's finetuning job whose setup the sweep copies: the smallest model (or ``size``) at
    its final checkpoint, the method's default PET size, the largest finetuning-data size, seed 0."""
    candidates = [
        job
        for job in plan.jobs
        if job.kind == "finetune" and job.axes["checkpoint_kind"] == "final" and job.axes["seed"] == 0
    ]
    order = {name: i for i, name in enumerate(spec.size_names)}
    if size is not None and size not in {job.axes["model_size"] for job in candidates}:
        sizes = sorted({job.axes["model_size"] for job in candidates}, key=lambda s: order.get(s, 0))
        raise UserError(
            f"--size {size!r}: the study finetunes no such model; its sizes are {', '.join(sizes)}"
        )
    templates: dict[str, Job] = {}
    for method, config in spec.methods.enabled().items():
        own = [job for job in candidates if job.axes["method"] == method]
        if not own:
            continue
        target = size or min((job.axes["model_size"] for job in own), key=lambda s: order.get(s, 0))
        own = [job for job in own if job.axes["model_size"] == target]
        default_pet = getattr(config, "prompt_length", None) if method == "prompt" else None
        default_pet = getattr(config, "lora_rank", None) if method == "lora" else default_pet
        preferred = [job for job in own if job.axes["pet_size"] == default_pet] or own
        templates[method] = max(preferred, key=lambda job: job.axes["ft_examples"])
    return templates


def _run_key(job: Job, lr: float, seed: int, ft_examples: int) -> str:
    # The template's id fixes everything but the three swept values.
    text = json.dumps([job.id, repr(float(lr)), seed, ft_examples])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_sweep(
    spec: StudySpec,
    methods: Sequence[str] | None = None,
    lrs: Sequence[float] | None = None,
    factors: Sequence[float] = DEFAULT_FACTORS,
    size: str | None = None,
    ft_examples: Sequence[int] | None = None,
    seeds: int = 1,
) -> list[tuple[Job, float, int, int]]:
    """The sweep's runs as ``(template job, lr, seed, ft_examples)``; rates are ``lrs`` when given, else the
    spec's rate of each method times ``factors``; data sizes are ``ft_examples`` when given, else the method's
    largest."""
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: must be >= 1")
    if ft_examples is not None and (not ft_examples or any(n < 1 for n in ft_examples)):
        raise UserError(f"--ft-examples {','.join(map(str, ft_examples))}: give sizes >= 1")
    if lrs is not None and (not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs)):
        raise UserError("--lrs: give positive, finite learning rates, e.g. --lrs 1e-3,3e-3,1e-2")
    if any(not (f > 0 and math.isfinite(f)) for f in factors) or not factors:
        raise UserError("--factors: give positive multipliers of the spec's rate, e.g. --factors 0.3,1,3")
    plan = build_plan(spec)
    templates = _template_jobs(plan, spec, size)
    if methods is not None:
        unknown = sorted(set(methods) - set(templates))
        if unknown:
            raise UserError(
                f"--methods {','.join(unknown)}: not finetuned by this study; it has {', '.join(templates)}"
            )
        templates = {m: templates[m] for m in methods}
    runs = []
    for job in templates.values():
        spec_lr = float(job.params["method_config"]["lr"])
        rates = sorted(
            {float(lr) for lr in lrs} if lrs is not None else {_round(spec_lr * f) for f in factors}
        )
        for n in sorted(set(ft_examples or [job.params["ft_examples"]])):
            for lr in rates:
                for seed in range(seeds):
                    runs.append((job, lr, seed, n))
    return runs


def _round(value: float) -> float:
    """3.0000000000000004e-3 → 3e-3: rates print and compare as typed."""
    return float(f"{value:.6g}")


def _context(
    job: Job, plan_dirs: dict[str, Path], study_dir: Path, lr: float, seed: int, n: int, device: str
) -> JobContext:
    params = copy.deepcopy(job.params)
    params["method_config"]["lr"] = lr
    params["seed"] = seed
    params["ft_examples"] = n
    return JobContext(
        job_id=job.id,
        kind="finetune",
        params=params,
        axes=job.axes,
        study_dir=study_dir,
        work_dir=study_dir / SWEEP_DIR,
        dep_dirs={dep: plan_dirs[dep] for dep in job.deps},
        dep_results={},
        device=device,
    )


def run_sweep(
    spec: StudySpec,
    study_dir: str | Path,
    runs: list[tuple[Job, float, int, int]],
    threads: int | None = None,
    on_run: Callable[[SweepRun | None, int, int], None] | None = None,
) -> list[SweepRun]:
    """Run the sweep's missing runs (finished ones are read back from ``DIR/lr-sweep/``) and return all of them,
    in ``runs`` order. ``on_run(run, done, total)`` is called after each run (``None`` before the first)."""
    import torch

    from ftscale.finetune.prepare import quiet_libraries
    from ftscale.finetune.train import finetune
    from ftscale.study.jobs import prepare_finetune
    from ftscale.study.store import Store

    study_dir = Path(study_dir).resolve()
    plan = build_plan(spec)
    needed = {dep for job, *_ in runs for dep in job.deps}
    with Store.open(study_dir) as store:
        statuses = store.statuses()
    for dep in sorted(needed):
        if statuses.get(dep) != "done":
            job = plan.by_id[dep]
            raise UserError(
                f"{study_dir}: the study's {job.label} job is not done; run 'ftscale study run' until the base "
                "models are pretrained, then sweep"
            )
    plan_dirs = {job.id: study_dir / "jobs" / job_dir_name(job) for job in plan.jobs}
    out_dir = study_dir / SWEEP_DIR
    out_dir.mkdir(exist_ok=True)
    quiet_libraries()
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = spec.execution.device

    finished: list[SweepRun] = []
    if on_run is not None:
        on_run(None, 0, len(runs))
    for i, (job, lr, seed, n) in enumerate(runs):
        path = out_dir / f"{job.axes['method']}-{_run_key(job, lr, seed, n)}.json"
        if path.is_file():
            run = SweepRun(**json.loads(path.read_text()))
        else:
            setup = prepare_finetune(_context(job, plan_dirs, study_dir, lr, seed, n, device))
            started = time.perf_counter()
            result = finetune(setup.model, setup.train, setup.dev, setup.config, progress=False)
            run = SweepRun(
                method=job.axes["method"],
                size=job.axes["model_size"],
                lr=lr,
                seed=seed,
                ft_examples=n,
                dev_loss=result.best_dev_loss if result.status == "done" else math.inf,
                status=result.status,
                best_step=result.best_step,
                steps_run=result.steps_run,
                seconds=time.perf_counter() - started,
            )
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(run)))
            tmp.replace(path)  # a run is saved whole or not at all
        finished.append(run)
        if on_run is not None:
            on_run(run, i + 1, len(runs))
    return finished


def summarise(runs: Sequence[SweepRun], spec: StudySpec) -> list[MethodChoice]:
    """Per method and data size: mean best dev loss per rate over seeds (a diverged seed makes the rate ``inf``)
    and the best rate (ties go to the smaller rate: the safer one on a larger model)."""
    choices = []
    for method, n in dict.fromkeys((run.method, run.ft_examples) for run in runs):
        cell = [run for run in runs if run.method == method and run.ft_examples == n]
        by_lr: dict[float, list[float]] = {}
        for run in cell:
            by_lr.setdefault(run.lr, []).append(run.dev_loss)
        losses = {
            lr: statistics.fmean(v) if all(map(math.isfinite, v)) else math.inf for lr, v in by_lr.items()
        }
        spreads = {
            lr: statistics.stdev(v) if len(v) > 1 and all(map(math.isfinite, v)) else 0.0
            for lr, v in by_lr.items()
        }
        best_steps = {
            lr: statistics.fmean(r.best_step for r in runs if r.method == method and r.lr == lr)
            for lr in by_lr
        }
        best = min(sorted(losses), key=lambda lr: losses[lr])
        spec_lr = float(spec.methods.enabled()[method].lr)
        choices.append(
            MethodChoice(method, n, spec_lr, dict(sorted(losses.items())), spreads, best_steps, best)
        )
    return choices
