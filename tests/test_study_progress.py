"""Progress of a study whose output is not a terminal (a log file, CI, nohup): plain lines, not a silent bar."""

from __future__ import annotations

import copy
import re

import pytest

from ftscale.study import driver
from ftscale.study.driver import run_study
from ftscale.study.plan import build_plan
from ftscale.study.spec import parse_spec
from test_study_fakes import SLEEP_ENV, fake_job
from test_study_run import SMALL

LINE = re.compile(r"^\[\s*(\d+)/(\d+)\] (.*?)(?: · (\d+) failed)? · elapsed \d+m\d\ds(?: · ETA \d+m\d\ds)?$")


def test_plain_lines_per_job_with_counts_and_eta(tmp_path, capsys):
    spec = parse_spec(copy.deepcopy(SMALL))
    total = len(build_plan(spec).jobs)
    summary = run_study(spec, tmp_path / "s", fake_job, progress=True)
    assert summary.failed == 0
    lines = capsys.readouterr().out.strip().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    assert parsed[0].group(3) == f"study {spec.name}: {total} job(s) to run, 0 already done"
    done_lines = [m for m in parsed if m.group(3).startswith("done ")]
    assert len(done_lines) == total
    assert [int(m.group(1)) for m in done_lines] == list(range(1, total + 1))  # counts climb one by one
    assert all(int(m.group(2)) == total for m in parsed)
    assert "ETA" in lines[1] and "ETA" not in done_lines[-1].group(0)  # nothing left: no ETA
    assert parsed[-1].group(3) == "finished: every job done"
    # a rerun has nothing to do and says so in one line each
    run_study(spec, tmp_path / "s", fake_job, progress=True)
    again = capsys.readouterr().out.strip().splitlines()
    assert len(again) == 2 and f"0 job(s) to run, {total} already done" in again[0]


def test_still_running_lines_between_slow_jobs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(driver, "PLAIN_PROGRESS_INTERVAL", 0.2)
    monkeypatch.setenv(SLEEP_ENV, "0.3")
    spec = parse_spec(copy.deepcopy(SMALL))
    run_study(spec, tmp_path / "s", fake_job, progress=True)
    out = capsys.readouterr().out
    assert re.search(r"\] running: \S", out), out


def test_no_progress_prints_nothing(tmp_path, capsys):
    run_study(parse_spec(copy.deepcopy(SMALL)), tmp_path / "s", fake_job, progress=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("seconds, text", [(5, "0m05s"), (125, "2m05s"), (3725, "1h02m")])
def test_durations(seconds, text):
    assert driver._duration(seconds) == text
