"""Figures of the report (matplotlib, Agg): loss vs D_f per X with fits (Figs. 2–4), critical D_f vs X (Fig. 5),
zero-shot score vs D_f (Fig. 6), and PPL vs BLEU / ROUGE-L scatter (Table 7). Each returns a Figure.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ftscale.analysis import FACTOR_BY_NAME, METHOD_LABELS, Analysis
from ftscale.laws.critical import predict_at


def _grid(n: int, width: float = 4.0, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), squeeze=False)
    return fig, axes[0]


def loss_vs_data(analysis: Analysis, task: str, factor: str) -> Figure | None:
    """One panel per method: test loss vs D_f for each X, fitted joint law as lines; held-out cells as triangles."""
    cells = analysis.cells[(analysis.cells["task"] == task) & (analysis.cells["factor"] == factor)]
    methods = [m for m in analysis.methods(task) if m in set(cells["method"])]
    if not methods:
        return None
    fig, axes = _grid(len(methods))
    cmap = plt.get_cmap("viridis")
    for ax, method in zip(axes, methods, strict=False):
        sub = cells[cells["method"] == method]
        xs = np.sort(sub["x"].unique())
        law = analysis.laws.get((task, method, factor, "multiplicative"))
        d_line = np.geomspace(sub["d"].min(), sub["d"].max(), 60)
        for i, x in enumerate(xs):
            color = cmap(i / max(len(xs) - 1, 1))
            pts = sub[sub["x"] == x]
            fit, held = pts[~pts["heldout"]], pts[pts["heldout"]]
            label = _x_label(factor, x, pts)
            ax.errorbar(
                fit["d"], fit["loss"], yerr=fit.get("loss_std"), fmt="o", ms=4, color=color, label=label
            )
            ax.plot(held["d"], held["loss"], "^", ms=6, color=color, markeredgecolor="black")
            if law is not None:
                ax.plot(d_line, predict_at(law, float(x), d_line), "-", lw=1, color=color)
        row = analysis.fits[
            (analysis.fits["task"] == task)
            & (analysis.fits["method"] == method)
            & (analysis.fits["factor"] == factor)
            & (analysis.fits["form"] == "multiplicative")
        ]
        title = METHOD_LABELS.get(method, method)
        if len(row):
            title += f"  Δe={row['delta_e'].iloc[0]:.4f} Δh={row['delta_h'].iloc[0]:.4f}"
        ax.set_title(title, fontsize=9)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_xlabel("finetuning examples D_f")
        ax.set_ylabel("test loss (nats)")
        ax.legend(fontsize=6, title=FACTOR_BY_NAME[factor].label, title_fontsize=6)
    fig.suptitle(f"{task}: {FACTOR_BY_NAME[factor].label} × finetuning data (▲ held out)", fontsize=10)
    fig.tight_layout()
    return fig


def _x_label(factor: str, x: float, pts) -> str:
    if factor == "model_size" and "model_size" in pts:
        return f"{pts['model_size'].iloc[0]} ({x:.2g})"
    if factor == "pet_size":
        return f"{x:g}"
    return f"{x:.3g}"


def critical_sizes(analysis: Analysis, task: str) -> Figure | None:
    """Fig. 5: critical D_f vs X per method pair, with the bootstrap CI as a band.

    Only pairs that cross somewhere are drawn, one panel per factor that has such a pair; ``None`` when no pair
    crosses at all (the critical-size table says so): a log axis with nothing on it cannot be drawn.
    """
    crit = (
        analysis.critical[analysis.critical["task"] == task] if len(analysis.critical) else analysis.critical
    )
    if crit.empty:
        return None
    crossing = np.isfinite(crit["critical"].astype(float)) & (crit["critical"].astype(float) > 0)
    crossing_pairs = set(zip(crit.loc[crossing, "factor"], crit.loc[crossing, "pair"], strict=True))
    crit = crit[[key in crossing_pairs for key in zip(crit["factor"], crit["pair"], strict=True)]]
    if crit.empty:
        return None
    factors = [f for f in FACTOR_BY_NAME if f in set(crit["factor"])]
    fig, axes = _grid(len(factors))
    curves = analysis.critical_curves
    for ax, factor in zip(axes, factors, strict=False):
        sub = crit[crit["factor"] == factor]
        for pair, group in sub.groupby("pair", sort=False):
            group = group.sort_values("x")
            (line,) = ax.plot(group["x"], group["critical"], "o", ms=4, label=pair)
            dense = curves[(curves["task"] == task) & (curves["factor"] == factor) & (curves["pair"] == pair)]
            ax.plot(dense["x"], dense["critical"], "-", lw=1, color=line.get_color())
            if group["low"].notna().any():
                ax.fill_between(group["x"], group["low"], group["high"], alpha=0.2, color=line.get_color())
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_yscale("log")
        ax.set_xlabel(FACTOR_BY_NAME[factor].label)
        ax.set_ylabel("critical finetuning examples")
        ax.legend(fontsize=7)
    fig.suptitle(f"{task}: critical finetuning data size (band: bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig


def zero_shot(analysis: Analysis, task: str) -> Figure | None:
    """Fig. 6: mean zero-shot score vs D_f per method, one line per base model."""
    zs = (
        analysis.zero_shot[analysis.zero_shot["task"] == task]
        if len(analysis.zero_shot)
        else analysis.zero_shot
    )
    if zs.empty:
        return None
    methods = [m for m in analysis.methods(task) if m in set(zs["method"])]
    fig, axes = _grid(len(methods))
    for ax, method in zip(axes, methods, strict=False):
        sub = zs[zs["method"] == method]
        for model, group in sub.groupby("model_size", sort=False):
            mean = group.groupby("d")["score"].mean()
            ax.plot(mean.index, mean.values, "o-", ms=3, label=str(model))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_title(METHOD_LABELS.get(method, method), fontsize=9)
        ax.set_xlabel("finetuning examples D_f")
        ax.set_ylabel(f"zero-shot {sub['metric'].iloc[0]}")
        ax.legend(fontsize=6)
    fig.suptitle(f"{task}: zero-shot generalisation", fontsize=10)
    fig.tight_layout()
    return fig


def ppl_vs_scores(analysis: Analysis, task: str) -> Figure | None:
    """Test PPL against BLEU / ROUGE-L per method (the points behind Table 7)."""
    cells = analysis.cells[analysis.cells["task"] == task]
    metrics = [m for m in ("bleu", "rougeL") if m in cells.columns and cells[m].notna().any()]
    if not metrics or "ppl" not in cells.columns:
        return None
    fig, axes = _grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=False):
        for method, group in cells.groupby("method", sort=False):
            ax.scatter(group["ppl"], group[metric], s=8, label=METHOD_LABELS.get(method, method))
        ax.set_xlabel("test PPL")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    fig.suptitle(f"{task}: perplexity vs generation quality", fontsize=10)
    fig.tight_layout()
    return fig


def single_factor(analysis: Analysis, task: str) -> Figure | None:
    """Fig. 1: loss vs D_f per base model with the single-factor power law."""
    if analysis.single_fits.empty:
        return None
    sub = analysis.single_fits[analysis.single_fits["task"] == task]
    methods = [m for m in analysis.methods(task) if m in set(sub["method"])]
    if not methods:
        return None
    fig, axes = _grid(len(methods))
    cells = analysis.cells[(analysis.cells["task"] == task) & (analysis.cells["factor"] == "model_size")]
    for ax, method in zip(axes, methods, strict=False):
        for row in sub[sub["method"] == method].itertuples():
            pts = cells[(cells["method"] == method) & (cells["model_size"] == row.model_size)].sort_values(
                "d"
            )
            held = pts["d"] == pts["d"].max()
            (line,) = ax.plot(pts[~held]["d"], pts[~held]["loss"], "o", ms=3, label=row.model_size)
            ax.plot(
                pts[held]["d"], pts[held]["loss"], "^", ms=6, color=line.get_color(), markeredgecolor="black"
            )
            law = analysis.single_laws.get((task, method, row.model_size))
            if law is not None:
                d_line = np.geomspace(pts["d"].min(), pts["d"].max(), 50)
                ax.plot(d_line, predict_at(law, None, d_line), "-", lw=1, color=line.get_color())
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_title(METHOD_LABELS.get(method, method), fontsize=9)
        ax.set_xlabel("finetuning examples D_f")
        ax.set_ylabel("test loss (nats)")
        ax.legend(fontsize=6)
    fig.suptitle(f"{task}: L(D_f) = A·D_f^-β + E per base model", fontsize=10)
    fig.tight_layout()
    return fig


def to_png(fig: Figure, dpi: int = 90) -> bytes:
    """PNG bytes of a figure; closes it (figures are not kept open across a report)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
