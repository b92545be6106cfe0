"""The analysis engine: a results table in, an :class:`Analysis` out (cells, joint and single-factor fits with
bootstrap CIs, critical data sizes, the paper's findings). ``report`` renders it; it imports no torch.

- ``cells``: load and validate a results table, the factors, seed-averaged (X, D_f) cells;
- ``fits``: the two-stage joint law, its bootstrap, single-factor laws, critical sizes (the doorway to ``laws``);
- ``findings``: the paper's findings with CIs, zero-shot and baseline comparisons, Table 7;
- ``core``: :class:`Analysis` and :func:`analyse`;
- ``fit_only``: the same fits on any loss table (``ftscale fit --points``);
- ``synthetic``: results tables drawn from known laws (golden inputs for tests, benchmarks and demos).
"""

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

__all__ = [
    "FACTORS",
    "FACTOR_BY_NAME",
    "METHOD_LABELS",
    "METHOD_ORDER",
    "PAPER_EN_DE",
    "Analysis",
    "Finding",
    "FitOnlyAnalysis",
    "MethodTruth",
    "SyntheticStudy",
    "analyse",
    "analyse_points",
    "build_cells",
    "load_points",
    "load_results",
    "truth_at_scale",
]
