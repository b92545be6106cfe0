"""Advice from a fitted study: which finetuning method (and base model size) to use for a data budget.

Predictions come from each method's model-size law at the candidate base sizes; CIs from the bootstrap laws.
The advice says when the budget lies outside the D_f range a method was fitted on (an extrapolation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ftscale.analysis import METHOD_LABELS, Analysis
from ftscale.errors import UserError
from ftscale.laws.bootstrap import percentile_ci
from ftscale.laws.critical import data_multiplier, predict_at, prob_better
from ftscale.report.tables import fmt_number


@dataclass
class Option:
    """One (method, base model) candidate with its predicted loss and CI."""

    method: str
    model: str
    x: float
    loss: float
    low: float
    high: float
    extrapolated: bool


@dataclass
class Multiplier:
    """At base model ``model``: one example for ``method`` is worth ``k`` examples for ``other`` (the data
    ``other`` needs to reach ``method``'s loss at the budget, over the budget), with its bootstrap interval."""

    method: str
    other: str
    model: str
    k: float
    low: float
    high: float

    def describe(self) -> str:
        name, other = METHOD_LABELS.get(self.method, self.method), METHOD_LABELS.get(self.other, self.other)
        if math.isinf(self.k):
            return f"on {self.model}, {other} never reaches {name}'s loss at this budget, whatever its data"
        ci = f" (95% CI {_k_text(self.low)} to {_k_text(self.high)})" if math.isfinite(self.low) else ""
        return f"on {self.model}, one {name} example is worth {_k_text(self.k)} {other} examples{ci}"


def _k_text(k: float) -> str:
    return "∞" if math.isinf(k) else f"{k:.3g}"


@dataclass
class Advice:
    """The recommendation for ``examples`` finetuning examples on ``task``."""

    task: str
    examples: int
    best: Option
    runner_up: Option | None
    margin: float  # runner-up loss − best loss (nats)
    options: list[Option]
    critical_nearby: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    p_best: float = math.nan  # share of bootstrap draws in which the best option beats the runner-up
    n_draws: int = 0
    multipliers: list[Multiplier] = field(default_factory=list)

    def render(self) -> str:
        """Rich-markup text for the CLI."""
        b = self.best
        lines = [
            f"[bold]Task[/] {self.task}, [bold]{self.examples:,}[/] finetuning examples:",
            f"  use [bold green]{METHOD_LABELS.get(b.method, b.method)}[/] on base model [bold]{b.model}[/]: "
            f"predicted test loss {b.loss:.4f} nats ({_ci_text(b.low, b.high)})",
        ]
        if self.runner_up is not None:
            r = self.runner_up
            lines.append(
                f"  runner-up {METHOD_LABELS.get(r.method, r.method)} on {r.model}: {r.loss:.4f} "
                f"(margin {self.margin:.4f} nats)"
            )
        lines.append(
            "  all options: "
            + "; ".join(
                f"{METHOD_LABELS.get(o.method, o.method)}@{o.model} {o.loss:.4f}" for o in self.options
            )
        )
        if self.n_draws:
            lines.append(
                f"  P(best beats runner-up) = {self.p_best:.2f} over {self.n_draws} bootstrap draws of each law"
            )
        for m in self.multipliers:
            lines.append(f"  data multiplier: {m.describe()}")
        for text in self.critical_nearby:
            lines.append(f"  critical size: {text}")
        for text in self.caveats:
            lines.append(f"  [yellow]caveat:[/] {text}")
        return "\n".join(lines)


def _ci_text(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no CI: analyse with --bootstrap N"
    return f"95% CI {fmt_number(low, 4)} to {fmt_number(high, 4)}"


def _model_names(analysis: Analysis, task: str) -> dict[str, float]:
    cells = analysis.cells[(analysis.cells["task"] == task) & (analysis.cells["factor"] == "model_size")]
    names = cells.groupby("model_size")["x"].first().sort_values()
    return {str(k): float(v) for k, v in names.items()}


def _ci(laws: list, x: float, d: float) -> tuple[float, float]:
    if len(laws) < 2:
        return math.nan, math.nan
    low, high, _ = percentile_ci([predict_at(law, x, np.array([d]))[0] for law in laws], 0.95)
    return low, high


def check_examples(examples: int) -> None:
    """Raise a ``UserError`` unless ``examples`` is a positive data budget."""
    if examples <= 0:
        raise UserError(f"--examples must be a positive number of finetuning examples, got {examples}")


def advise(
    analysis: Analysis,
    examples: int,
    model: str | None = None,
    candidates: list[str] | None = None,
    task: str | None = None,
) -> Advice:
    """The method and base size (among ``candidates``; by default every base model of the study) with the lowest
    predicted loss at ``examples``."""
    check_examples(examples)
    tasks = analysis.tasks
    if task is None:
        if len(tasks) != 1:
            raise UserError(f"the study has several tasks ({', '.join(tasks)}); choose one with --task")
        task = tasks[0]
    elif task not in tasks:
        raise UserError(f"task {task!r} is not in the study; tasks are {', '.join(tasks)}")
    names = _model_names(analysis, task)
    if not names:
        raise UserError(
            f"task {task!r} has no model-size runs: advice needs the model-size law of each method"
        )
    wanted = list(candidates or ([model] if model else sorted(names, key=names.get)))  # default: every model
    if model and model not in wanted:  # --model with --candidate: the chosen model is compared too
        wanted.insert(0, model)
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise UserError(f"base model(s) {', '.join(unknown)} not in the study; sizes are {', '.join(names)}")
    options: list[Option] = []
    caveats: list[str] = []
    d = float(examples)
    for method in analysis.methods(task):
        law = analysis.laws.get((task, method, "model_size", "multiplicative"))
        if law is None:
            continue
        d_lo, d_hi = analysis.d_range(task, method)
        outside = not d_lo <= d <= d_hi
        if outside:
            caveats.append(
                f"{METHOD_LABELS.get(method, method)} was fitted on {fmt_number(d_lo)}–{fmt_number(d_hi)} examples; "
                f"{examples:,} is {'below' if d < d_lo else 'above'} that range, so its prediction extrapolates the "
                "law and may be off"
            )
        for name in wanted:
            x = names[name]
            loss = float(predict_at(law, x, np.array([d]))[0])
            low, high = _ci(analysis.bootstrap_laws.get((task, method, "model_size"), []), x, d)
            options.append(Option(method, name, x, loss, low, high, outside))
    if not options:
        raise UserError(f"task {task!r}: no fitted model-size law to advise from")
    options.sort(key=lambda o: o.loss)
    best = options[0]
    runner = next(
        (o for o in options[1:] if o.method != best.method), options[1] if len(options) > 1 else None
    )
    margin = runner.loss - best.loss if runner else math.nan
    if runner and math.isfinite(runner.low) and math.isfinite(best.high) and runner.low <= best.high:
        caveats.append(
            "the CIs of the best and the runner-up overlap: the choice is not clear-cut at this budget"
        )
    boot = analysis.bootstrap_laws
    best_draws = boot.get((task, best.method, "model_size"), [])
    p_best, n_draws = math.nan, 0
    if runner is not None:
        p_best, n_draws = prob_better(
            best_draws, boot.get((task, runner.method, "model_size"), []), best.x, runner.x, d
        )
        if n_draws and p_best < 0.9:
            caveats.append(
                f"the best option beats the runner-up in only {p_best:.0%} of the bootstrap draws: collect more "
                "runs near this budget before relying on the choice"
            )
    multipliers = []
    best_law = analysis.laws.get((task, best.method, "model_size", "multiplicative"))
    for method in analysis.methods(task):
        other = analysis.laws.get((task, method, "model_size", "multiplicative"))
        if method == best.method or other is None or best_law is None:
            continue
        k = data_multiplier(best_law, other, best.x, d)
        draws = [
            data_multiplier(a, b, best.x, d)
            for a, b in zip(best_draws, boot.get((task, method, "model_size"), []), strict=False)
        ]
        low, high = _multiplier_ci(draws)
        multipliers.append(Multiplier(best.method, method, best.model, k, low, high))
    nearby = []
    crit = analysis.critical
    if len(crit):
        sub = crit[(crit["task"] == task) & (crit["factor"] == "model_size") & (crit["x"] == best.x)]
        for row in sub.itertuples():
            if math.isfinite(row.critical) and 0.1 * d <= row.critical <= 10 * d:
                nearby.append(
                    f"{row.pair} cross at {fmt_number(row.critical)} examples on {best.model} "
                    f"({_ci_text(row.low, row.high)}); the better method changes there"
                )
    return Advice(
        task, int(examples), best, runner, margin, options, nearby, caveats, p_best, n_draws, multipliers
    )


def _multiplier_ci(draws: list[float]) -> tuple[float, float]:
    """95% percentile interval of the multipliers (``nearest``: no interpolation, as some draws may be inf)."""
    values = np.asarray(draws, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5], method="nearest")
    return float(low), float(high)
