"""Write a study's report: one self-contained HTML file (figures as base64 PNG), report.md, analysis.json.

Everything goes to a temporary sibling directory first and is renamed into place at the end, so an error half
way (or a kill) leaves no half-written report behind; the next run removes a killed run's staging directory.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ftscale.analysis import FACTOR_BY_NAME, Analysis
from ftscale.errors import UserError
from ftscale.report import plots, tables

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
        regime = Section("Regime: are these runs evidence about finetuning?", 3)
        regime.add("p", tables.regime_verdict(analysis, task))
        models = tables.table_regime_models(analysis, task)
        if len(models):
            regime.add("table", models)
        bound = tables.table_budget_bound(analysis, task)
        if len(bound):
            regime.add("p", "Budget-bound runs (best dev loss at the last evaluation) per method and D_f:")
            regime.add("table", bound)
        for warning in analysis.regime[task].warnings if task in analysis.regime else []:
            regime.add("note", f"warning: {warning}")
        sections.append(regime)
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
        decisions = tables.table_decisions(analysis, task)
        if len(decisions):
            sections.append(
                Section("How sure is the choice of method? (model-size laws)", 3)
                .add(
                    "p",
                    "At each base model and data size of the study: the method the laws predict best, the "
                    "runner-up, and the share of bootstrap draws (draw i of each method's laws) in which the best "
                    "predicts the lower loss. Near 0.5 the data cannot tell the two apart; `ftscale advise` gives "
                    "the same for any budget, with the data multiplier between methods.",
                )
                .add("table", decisions)
            )
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


class ReportOutputError(UserError):
    """The report directory cannot be written: a read-only or full filesystem, a path through a file, ..."""


# Staging directories are siblings of the report directory named ``.<name>.staging-<pid>-<random>``, so that a
# later run can tell a killed run's leftovers (process gone) from a concurrent run's work in progress.
_STAGING = "staging"
# Report files; a hidden ``.<name>.<8 random characters>`` directory holding only these is a staging directory
# of an earlier version (``tempfile.mkdtemp``), left behind by a kill.
_REPORT_FILES = frozenset({"report.html", "report.md", "analysis.json"})


_FIX = "free some space, make it writable or choose another --out"


def _output_error(out_dir: Path, exc: OSError, doing: str, fix: str = _FIX) -> ReportOutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return ReportOutputError(f"--out {out_dir}: cannot {doing} ({reason}); {fix}")


def _backup_path(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.old")


def _new_staging(out_dir: Path) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{_STAGING}-{os.getpid()}-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be read
    return staging


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def _stale_staging(out_dir: Path) -> list[Path]:
    """Staging directories of earlier report runs into ``out_dir`` whose process is gone."""
    if not out_dir.parent.is_dir():
        return []
    ours = re.compile(rf"^\.{re.escape(out_dir.name)}\.{_STAGING}-(\d+)-")
    legacy = re.compile(rf"^\.{re.escape(out_dir.name)}\.[a-z0-9_]{{8}}$")
    stale = []
    for path in out_dir.parent.iterdir():
        if not path.is_dir() or path.is_symlink():
            continue
        match = ours.match(path.name)
        if match is not None:
            if not _process_alive(int(match.group(1))):
                stale.append(path)
        elif legacy.match(path.name) and {p.name for p in path.iterdir()} <= _REPORT_FILES:
            stale.append(path)
    return stale


def recover_out_dir(out_dir: Path) -> None:
    """Undo what a killed report run left next to ``out_dir``: its staging directories are removed, and a
    previous report that was moved aside (``.<name>.old``) for the swap is put back when nothing replaced it."""
    for path in _stale_staging(out_dir):
        shutil.rmtree(path, ignore_errors=True)
    backup = _backup_path(out_dir)
    if backup.is_dir() and not backup.is_symlink():
        if out_dir.exists():
            shutil.rmtree(backup, ignore_errors=True)  # the swap finished: the new report is in place
        else:
            backup.rename(out_dir)  # killed between the two renames: the old report comes back


def check_out_dir(out_dir: Path) -> None:
    """Raise a ``UserError`` when ``out_dir`` cannot become the report directory.

    Called before the analysis (which can take minutes): it cleans up after a killed earlier run, creates the
    parent directory and writes and removes a probe file where the report will be staged (and in ``out_dir`` when
    it exists, since its files are removed when it is replaced)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportOutputError(f"--out {out_dir} exists and is not a directory; choose another output path")
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise ReportOutputError(
                f"--out {out_dir}: {parent} is a file, not a directory; choose another output path"
            )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        recover_out_dir(out_dir)
        probes = [out_dir] if out_dir.is_dir() else []
        staging = _new_staging(out_dir)
        try:
            for directory in [staging, *probes]:
                probe = directory / f".ftscale-probe-{os.getpid()}"
                probe.write_text(
                    "ftscale report: checking that this directory is writable\n", encoding="utf-8"
                )
                probe.unlink()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise _output_error(out_dir, exc, "write the report there") from None


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Make ``staging`` the report directory; the old report stays in place, or aside as ``.<name>.old`` (put
    back by the next run, see :func:`recover_out_dir`), until the new one is complete."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    backup = _backup_path(out_dir)
    shutil.rmtree(backup, ignore_errors=True)
    out_dir.rename(backup)
    try:
        staging.rename(out_dir)
    except OSError:
        backup.rename(out_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def write_report(analysis: Analysis, out_dir: str | Path, title: str = "ftscale report") -> Path:
    """Write report.html, report.md and analysis.json into ``out_dir`` (replacing it as a whole); returns it.

    The files are written to a staging directory beside ``out_dir`` and swapped in when all are complete, so a
    failure or a kill never leaves a half-written report in place of the old one. A filesystem error (full disk,
    read-only) is a :class:`ReportOutputError` naming the path."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = build_sections(analysis)
    full_title = f"{title} ({stamp})"
    contents = {
        "report.html": render_html(sections, full_title),
        "report.md": render_markdown(sections, full_title),
        "analysis.json": json.dumps(analysis.to_dict(), indent=2, allow_nan=False),
    }
    try:
        staging = _new_staging(out_dir)
    except OSError as exc:
        raise _output_error(out_dir, exc, "create a staging directory beside it") from None
    try:
        for name, text in contents.items():
            try:
                (staging / name).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise _output_error(
                    out_dir, exc, f"write {name}", f"the previous report was left as it was; {_FIX}"
                ) from None
        try:
            _swap_into_place(staging, out_dir)
        except OSError as exc:
            raise _output_error(out_dir, exc, "move the new report into place") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
