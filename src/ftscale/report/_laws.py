"""The report layer's one doorway into ``ftscale.laws``: joint two-stage fits, single-factor fits, crossings.

Keeping every call into the laws package here means the analysis reads in terms of what it needs (fit these
factors, predict, cross two laws) and a change in the laws API is absorbed in one place.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ftscale.errors import FitError
from ftscale.laws import critical as _critical
from ftscale.laws import fitting as _fitting
from ftscale.laws import forms as _forms


@dataclass
class JointFit:
    """Result of a two-stage joint fit: shared (β, E) and one fitted law per factor."""

    form: str
    shared: dict[str, float]
    laws: dict[str, Any]
    stage1: tuple[str, ...]


def _accepts(function: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def fit_joint(
    factors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    stage1: Sequence[str],
    form: str = "multiplicative",
    **options: Any,
) -> JointFit:
    """Two-stage fit (PAPER §2.4): shared β, E over the ``stage1`` factors, then (A, α[, B]) per factor."""
    kwargs = {k: v for k, v in options.items() if v is not None and _accepts(_fitting.fit_two_stage, k)}
    result = _fitting.fit_two_stage(factors=dict(factors), stage1=tuple(stage1), form=form, **kwargs)
    shared = {k: float(v) for k, v in dict(result.shared).items()}
    return JointFit(form=form, shared=shared, laws=dict(result.laws), stage1=tuple(stage1))


def fit_single(form: str, d: np.ndarray, y: np.ndarray) -> Any:
    """A single-factor law of D_f (power, rectified or vanilla) fitted on the given points."""
    return _forms.LAW_FORMS[form]().fit(np.asarray(d, dtype=float), np.asarray(y, dtype=float))


def law_from_params(form: str, params: Mapping[str, float]) -> Any:
    cls = _forms.LAW_FORMS[form]
    names = getattr(cls, "param_names", tuple(params))
    return cls.from_params(**{k: float(params[k]) for k in names})


def predict(law: Any, x: float | np.ndarray | None, d: np.ndarray) -> np.ndarray:
    """Loss of a joint law at fixed (or per-point) x over D_f, or of a single-factor law over D_f."""
    d = np.asarray(d, dtype=float)
    if x is None:
        return np.asarray(law.predict(d), dtype=float)
    x_col = np.broadcast_to(np.asarray(x, dtype=float), d.shape)
    return np.asarray(law.predict(np.column_stack([x_col, d])), dtype=float)


def fit_errors(law: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from ftscale.laws.evaluation import fit_errors as _fit_errors

    return _fit_errors(law, X, y)


def crossings(
    law_a: Any, law_b: Any, x: float | None, d_min: float, d_max: float, labels: tuple[str, str]
) -> Any:
    """All D_f in [d_min, d_max] where the two laws predict the same loss (``CriticalPoints``)."""
    return _critical.critical_data_size(
        law_a, law_b, x, d_min=d_min, d_max=d_max, label_a=labels[0], label_b=labels[1]
    )


def crossing_ci(
    laws_a: Sequence[Any], laws_b: Sequence[Any], x: float | None, d_min: float, d_max: float, level: float
) -> Any:
    """Percentile CI of the first crossing over paired bootstrap laws (``CriticalCI``)."""
    return _critical.critical_data_size_ci(
        list(laws_a), list(laws_b), x, level=level, d_min=d_min, d_max=d_max, n_grid=200
    )


constant_gap_size = _critical.constant_gap_size


def constant_gap(law_a: Any, law_b: Any) -> tuple[float, float]:
    """PAPER Eq. 3 (H, γ); NaNs when it does not apply (equal β, non-multiplicative forms)."""
    try:
        return _critical.constant_gap_critical(law_a, law_b)
    except FitError:
        return math.nan, math.nan
