"""What a person types in a notebook: ``ftscale.fit``, ``ftscale.load``, ``ftscale.critical_data_size``,
``ftscale.advise``. Thin wrappers over the CLI's engine (``laws.evaluation.evaluate_fit``, ``analysis``), returning
objects that show themselves as tables and plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftscale import CURVE_RESIDUAL
from ftscale.errors import FitError
from ftscale.laws.critical import critical_data_size
from ftscale.laws.evaluation import FitReport, evaluate_fit
from ftscale.laws.forms import JOINT_LAWS, ScalingLaw, law_class
from ftscale.laws.io import filter_rows, read_points, validate_points

__all__ = ["FittedLaw", "Study", "advise", "critical_data_size", "fit", "load"]


@dataclass
class FittedLaw:
    """A law fitted to a point table: ``predict``, ``ci``, ``summary()``, ``plot()``; rendered as HTML in Jupyter."""

    report: FitReport
    points: pd.DataFrame = field(repr=False)
    x: str | None
    d: str
    y: str

    @property
    def law(self) -> ScalingLaw:
        """The fitted estimator (``predict``, ``params_``, ``warnings_``, ...)."""
        return self.report.fitted_law

    @property
    def params(self) -> dict[str, float]:
        return dict(self.report.params)

    @property
    def ci(self) -> pd.DataFrame | None:
        """Bootstrap percentile intervals of the parameters (None without a bootstrap)."""
        return self.report.ci

    def predict(self, d: Any, x: Any = None, level: float | None = None) -> pd.DataFrame:
        """Predicted loss at data sizes ``d`` (and other-factor values ``x`` for a joint law, one or one per d),
        with the bootstrap interval at ``level`` (the fit's level by default) when the fit was bootstrapped."""
        d_values = np.atleast_1d(np.asarray(d, dtype=float))
        joint = self.x is not None
        if joint and x is None:
            raise FitError(f"a {self.report.law} law is joint in ({self.x}, {self.d}): give x as well as d")
        frame = pd.DataFrame({self.d: d_values})
        if joint:
            frame.insert(0, self.x, np.broadcast_to(np.asarray(x, dtype=float), d_values.shape))
        X = frame[[self.x, self.d]].to_numpy() if joint else d_values
        frame[self.y] = self.law.predict(X)
        boot = self.report.bootstrap_result
        if boot is not None:
            level = level or self.report.ci_level or 0.95
            frame["low"], frame["high"], frame["se"] = boot.predict_ci(self.law, X, level)
        return frame

    def summary(self) -> pd.DataFrame:
        """One row per parameter (estimate and, when bootstrapped, interval), then the fit's errors as rows."""
        rows = [{"name": k, "value": v} for k, v in self.params.items()]
        if self.ci is not None:
            for row in rows:
                if row["name"] in self.ci.index:
                    row |= {c: float(self.ci.loc[row["name"], c]) for c in ("low", "high", "se")}
        r = self.report
        for name, value in (
            ("Δe (fit)", r.delta_e),
            ("Δh (held out)", r.delta_h),
            ("Δh noise floor", r.noise_floor_h),
            ("lack-of-fit p", r.lack_of_fit_p),
            ("RMSE log (held out)", r.rmse_log_heldout),
            ("points fit / held out", f"{r.n_fit} / {r.n_heldout}"),
            ("converged", r.converged),
        ):
            rows.append({"name": name, "value": value})
        return pd.DataFrame(rows).set_index("name")

    def plot(self, ax: Any = None) -> Any:
        """Loss against D_f (log axis): the points (held-out ones hollow) and the law, one curve per value of x."""
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3.5))
        pts = self.points
        d_grid = np.geomspace(max(pts[self.d][pts[self.d] > 0].min(), 1e-12), pts[self.d].max() * 4, 200)
        groups = [(None, pts)] if self.x is None else list(pts.groupby(self.x, sort=True))
        for value, group in groups:
            line = ax.plot(
                d_grid,
                self.predict(d_grid, x=value)[self.y],
                lw=1.2,
                label=None if value is None else f"{self.x}={value:g}",
            )
            color = line[0].get_color()
            held = group["heldout"].to_numpy(bool)
            ax.scatter(group[self.d][~held], group[self.y][~held], color=color, s=14)
            ax.scatter(group[self.d][held], group[self.y][held], facecolors="none", edgecolors=color, s=22)
        ax.set_xscale("log")
        ax.set_xlabel(self.d)
        ax.set_ylabel(self.y)
        ax.set_title(f"{self.report.law} law: Δh {self.report.delta_h:.3g}")
        if self.x is not None:
            ax.legend(fontsize=7)
        if fig is not None:
            fig.tight_layout()
            plt.close(fig)  # returned, not shown twice in a notebook
        return fig if fig is not None else ax.figure

    def _repr_html_(self) -> str:
        formula = getattr(self.law, "formula", "")
        return f"<p><b>{self.report.law} law</b> {formula}</p>" + self.summary().to_html(
            float_format=lambda v: f"{v:.4g}"
        )

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"FittedLaw({self.report.law}: {inner}; Δe={self.report.delta_e:.3g}, Δh={self.report.delta_h:.3g})"


def fit(
    data: pd.DataFrame | str | Path,
    law: str = "multiplicative",
    *,
    x: str | None = None,
    d: str = "ft_examples",
    y: str = "loss",
    heldout: str | Mapping[str, Sequence[float]] | None = "largest",
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    where: Mapping[str, Any] | None = None,
    zero_shot: bool = False,
    residual: str = CURVE_RESIDUAL,
    **law_options: Any,
) -> FittedLaw:
    """Fit ``law`` to a point table (a DataFrame, a results CSV/Parquet or a Lin et al. wide table).

    ``x``: the other factor's column for a joint law (``multiplicative``, ``additive``, ``rectified-joint``); a
    single-factor law uses ``d`` alone. ``heldout``: ``"largest"``, ``"none"`` or ``{column: [values]}``.
    ``where``: keep rows whose columns equal these values. ``zero_shot``: keep D_f = 0 points (a Lin et al.
    table's 0 column), for forms defined there, as ``--zero-shot``. ``residual``: log by default, as ``ftscale fit``
    (``ftscale.CURVE_RESIDUAL``: why). ``law_options`` go to the law (``loss``, ``huber_delta``, ``solver``,
    ...). Rows of one (x, d) cell are averaged over seeds first, as everywhere.
    """
    key = law.strip().lower()
    cls = law_class(key)
    if (key in JOINT_LAWS) != (x is not None):
        need = "needs x= (the other factor's column)" if key in JOINT_LAWS else "depends on d only: drop x="
        raise FitError(f"law {key} {need}")
    sizes = [d] if x is None else [x, d]
    pairs = list((where or {}).items())
    zero_ok = [d] if zero_shot else []
    if isinstance(data, pd.DataFrame):
        frame = filter_rows(data, pairs, "data", option="where")
        points = validate_points(frame, sizes=sizes, y=y, source="data", zero_ok=zero_ok)
    else:
        points = read_points(data, sizes=sizes, y=y, zero_ok=zero_ok, where=pairs)
    report = evaluate_fit(
        cls(residual=residual, **law_options),
        points,
        x=x,
        d=d,
        y=y,
        heldout=heldout,
        bootstrap=bootstrap,
        seed=seed,
        level=level,
    )
    return FittedLaw(report=report, points=report.cells, x=x, d=d, y=y)


@dataclass
class Study:
    """A study's results (one row per run) and, computed on first use and cached, its :class:`Analysis`."""

    source: str
    results: pd.DataFrame = field(repr=False)
    bootstrap: int = 200
    seed: int = 0
    _analysis: Any = field(default=None, repr=False)

    @property
    def analysis(self) -> Any:
        if self._analysis is None:
            from ftscale.analysis import cached_analyse

            self._analysis = cached_analyse(self.results, n_bootstrap=self.bootstrap, seed=self.seed)
        return self._analysis

    @property
    def fits(self) -> pd.DataFrame:
        return self.analysis.fits

    @property
    def critical(self) -> pd.DataFrame:
        return self.analysis.critical

    @property
    def findings(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(f) for f in self.analysis.findings])

    def _repr_html_(self) -> str:
        counts = self.results.groupby(["task", "method"]).size().rename("runs").to_frame()
        return f"<p><b>study</b> {self.source}: {len(self.results)} runs</p>" + counts.to_html()


def load(source: str | Path, *, bootstrap: int = 200, seed: int = 0) -> Study:
    """A study directory or an exported results table; its analysis (``.analysis``, ``.fits``, ``.critical``,
    ``.findings``) is computed on first use with ``bootstrap`` resamples and cached like the CLI's."""
    from ftscale.analysis import load_results

    return Study(source=str(source), results=load_results(source), bootstrap=bootstrap, seed=seed)


def advise(study: Study | str | Path, examples: int, **options: Any) -> Any:
    """Which method and base model for ``examples`` finetuning examples (``report.advise.Advice``; its
    ``render()`` is the CLI's text). ``options``: ``model``, ``candidates``, ``task``."""
    from ftscale.report.advise import advise as make_advice

    loaded = study if isinstance(study, Study) else load(study)
    return make_advice(loaded.analysis, examples, **options)
