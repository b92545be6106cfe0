"""Expand a study spec into jobs with stable ids: tokenizer → pretraining → baseline → finetuning, shared runs
deduplicated.

A job id is the sha256 of a canonical JSON of everything that determines the job's result (its ``params``,
which embed the ids of the jobs it builds on, plus :data:`CODE_VERSION`). The same run reached from several
sweeps (e.g. the base model at full pretraining and default PET size) is one job that belongs to several factors.

A ``baseline`` job evaluates a base checkpoint without finetuning (the paper's "Baseline" of the zero-/few-shot
comparison, Figs. 6 and 11-14): one per distinct base checkpoint that generation-evaluated finetuning runs use,
planned only when the evaluation generates and scores zero-shot directions or few-shot prompts. Baseline jobs
have their own ids and params; adding them leaves every other job's id unchanged.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from ftscale.finetune.params import job_method_config
from ftscale.study.spec import PET_FACTOR_OF_METHOD, StudySpec, canonical_json

# Bump when a change in the training / evaluation code changes results: every job id changes with it.
CODE_VERSION = "1"

JobKind = Literal["tokenizer", "pretrain", "baseline", "finetune"]
KINDS: tuple[JobKind, ...] = ("tokenizer", "pretrain", "baseline", "finetune")
# The ``method`` axis of baseline jobs: the base model as is (no finetuning method, no finetuning data).
BASELINE_METHOD = "base"
FACTORS = ("model_size", "pretrain_tokens", "prompt_length", "lora_rank")
AXES = (
    "model_size",
    "non_embedding_params",
    "pretrain_tokens",
    "checkpoint_kind",
    "method",
    "pet_size",
    "ft_examples",
    "seed",
)


@dataclass
class Job:
    """One unit of work. ``params`` is everything the job function needs and everything the id hashes."""

    id: str
    kind: JobKind
    params: dict[str, Any]
    deps: tuple[str, ...] = ()
    axes: dict[str, Any] = field(default_factory=dict)
    # factor name -> whether this run is held out for that factor
    factors: dict[str, bool] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        a = self.axes
        if self.kind == "tokenizer":
            return "tokenizer"
        if self.kind == "pretrain":
            return f"pretrain {a.get('model_size')}"
        if self.kind == "baseline":
            return f"baseline {a.get('model_size')}@{a.get('pretrain_tokens')} {a.get('checkpoint_kind')}"
        pet = f" pet={a['pet_size']}" if a.get("pet_size") is not None else ""
        ckpt = f"@{a['pretrain_tokens']}" if a.get("pretrain_tokens") is not None else ""
        return f"{a.get('method')} {a.get('model_size')}{ckpt}{pet} n={a.get('ft_examples')} seed={a.get('seed')}"


def job_dir_name(job: Job) -> str:
    """The job's working directory under ``DIR/jobs/``: kind and the first 16 hex digits of its id."""
    return job_dir_for(job.kind, job.id)


def job_dir_for(kind: str, job_id: str) -> str:
    """:func:`job_dir_name` from a job's kind and id (e.g. of a store row)."""
    return f"{kind}-{job_id[:16]}"


def job_id(kind: str, params: dict[str, Any]) -> str:
    payload = {"kind": kind, "code_version": CODE_VERSION, "params": params}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass
class StudyPlan:
    """Jobs in dependency order (every job comes after the jobs it depends on)."""

    spec: StudySpec
    jobs: list[Job]

    def __post_init__(self) -> None:
        self.by_id = {job.id: job for job in self.jobs}

    def __len__(self) -> int:
        return len(self.jobs)

    def counts(self) -> dict[str, Any]:
        """Jobs per kind, and finetuning runs per (factor, method) with how many are held out."""
        per_kind = Counter(job.kind for job in self.jobs)
        per_factor: dict[tuple[str, str], dict[str, int]] = {}
        runs = [job for job in self.jobs if job.kind == "finetune"]
        for job in runs:
            for factor, heldout in job.factors.items():
                cell = per_factor.setdefault((factor, job.axes["method"]), {"runs": 0, "heldout": 0})
                cell["runs"] += 1
                cell["heldout"] += int(heldout)
        shared = sum(1 for job in runs if len(job.factors) > 1)
        return {"kinds": dict(per_kind), "factors": per_factor, "shared": shared, "total": len(self.jobs)}


def build_plan(spec: StudySpec) -> StudyPlan:
    """Expand the spec's sweeps into a deduplicated, dependency-ordered list of jobs."""
    builder = _PlanBuilder(spec)
    builder.add_sweeps()
    return StudyPlan(spec=spec, jobs=builder.ordered())


class _PlanBuilder:
    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.jobs: dict[str, Job] = {}
        self.heldout = spec.resolved_heldout()
        execution = spec.execution
        gpus = execution.gpus_per_job if execution.device != "cuda" else max(execution.gpus_per_job, 1.0)
        self.resources = {"num_cpus": float(execution.cpus_per_job), "num_gpus": float(gpus)}
        self.task = spec.task.model_dump(mode="json")
        self.tokenizer_settings = spec.tokenizer.model_dump(mode="json")
        self.tokenizer_job: Job | None = None
        if spec.family.pretrain is not None:
            params: dict[str, Any] = {
                "tokenizer": self.tokenizer_settings,
                "corpus": spec.family.pretrain.corpus,
            }
            if spec.family.pretrain.corpus == "shared":
                # the shared corpus is the same for every task of the same languages, and so is the family
                # (small and small-sum share theirs): its id hashes the corpus, not the task
                from ftscale.data.corpus import shared_family_corpus
                from ftscale.data.datasets.pretraining import SHARED_CORPUS_VERSION

                params["shared"] = {**shared_family_corpus(self.task), "version": SHARED_CORPUS_VERSION}
            else:
                params["task"] = self.task
            self.tokenizer_job = self._add(Job(job_id("tokenizer", params), "tokenizer", params))

    def _add(self, job: Job) -> Job:
        job.resources = dict(self.resources)
        existing = self.jobs.get(job.id)
        if existing is None:
            self.jobs[job.id] = job
            return job
        for factor, heldout in job.factors.items():
            existing.factors[factor] = existing.factors.get(factor, False) or heldout
        return existing

    # --- base checkpoints ----------------------------------------------------------------------------
    def _pretrain_job(self, size: str) -> Job:
        """The full pretraining run of one size; the base model also keeps the swept budgets' checkpoints."""
        pre = self.spec.family.pretrain
        assert pre is not None and self.tokenizer_job is not None
        factor = self.spec.factors.pretrain_tokens
        budgets: list[int] = []
        annealed = False
        if factor is not None and size == self.spec.base_size:
            budgets = sorted(b for b in set(factor.budgets) if b < pre.total_tokens)
            annealed = factor.checkpoint_kind != "intermediate"
        config = pre.model_dump(mode="json", exclude={"sizes", "annealed"})
        params = {
            "size": size,
            "pretrain": config,
            "checkpoint_tokens": budgets,
            "annealed_checkpoints": annealed,
            "tokenizer_job": self.tokenizer_job.id,
        }
        job = Job(
            job_id("pretrain", params),
            "pretrain",
            params,
            deps=(self.tokenizer_job.id,),
            axes={"model_size": size, "pretrain_tokens": pre.total_tokens},
        )
        return self._add(job)

    def _base(self, size: str, tokens: int | None, kind: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(base checkpoint description, dependency ids) for ``size`` after ``tokens`` pretraining tokens."""
        if self.spec.family.pretrain is not None:
            pre_job = self._pretrain_job(size)
            total = self.spec.family.pretrain.total_tokens
            final = tokens is None or tokens >= total
            base = {
                "source": "pretrain",
                "pretrain_job": pre_job.id,
                "size": size,
                "tokens": total if final else tokens,
                "checkpoint": "final" if final else kind,
            }
            return base, (pre_job.id,)
        model = self.spec.hf_model(size)
        revision = model.revision
        checkpoint = "final"
        if tokens is not None and tokens != model.tokens:
            revision = next(c.revision for c in model.checkpoints if c.tokens == tokens)
            checkpoint = "intermediate"
        base = {
            "source": "hf",
            "model_id": model.id,
            "revision": revision,
            "size": size,
            "tokens": tokens if tokens is not None else model.tokens,
            "checkpoint": checkpoint,
            "params": model.params,
        }
        return base, ()

    # --- finetuning runs -----------------------------------------------------------------------------
    def _finetune(
        self,
        factor: str,
        factor_value: Any,
        size: str,
        tokens: int | None,
        kind: str,
        method: str,
        pet: int | None,
    ) -> None:
        spec = self.spec
        base, deps = self._base(size, tokens, kind)
        method_config = job_method_config(spec.methods.enabled()[method])
        if method in PET_FACTOR_OF_METHOD:
            method_config[PET_FACTOR_OF_METHOD[method]] = pet
        heldout_x = factor_value in self.heldout[factor]
        for n in spec.factors.ft_sizes[method]:
            heldout = heldout_x or n in self.heldout["ft_sizes"].get(method, [])
            for seed in range(spec.factors.seeds):
                params = {
                    "task": self.task,
                    "tokenizer": self.tokenizer_settings if base["source"] == "pretrain" else None,
                    "base": base,
                    "method": method,
                    "method_config": method_config,
                    "pet_size": pet,
                    "ft_examples": n,
                    "seed": seed,
                    "evaluation": spec.evaluation.for_seed(seed),
                }
                axes = {
                    "model_size": size,
                    "non_embedding_params": base.get("params"),
                    "pretrain_tokens": base["tokens"],
                    "checkpoint_kind": base["checkpoint"],
                    "method": method,
                    "pet_size": pet,
                    "ft_examples": n,
                    "seed": seed,
                }
                self._add(
                    Job(
                        job_id("finetune", params),
                        "finetune",
                        params,
                        deps,
                        axes=axes,
                        factors={factor: heldout},
                    )
                )
        if self.baselines:  # seed 0 always generates when the evaluation does (``EvaluationSpec.for_seed``)
            self._baseline(base, deps, factor, heldout_x)

    # --- baselines: the base checkpoints without finetuning --------------------------------------------
    @property
    def baselines(self) -> bool:
        """Whether the spec asks for the zero-/few-shot comparison with the un-finetuned base model."""
        evaluation = self.spec.evaluation
        return evaluation.generation and bool(evaluation.zero_shot or evaluation.few_shot)

    def _baseline(self, base: dict[str, Any], deps: tuple[str, ...], factor: str, heldout: bool) -> None:
        """The job that evaluates ``base`` as is, on the same test, zero-shot and seed-0 few-shot prompts as the
        finetuning runs. It belongs to the factors of the runs on that base; held out when the factor's value is
        (the finetuning-data hold-out does not apply: it sees no finetuning data)."""
        params = {
            "task": self.task,
            "tokenizer": self.tokenizer_settings if base["source"] == "pretrain" else None,
            "base": base,
            "evaluation": self.spec.evaluation.for_seed(0),
        }
        axes = {
            "model_size": base["size"],
            "non_embedding_params": base.get("params"),
            "pretrain_tokens": base["tokens"],
            "checkpoint_kind": base["checkpoint"],
            "method": BASELINE_METHOD,
            "pet_size": None,
            "ft_examples": None,
            "seed": None,
        }
        job = Job(job_id("baseline", params), "baseline", params, deps, axes=axes, factors={factor: heldout})
        self._add(job)

    def _default_pet(self, method: str) -> int | None:
        config = self.spec.methods.enabled()[method]
        return getattr(config, PET_FACTOR_OF_METHOD[method]) if method in PET_FACTOR_OF_METHOD else None

    def add_sweeps(self) -> None:
        spec = self.spec
        methods = list(spec.methods.enabled())
        base = spec.base_size
        for size in spec.model_sizes:
            for method in methods:
                self._finetune("model_size", size, size, None, "final", method, self._default_pet(method))
        factor = spec.factors.pretrain_tokens
        if factor is not None:
            kinds = (
                ["intermediate", "annealed"] if factor.checkpoint_kind == "both" else [factor.checkpoint_kind]
            )
            for budget in factor.budgets:
                for kind in kinds:
                    for method in methods:
                        self._finetune(
                            "pretrain_tokens", budget, base, budget, kind, method, self._default_pet(method)
                        )
        for method, pet_factor in PET_FACTOR_OF_METHOD.items():
            for pet in getattr(spec.factors, pet_factor) or []:
                self._finetune(pet_factor, pet, base, None, "final", method, pet)

    def ordered(self) -> list[Job]:
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(self.jobs.values(), key=lambda job: order[job.kind])  # stable: plan order within a kind
