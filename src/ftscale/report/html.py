"""Write a study's report: one self-contained HTML file (figures as base64 PNG), report.md, analysis.json.

Everything goes to a temporary sibling directory first and is renamed into place at the end, so an error half
way leaves no half-written report behind.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ftscale.errors import UserError
from ftscale.report import plots, tables
from ftscale.report.analysis import FACTOR_BY_NAME, Analysis

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1180px;color:#222;
line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}h3{margin-top:1.2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.confirms{color:#176317;font-weight:600}.refutes{color:#a31515;font-weight:600}
.cannot-tell{color:#8a6d00;font-weight:600}.note{color:#555;font-size:.9em}
"""


@dataclass
class Section:
    """A titled block of the report: paragraphs, tables and figures in order (shared by HTML and Markdown)."""

    title: str
    level: int = 2
    blocks: list[tuple[str, object]] | None = None

    def add(self, kind: str, value: object) -> Section:
        self.blocks = [*(self.blocks or []), (kind, value)]
        return self


def _figure(factory: Callable[..., object], *args: object) -> bytes | None:
    fig = factory(*args)
    return None if fig is None else plots.to_png(fig)


def build_sections(analysis: Analysis) -> list[Section]:
    """The report's content, in order."""
    cfg = analysis.config
    head = Section("Study")
    head.add(
        "p",
        f"Source: {analysis.source}. {cfg['n_rows']} run(s) recorded, {cfg['n_done']} analysed "
        f"(status done), {cfg['n_failed']} failed. Seeds are averaged per (X, D_f) cell; the largest "
        f"value of each axis is held out ({cfg['heldout']}). CIs: {cfg['n_bootstrap']} bootstrap "
        f"resamples of the fitting cells, {cfg['level']:.0%} percentile intervals.",
    )
    head.add("table", tables.table_runs(analysis))
    for note in analysis.notes:
        head.add("note", note)
    sections = [head]
    for task in analysis.tasks:
        sections.append(Section(f"Task {task}"))
        sections.append(
            Section("Findings of the paper, checked", 3).add(
                "findings", tables.table_findings(analysis, task)
            )
        )
        sections.append(
            Section("Fitted joint law L = A·X^-α·D_f^-β + E (Table 4)", 3)
            .add(
                "p",
                "Two-stage fit: β and E shared over the model-size and pretraining factors, then A, α per "
                "factor with β, E fixed; PET size in stage 2 only. Brackets: bootstrap CI.",
            )
            .add("table", tables.table4(analysis, task))
        )
        sections.append(
            Section("Held-out error, multiplicative vs additive law (Tables 2/6)", 3)
            .add("table", tables.table_errors(analysis, task))
            .add("table", tables.table_fit_quality(analysis, task))
        )
        breakdown = tables.table_heldout_breakdown(analysis, task)
        if len(breakdown):
            sections.append(
                Section("Where the held-out error lies (multiplicative law)", 3)
                .add(
                    "p",
                    "Held-out cells: the largest finetuning subset at every X, and every subset at the held-out X. "
                    "Error = law − measured mean loss; negative means the law promised a lower loss than the runs "
                    "reached (e.g. a fixed step budget that binds at the largest subset).",
                )
                .add("table", breakdown)
            )
        for factor in FACTOR_BY_NAME:
            png = _figure(plots.loss_vs_data, analysis, task, factor)
            if png:
                sections.append(
                    Section(f"Loss vs finetuning data: {FACTOR_BY_NAME[factor].label}", 3).add("figure", png)
                )
        crit = Section("Critical finetuning data sizes (Fig. 5, Table 5)", 3)
        crit.add(
            "p",
            "First D_f where the two methods' fitted laws predict the same loss, by root bracketing in "
            "log D_f; CI from paired bootstrap laws. 'Resamples crossing' says how often the resampled "
            "laws cross at all.",
        )
        crit.add("table", tables.table_critical(analysis, task))
        png = _figure(plots.critical_sizes, analysis, task)
        if png:
            crit.add("figure", png)
        crit.add("p", "Constant-gap approximation D^c = H·X^γ (Eq. 3):")
        crit.add("table", tables.table5(analysis, task))
        sections.append(crit)
        single = tables.table_single(analysis, task)
        if not single.empty:
            sec = Section("Single-factor law per base model (Fig. 1)", 3).add("table", single)
            png = _figure(plots.single_factor, analysis, task)
            if png:
                sec.add("figure", png)
            sections.append(sec)
        corr = Section("Perplexity vs generation quality (Table 7)", 3).add(
            "table", tables.table7(analysis, task)
        )
        png = _figure(plots.ppl_vs_scores, analysis, task)
        if png:
            corr.add("figure", png)
        sections.append(corr)
        png = _figure(plots.zero_shot, analysis, task)
        if png:
            sections.append(Section("Zero-shot generalisation (Fig. 6)", 3).add("figure", png))
    return sections


def _table_html(table: pd.DataFrame, findings: bool = False) -> str:
    if table is None or table.empty:
        return "<p class='note'>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for row in table.itertuples(index=False):
        cells = []
        for column, value in zip(table.columns, row, strict=True):
            text = html.escape(str(value))
            if findings and column == "verdict":
                cells.append(f"<td class='{text.replace(' ', '-')}'>{text}</td>")
            else:
                cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(sections: list[Section], title: str) -> str:
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        for kind, value in section.blocks or []:
            if kind == "p":
                parts.append(f"<p>{html.escape(str(value))}</p>")
            elif kind == "note":
                parts.append(f"<p class='note'>{html.escape(str(value))}</p>")
            elif kind in ("table", "findings"):
                parts.append(_table_html(value, findings=kind == "findings"))
            elif kind == "figure":
                data = base64.b64encode(value).decode("ascii")
                parts.append(f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(sections: list[Section], title: str) -> str:
    parts = [f"# {title}\n"]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}\n")
        for kind, value in section.blocks or []:
            if kind in ("p", "note"):
                parts.append(f"{value}\n")
            elif kind in ("table", "findings"):
                parts.append(tables.to_markdown(value))
            elif kind == "figure":
                parts.append("_(figure in report.html)_\n")
    return "\n".join(parts)


def check_out_dir(out_dir: Path) -> None:
    """Raise a ``UserError`` when ``out_dir`` cannot become the report directory."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a directory; choose another output path")


def write_report(analysis: Analysis, out_dir: str | Path, title: str = "ftscale report") -> Path:
    """Write report.html, report.md and analysis.json into ``out_dir`` (replaced atomically); returns it."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be read
    try:
        sections = build_sections(analysis)
        full_title = f"{title} ({stamp})"
        (staging / "report.html").write_text(render_html(sections, full_title), encoding="utf-8")
        (staging / "report.md").write_text(render_markdown(sections, full_title), encoding="utf-8")
        (staging / "analysis.json").write_text(
            json.dumps(analysis.to_dict(), indent=2, allow_nan=False), encoding="utf-8"
        )
        if out_dir.exists():
            backup = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            out_dir.rename(backup)
            staging.rename(out_dir)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
