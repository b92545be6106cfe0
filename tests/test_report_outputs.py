"""``ftscale report --out OUT``: an unwritable OUT is refused before the analysis, a filesystem error while writing
is one line naming OUT, the old report survives any failure, and a killed run's staging folders are cleaned up.

Tests run as root here, so a read-only directory is simulated by making writes raise ``OSError(EROFS/ENOSPC)``, or
made real with a path below a regular file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from ftscale.analysis import SyntheticStudy
from ftscale.errors import UserError
from ftscale.report import html as report_html

OLD_REPORT = {"report.html": "<p>old report</p>", "report.md": "old report", "analysis.json": "{}"}


class _StubAnalysis:
    """What ``write_report`` needs of an analysis when its sections are stubbed out (fast: no fits, no plots)."""

    findings: tuple = ()

    def to_dict(self) -> dict:
        return {"stub": True}


@pytest.fixture
def fast_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        report_html, "build_sections", lambda analysis: [report_html.Section("Stub").add("p", "new report")]
    )


def _write_old_report(out: Path) -> None:
    out.mkdir(parents=True)
    for name, text in OLD_REPORT.items():
        (out / name).write_text(text)


def _contents(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def _fail_writes(monkeypatch: pytest.MonkeyPatch, code: int, when) -> None:
    original = Path.write_text

    def write_text(self: Path, *args, **kwargs):
        if when(self):
            raise OSError(code, os.strerror(code), str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def _report(study: Path, out: Path) -> None:
    from ftscale.cli.report import report

    report(
        study, out=out, bootstrap=0, seed=0, x=None, d=None, y=None, method=None, factor=None, max_models=None
    )


# ----- an unwritable OUT is refused before the analysis -------------------------------------------------------


def test_out_below_a_file_is_one_line_before_the_analysis(tmp_path: Path) -> None:
    results = tmp_path / "results.csv"
    SyntheticStudy(seeds=1).results().to_csv(results, index=False)
    blocker = tmp_path / "somefile"
    blocker.write_text("not a directory")
    out = blocker / "sub"
    done = run_cli("report", str(results), "--out", str(out), "--bootstrap", "0")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(out) in lines[0] and "is a file" in lines[0], done.stderr
    assert done.stdout == ""  # nothing analysed, no findings printed


def test_read_only_out_is_refused_before_the_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ftscale.analysis as analysis  # the report command imports these from here when it runs

    def must_not_run(*args, **kwargs):
        raise AssertionError("the analysis ran before the output directory was checked")

    monkeypatch.setattr(analysis, "load_results", must_not_run)
    monkeypatch.setattr(analysis, "analyse", must_not_run)
    monkeypatch.setattr(analysis, "cached_analyse", must_not_run)
    parent = tmp_path / "readonly"
    _fail_writes(monkeypatch, errno.EROFS, lambda path: parent in path.parents)
    out = parent / "report"
    with pytest.raises(UserError) as info:
        _report(tmp_path / "study", out)
    message = str(info.value)
    assert str(out) in message and "Read-only file system" in message and "\n" not in message
    assert sorted(p.name for p in parent.iterdir()) == []  # the probe's staging folder is gone


def test_read_only_existing_out_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report"
    _write_old_report(out)
    _fail_writes(monkeypatch, errno.EROFS, lambda path: path.parent == out)
    with pytest.raises(UserError, match="Read-only file system"):
        report_html.check_out_dir(out)
    assert _contents(out) == OLD_REPORT


# ----- filesystem errors while writing ------------------------------------------------------------------------


def test_full_disk_while_writing_keeps_the_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_sections: None
) -> None:
    out = tmp_path / "report"
    _write_old_report(out)
    _fail_writes(monkeypatch, errno.ENOSPC, lambda path: path.name == "analysis.json")
    with pytest.raises(UserError) as info:
        report_html.write_report(_StubAnalysis(), out)
    message = str(info.value)
    assert str(out) in message and "No space left on device" in message and "analysis.json" in message
    assert "\n" not in message
    assert _contents(out) == OLD_REPORT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging folder left


def test_failed_swap_puts_the_old_report_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_sections: None
) -> None:
    out = tmp_path / "report"
    _write_old_report(out)
    original = Path.rename

    def rename(self: Path, target):
        if Path(target) == out and ".staging-" in self.name:
            raise OSError(errno.EIO, "Input/output error", str(self))
        return original(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(UserError, match="Input/output error"):
        report_html.write_report(_StubAnalysis(), out)
    assert _contents(out) == OLD_REPORT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_full_disk_through_the_cli_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "report"
    _write_old_report(out)
    code = textwrap.dedent(
        """
        import errno, os, sys
        from pathlib import Path
        import ftscale.analysis as report_analysis
        from ftscale.report import html as report_html

        class Stub:
            findings = []
            def to_dict(self):
                return {}

        report_analysis.load_results = lambda study: None
        report_analysis.cached_analyse = lambda *args, **kwargs: Stub()
        report_html.build_sections = lambda analysis: [report_html.Section("Stub").add("p", "new")]
        original = Path.write_text
        def write_text(self, *args, **kwargs):
            if self.name == "report.md":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return original(self, *args, **kwargs)
        Path.write_text = write_text
        sys.argv = ["ftscale", "report", sys.argv[1], "--out", sys.argv[2]]
        from ftscale.cli import main
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "results.csv"), str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(out) in lines[0] and "No space left on device" in lines[0]
    assert _contents(out) == OLD_REPORT


# ----- leftovers of a killed run ------------------------------------------------------------------------------


def test_stale_staging_folders_are_removed(tmp_path: Path, fast_sections: None) -> None:
    out = tmp_path / "report"
    _write_old_report(out)
    killed = tmp_path / f".report.staging-{_dead_pid()}-k1ll3d"  # a run killed half way through writing
    killed.mkdir()
    (killed / "report.html").write_text("<p>half a rep")
    legacy = tmp_path / ".report.a1b2c3d4"  # the staging folder name of earlier versions (tempfile.mkdtemp)
    legacy.mkdir()
    (legacy / "report.html").write_text("<p>half")
    running = tmp_path / f".report.staging-{os.getpid()}-busy"  # a live run's work: kept
    running.mkdir()
    unrelated = tmp_path / ".report.notes"
    unrelated.mkdir()
    (unrelated / "mine.txt").write_text("keep")
    report_html.write_report(_StubAnalysis(), out)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["report", running.name, unrelated.name])
    assert "new report" in (out / "report.html").read_text()


def test_report_moved_aside_by_a_killed_run_is_put_back(tmp_path: Path) -> None:
    out = tmp_path / "report"
    backup = (
        tmp_path / ".report.old"
    )  # killed between moving the old report aside and renaming the new one in
    _write_old_report(backup)
    killed = tmp_path / f".report.staging-{_dead_pid()}-k1ll3d"
    killed.mkdir()
    (killed / "report.html").write_text("<p>complete but never renamed")
    report_html.check_out_dir(out)
    assert _contents(out) == OLD_REPORT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
