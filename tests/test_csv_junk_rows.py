"""A large results CSV with junk rows far down: the readers emit no pandas warning, the CLI prints one line.

pandas reads big files in chunks by default and warns (``DtypeWarning``, two lines on stderr) when a column's type
changes between chunks; junk rows after ~260k good ones are enough. ``ftscale fit`` and ``ftscale report`` must show
only their own one-line error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from conftest import run_cli

# More rows than pandas' low-memory chunk (2**18), so the junk lands in a later chunk than the good rows.
GOOD_ROWS = 270_000
HEADER = "run_id,task,method,status,model_size,ft_examples,seed,loss,in_model_size\n"


@pytest.fixture(scope="module")
def junk_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("junk") / "junk.csv"
    good = "".join(
        f"r{i},t,fmt,done,{1e6 * (1 + i % 5):g},{100 * (1 + i % 7)},{i % 3},{1.0 + 0.001 * (i % 13)},True\n"
        for i in range(GOOD_ROWS)
    )
    junk = "garbage,oops,xx,yy,zz,ww,vv,uu,tt\n" * 3
    path.write_text(HEADER + good + junk)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("fit", "{csv}", "--x", "model_size", "--d", "ft_examples"),
        ("report", "{csv}", "--out", "{out}", "--bootstrap", "0"),
    ],
    ids=["fit", "report"],
)
def test_cli_prints_only_the_one_line_error(junk_csv: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run_cli(*(a.format(csv=junk_csv, out=tmp_path / "report") for a in args))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Warning" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(junk_csv) in lines[0], done.stderr


def test_readers_emit_no_warnings(junk_csv: Path) -> None:
    from ftscale.analysis import load_points, load_results
    from ftscale.laws.io import read_table

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_table(junk_csv)) == GOOD_ROWS + 3
        assert len(load_results(junk_csv)) == GOOD_ROWS + 3
        try:
            load_points(junk_csv, x="model_size", d="ft_examples", y="loss")
        except Warning as warning:  # a DataError about the junk values is fine, a warning is not
            pytest.fail(f"load_points warned: {warning}")
        except Exception as exc:
            assert type(exc).__name__ == "DataError", exc
