"""Bad data behind a valid study file: one-line error, exit code 2, no traceback, no study directory written.

The study runner loads the task's splits before it creates anything, so a missing, misaligned, non-UTF-8 or empty
data file stops ``ftscale study run`` the way an invalid spec does.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import cli_env

LANGS = ("en", "de", "fr", "cs")
SPLITS = ("train", "val", "test_2016_flickr")


def _write_multi30k(root: Path, lines: int = 12) -> Path:
    directory = root / "multi30k"
    directory.mkdir(parents=True)
    for split in SPLITS:
        for lang in LANGS:
            text = "".join(f"{lang} sentence {i} of {split}\n" for i in range(lines))
            with gzip.open(directory / f"{split}.{lang}.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
    return directory


def _spec(data_dir: Path, **task: object) -> dict:
    return {
        "name": "bad-data",
        "task": {"name": "multi30k-en-de", "data_dir": str(data_dir), **task},
        "family": {"pretrain": {"ladder": "demo", "sizes": ["t1", "t2"], "total_tokens": 1000}},
        "methods": {"fmt": {}},
        "factors": {"model_size": ["t1", "t2"], "ft_sizes": {"fmt": [4, 8]}, "seeds": 1},
    }


def _misaligned(directory: Path) -> None:
    with gzip.open(directory / "train.de.gz", "wt", encoding="utf-8") as handle:
        handle.write("nur eine Zeile\n")


def _not_utf8(directory: Path) -> None:
    with gzip.open(directory / "val.en.gz", "wb") as handle:
        handle.write(b"fine line\nbad \xff\xfe line\n" + b"more\n" * 10)


def _empty(directory: Path) -> None:
    with gzip.open(directory / "test_2016_flickr.de.gz", "wt", encoding="utf-8") as handle:
        handle.write("")


def _missing(directory: Path) -> None:
    (directory / "val.de.gz").unlink()


def _empty_target_line(directory: Path) -> None:
    with gzip.open(directory / "train.de.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join("de\n" if i != 3 else "\n" for i in range(12)))


CASES: dict[str, tuple[Callable[[Path], None], dict, str]] = {
    "misaligned line counts": (_misaligned, {}, "train"),
    "non-UTF-8 bytes": (_not_utf8, {}, "val.en.gz:2"),
    "empty file": (_empty, {}, "empty"),
    "missing file": (_missing, {}, "val"),
    "empty target line": (_empty_target_line, {}, "train.de.gz:4"),
    "unknown task option": (lambda d: None, {"options": {"no_such_option": 1}}, "no_such_option"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_one_line_and_writes_nothing(case: str, tmp_path: Path) -> None:
    corrupt, task_extra, expected = CASES[case]
    directory = _write_multi30k(tmp_path / "data")
    corrupt(directory)
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(tmp_path / "data", **task_extra)))
    study_dir = tmp_path / "study"
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "run", str(spec_file), "--dir", str(study_dir)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr, done.stderr
    assert not study_dir.exists()


def test_missing_data_directory(tmp_path: Path) -> None:
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(tmp_path / "nowhere")))
    done = subprocess.run(
        [sys.executable, "-m", "ftscale", "study", "run", str(spec_file), "--dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert done.returncode == 2 and "data directory not found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
