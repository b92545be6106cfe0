"""The analysis engine: a results table in, an :class:`Analysis` out (cells, joint and single-factor fits with
bootstrap CIs, critical data sizes, the paper's findings). ``report`` renders it; it imports no torch.

- ``cells``: load and validate a results table, the factors, seed-averaged (X, D_f) cells;
- ``fits``: the two-stage joint law, its bootstrap, single-factor laws, critical sizes (the doorway to ``laws``);
- ``findings``: the paper's findings with CIs, zero-shot and baseline comparisons, Table 7;
- ``core``: :class:`Analysis` and :func:`analyse`; ``cache``: :func:`cached_analyse`, the same analysis read
  back when the results, settings and code are unchanged;
- ``fit_only``: the same fits on any loss table (``ftscale fit --points``);
- ``synthetic``: results tables drawn from known laws (golden inputs for tests, benchmarks and demos).

An analysis also carries each task's :class:`Regime` (``ftscale.study.regime``): whether its runs converged and its
base models were trained, re-exported here with the thresholds so that ``report`` shows them.
"""

from ftscale.analysis.cache import cached_analyse
from ftscale.analysis.cells import (
    FACTOR_BY_NAME,
    FACTORS,
    METHOD_LABELS,
    METHOD_ORDER,
    build_cells,
    load_results,
)
from ftscale.analysis.core import Analysis, analyse
from ftscale.analysis.findings import Finding
from ftscale.analysis.fit_only import FitOnlyAnalysis, analyse_points, load_points
from ftscale.analysis.synthetic import PAPER_EN_DE, MethodTruth, SyntheticStudy, truth_at_scale
from ftscale.study.regime import MAX_BUDGET_BOUND_SHARE, MIN_TOKENS_PER_PARAM, Regime, budget_bound_flags

__all__ = [
    "FACTORS",
    "FACTOR_BY_NAME",
    "MAX_BUDGET_BOUND_SHARE",
    "METHOD_LABELS",
    "METHOD_ORDER",
    "MIN_TOKENS_PER_PARAM",
    "PAPER_EN_DE",
    "Analysis",
    "Finding",
    "FitOnlyAnalysis",
    "MethodTruth",
    "Regime",
    "SyntheticStudy",
    "analyse",
    "analyse_points",
    "budget_bound_flags",
    "build_cells",
    "cached_analyse",
    "load_points",
    "load_results",
    "truth_at_scale",
]
