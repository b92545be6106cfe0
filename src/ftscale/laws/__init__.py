"""Scaling-law forms, fitting, evaluation and critical points (pure numpy/scipy, no torch).

``from ftscale.laws import MultiplicativeLaw, fit_two_stage, bootstrap_two_stage, critical_data_size``:

- ``forms``: the law forms and their one registry (``LAW_FORMS``, ``law_class``);
- ``objective``: the Huber / least-squares objective of a fit; ``fitting``: multi-start and two-stage fits;
  ``vp``: variable projection; ``selection``: choosing a form by extrapolation; ``ranking``: ranking candidates;
- ``bootstrap``: bootstrap refits and percentile intervals; ``evaluation``: Δe / Δh, splits, seed averages;
- ``critical``: critical data sizes between two laws; ``io``: reading results tables and points.
"""

from ftscale.laws.bootstrap import BootstrapResult, bootstrap, bootstrap_two_stage, percentile_ci
from ftscale.laws.critical import (
    CriticalCI,
    CriticalPoints,
    constant_gap_critical,
    critical_curve,
    critical_data_size,
    critical_data_size_ci,
    data_multiplier,
    equivalent_data_size,
    predict_at,
    prob_better,
)
from ftscale.laws.evaluation import (
    FitReport,
    aggregate_cells,
    evaluate_fit,
    exact_mean,
    fit_errors,
    split_points,
)
from ftscale.laws.fitting import TwoStageResult, fit_law, fit_two_stage
from ftscale.laws.forms import (
    JOINT_LAWS,
    LAW_FORMS,
    LAW_NAMES,
    SINGLE_FACTOR_LAWS,
    AdditiveLaw,
    BrokenLaw,
    FitWarning,
    M3Law,
    M4Law,
    MultiplicativeLaw,
    PowerLaw,
    RectifiedJointLaw,
    RectifiedLaw,
    ScalingLaw,
    VanillaLaw,
    law_class,
)
from ftscale.laws.io import read_lin2024, read_points, read_table

__all__ = [
    "JOINT_LAWS",
    "LAW_FORMS",
    "LAW_NAMES",
    "SINGLE_FACTOR_LAWS",
    "AdditiveLaw",
    "BootstrapResult",
    "BrokenLaw",
    "CriticalCI",
    "CriticalPoints",
    "FitReport",
    "FitWarning",
    "M3Law",
    "M4Law",
    "MultiplicativeLaw",
    "PowerLaw",
    "RectifiedJointLaw",
    "RectifiedLaw",
    "ScalingLaw",
    "TwoStageResult",
    "VanillaLaw",
    "aggregate_cells",
    "bootstrap",
    "bootstrap_two_stage",
    "constant_gap_critical",
    "critical_curve",
    "critical_data_size",
    "critical_data_size_ci",
    "data_multiplier",
    "equivalent_data_size",
    "evaluate_fit",
    "exact_mean",
    "fit_errors",
    "fit_law",
    "fit_two_stage",
    "law_class",
    "percentile_ci",
    "predict_at",
    "prob_better",
    "read_lin2024",
    "read_points",
    "read_table",
    "split_points",
]
