"""Analysis of a finetuning scaling study: joint laws per factor, fit errors, critical sizes, findings, with CIs.

Input is the study's results table (one row per finetuning run; schema in ``REQUIRED_COLUMNS`` and the module
docs). Per task and method the runs are averaged over seeds into (X, D_f) cells, split into fitting and held-out
cells (largest value of each axis held out), and fitted with the paper's two-stage joint law: shared (β, E) over
the model-size and pretraining factors, then (A, α) per factor with β, E fixed (PET size in stage 2 only). The
additive law is fitted the same way for comparison (paper Tables 2/6). Bootstrap resamples of the fitting cells,
refitted from the full-data optimum, give CIs for the parameters, the critical data sizes and the findings.

Rows with ``method`` "base" (the study's un-finetuned baselines, ``study export --baselines``) are never fitted:
they are the reference of the zero-/few-shot comparison (paper Figs. 6, 11-14), where each run's score is taken
relative to the base checkpoint it was finetuned from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ftscale.analysis.cells import METHOD_ORDER, build_cells, check_enough, validate_results
from ftscale.analysis.findings import (
    Finding,
    ParamSource,
    baseline_findings,
    baseline_summary,
    paper_findings,
    table7_correlations,
    vs_baseline_scores,
    zero_shot_scores,
)
from ftscale.analysis.fits import (
    CRITICAL_SEARCH_DECADES,
    bootstrap_joint,
    critical_sizes,
    fit_errors,
    fit_single_factor_laws,
    fit_task_method,
    law_from_params,
)
from ftscale.errors import DataError, FitError
from ftscale.laws.bootstrap import percentile_ci
from ftscale.laws.evaluation import lack_of_fit, noise_floor
from ftscale.study.regime import Regime, results_regime


@dataclass
class Analysis:
    """Everything the report and the advice need, as DataFrames (long form) plus the fitted law objects.

    ``laws[(task, method, factor, form)]`` is the fitted law; ``bootstrap_laws[(task, method, factor)]`` the
    list of resampled multiplicative laws (index = resample) used for CIs of derived quantities.
    """

    source: str
    config: dict[str, Any]
    run_counts: pd.DataFrame  # task, method, status, n
    cells: pd.DataFrame  # task, method, factor, x, d, loss, loss_std, n_seeds, heldout, ppl, bleu, ...
    fits: pd.DataFrame  # task, method, factor, form, params..., delta_e, delta_h, n_fit, n_heldout, converged
    param_ci: pd.DataFrame  # task, method, factor, param, estimate, low, high, se, n_resamples
    single_fits: pd.DataFrame  # task, method, model_size, x, A, beta, E, delta_e, delta_h, n_fit, n_heldout
    table5: pd.DataFrame  # task, factor, pair, H, gamma
    table7: pd.DataFrame  # task, method, factor, metric, r, p, n
    critical: pd.DataFrame  # task, factor, pair, x, critical, low, high, status, ...
    critical_curves: pd.DataFrame  # task, factor, pair, x, critical (dense x, point estimate)
    zero_shot: pd.DataFrame  # task, method, model_size, x, d, score, n
    findings: list[Finding]
    # per run and prompt set: task, method, model_size, x, d, prompts, metric, score, baseline, change
    vs_baseline: pd.DataFrame = field(default_factory=pd.DataFrame)
    laws: dict[tuple[str, str, str, str], Any] = field(repr=False, default_factory=dict)
    single_laws: dict[tuple[str, str, str], Any] = field(repr=False, default_factory=dict)
    bootstrap_laws: dict[tuple[str, str, str], list[Any]] = field(repr=False, default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # per task: whether the study was in regime (budget-bound share, base models' tokens per parameter, ladder)
    regime: dict[str, Regime] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.cells["task"].unique()) if len(self.cells) else []

    def methods(self, task: str) -> list[str]:
        present = set(self.fits.loc[self.fits["task"] == task, "method"])
        return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))

    def law(self, task: str, method: str, factor: str, form: str = "multiplicative") -> Any:
        key = (task, method, factor, form)
        if key not in self.laws:
            raise FitError(f"no {form} law fitted for task {task!r}, method {method!r}, factor {factor!r}")
        return self.laws[key]

    def d_range(self, task: str, method: str) -> tuple[float, float]:
        """Observed D_f range of a method's fitting and held-out cells."""
        d = self.cells.loc[(self.cells["task"] == task) & (self.cells["method"] == method), "d"]
        return float(d.min()), float(d.max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: config, counts, every table as records (NaN → null)."""
        return _json_clean(
            {
                "source": self.source,
                "config": self.config,
                "notes": self.notes,
                "run_counts": self.run_counts.to_dict("records"),
                "fits": self.fits.to_dict("records"),
                "param_ci": self.param_ci.to_dict("records"),
                "single_fits": self.single_fits.to_dict("records"),
                "table5": self.table5.to_dict("records"),
                "table7": self.table7.to_dict("records"),
                "critical": self.critical.drop(columns=["roots"], errors="ignore").to_dict("records"),
                "findings": [f.__dict__ for f in self.findings],
                "vs_baseline": baseline_summary(self.vs_baseline).to_dict("records"),
                "regime": {task: regime.to_dict() for task, regime in self.regime.items()},
            }
        )


def _json_clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_clean(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def analyse(
    results: pd.DataFrame,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    heldout: str = "study",
    source: str | None = None,
    compare_additive: bool = True,
    single_factor: bool = True,
) -> Analysis:
    """Fit, evaluate and compare the joint laws of every task and method in a results table.

    ``compare_additive`` also fits the additive law (Tables 2/6); ``single_factor`` the per-model L(D_f) laws
    (Fig. 1). Both cost extra fits and can be turned off for quick looks.
    """
    source = (
        source or str(results.attrs.get("source", "<results table>")) if results is not None else "<none>"
    )
    frame = validate_results(results, source)
    if not 0 < level < 1:
        raise DataError(f"confidence level must lie in (0, 1), got {level}")
    if n_bootstrap < 0:
        raise DataError(f"--bootstrap must be ≥ 0, got {n_bootstrap}")
    run_counts = frame.groupby(["task", "method", "status"]).size().reset_index(name="n")
    done = frame[(frame["status"] == "done") & frame["loss"].notna() & (frame["method"] != "base")]
    if done.empty:
        raise DataError(
            f"{source}: no finished runs (status 'done' with a loss) to analyse; "
            f"{len(frame)} run(s) recorded, none done"
        )
    cells = build_cells(done, heldout)
    if cells.empty:
        raise DataError(
            f"{source}: no finished run belongs to a factor (in_model_size / in_pretrain_tokens / in_pet_size "
            "all false); nothing to fit"
        )
    rng = np.random.default_rng(seed)
    fit_rows, ci_rows = [], []
    laws: dict[tuple[str, str, str, str], Any] = {}
    boot_laws: dict[tuple[str, str, str], list[Any]] = {}
    samples_by: dict[tuple[str, str], list[dict[str, dict[str, float]]]] = {}
    notes: list[str] = []
    for (task, method), tm_cells in cells.groupby(["task", "method"], sort=True):
        for factor, group in tm_cells.groupby("factor", sort=False):
            check_enough(group, str(task), str(method), str(factor))
        for form in ("multiplicative", "additive") if compare_additive else ("multiplicative",):
            joint, factors = fit_task_method(tm_cells, str(task), str(method), form)
            for factor, law in joint.laws.items():
                group = tm_cells[tm_cells["factor"] == factor]
                fit, held = group[~group["heldout"]], group[group["heldout"]]
                err_fit = fit_errors(law, fit[["x", "d"]].to_numpy(float), fit["loss"].to_numpy(float))
                err_held = fit_errors(law, held[["x", "d"]].to_numpy(float), held["loss"].to_numpy(float))
                # every parameter of the law counts, shared β and E included (they were fitted on these cells
                # too): the conservative degrees of freedom of the misfit
                lof = lack_of_fit(
                    fit["loss"], law.predict(fit[["x", "d"]].to_numpy(float)), fit["loss_std"], fit["n_seeds"],
                    len(law.param_names),
                )  # fmt: skip
                laws[(task, method, factor, form)] = law
                fit_rows.append(
                    {
                        "task": task,
                        "method": method,
                        "factor": factor,
                        "form": form,
                        **law.params_,
                        "stage1": factor in joint.stage1,
                        "delta_e": err_fit["mad"],
                        "delta_h": err_held["mad"],
                        "delta_h_floor": noise_floor(held["loss_std"], held["n_seeds"]),
                        "lack_of_fit_p": lof.p,
                        "n_fit": err_fit["n"],
                        "n_heldout": err_held["n"],
                        "runs": int(group["n_seeds"].sum()),
                        "converged": bool(getattr(law, "converged_", True)),
                    }
                )
            if form != "multiplicative" or n_bootstrap == 0:
                continue
            samples = bootstrap_joint(factors, joint, n_bootstrap, rng)
            samples_by[(task, method)] = samples
            if len(samples) < n_bootstrap:
                notes.append(
                    f"{task}/{method}: {n_bootstrap - len(samples)} of {n_bootstrap} bootstrap refits "
                    "failed to converge and were dropped"
                )
            for factor, law in joint.laws.items():
                boot_laws[(task, method, factor)] = [
                    law_from_params("multiplicative", s[factor]) for s in samples if factor in s
                ]
                for param, estimate in law.params_.items():
                    draws = np.array([s[factor][param] for s in samples if factor in s], dtype=float)
                    low, high, se = percentile_ci(draws, level)
                    ci_rows.append(
                        {
                            "task": task,
                            "method": method,
                            "factor": factor,
                            "param": param,
                            "estimate": float(estimate),
                            "low": low,
                            "high": high,
                            "se": se,
                            "n_resamples": int(draws.size),
                        }
                    )
    fits = pd.DataFrame(fit_rows)
    param_ci = pd.DataFrame(
        ci_rows, columns=["task", "method", "factor", "param", "estimate", "low", "high", "se", "n_resamples"]
    )
    single_fits, single_laws = fit_single_factor_laws(cells) if single_factor else (pd.DataFrame(), {})
    critical, curves, table5 = critical_sizes(laws, boot_laws, cells, level)
    zero_shot = zero_shot_scores(done)
    tasks = sorted(cells["task"].unique())
    methods_by_task = {
        t: [m for m in METHOD_ORDER if m in set(cells.loc[cells["task"] == t, "method"])] for t in tasks
    }
    findings = paper_findings(ParamSource(fits, samples_by), zero_shot, tasks, methods_by_task, level, rng)
    vs_baseline = vs_baseline_scores(frame)
    findings += baseline_findings(vs_baseline, level, rng)
    config = {
        "form": "multiplicative",
        "compare_form": "additive" if compare_additive else None,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": level,
        "heldout": heldout,
        "n_rows": len(frame),
        "n_done": len(done),
        "n_failed": int((frame["status"] == "failed").sum()),
        "critical_search_decades": CRITICAL_SEARCH_DECADES,
    }
    return Analysis(
        source=source,
        config=config,
        run_counts=run_counts,
        cells=cells,
        fits=fits,
        param_ci=param_ci,
        single_fits=single_fits,
        table5=table5,
        table7=table7_correlations(cells),
        critical=critical,
        critical_curves=curves,
        zero_shot=zero_shot,
        findings=findings,
        vs_baseline=vs_baseline,
        laws=laws,
        single_laws=single_laws,
        bootstrap_laws=boot_laws,
        notes=notes,
        regime={str(task): results_regime(runs) for task, runs in frame.groupby("task", sort=True)},
    )
