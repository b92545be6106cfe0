"""Reading results CSVs into validated point tables for law fitting, and naming law forms.

A point table is long: one row per run with the factor columns (e.g. ``model_size``, ``ft_examples``) and the
loss. Every problem a user can cause (missing file, unreadable CSV, missing column, non-positive size, NaN/inf
loss) raises :class:`ftscale.errors.DataError` naming the file and the column. ``read_lin2024`` melts the wide
tables of Lin et al. (2024) (one row per model, one column per finetuning data size) into that long layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftscale.errors import DataError

# Options of every ``pd.read_csv`` of a results table. low_memory=False: one pass with one dtype per column, so
# junk rows far down a large file do not print pandas' DtypeWarning before the one-line error that names them.
# Floats are parsed to the nearest double ("round_trip"), which pandas does by default only from 3.1 on (it
# deprecated the option there); before, its "high" parser was off by an ulp on some values, which moved
# bootstrap endpoints of flat fits and so the committed reproduction tables.
_PANDAS_VERSION = tuple(int(part) for part in pd.__version__.split(".")[:2] if part.isdigit())
CSV_OPTIONS: dict[str, Any] = {"low_memory": False}
if _PANDAS_VERSION < (3, 1):
    CSV_OPTIONS["float_precision"] = "round_trip"

# Column names of the long table made from a Lin et al. (2024) wide CSV.
LIN2024_COLUMNS = ("model", "family", "size", "ft_examples", "loss")


def read_table(path: str | Path, empty: str = "no data rows below the header") -> pd.DataFrame:
    """The one reader of results tables (``ftscale fit``, ``report``, the fit-only analysis): CSV (tab-separated
    for ``.tsv``) or Parquet by suffix, floats parsed bit for bit (:data:`CSV_OPTIONS`), every way it can fail a
    one-line DataError naming the file; ``empty`` says what a table without rows means to the caller."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    kind = "Parquet file" if path.suffix == ".parquet" else "CSV"
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", **CSV_OPTIONS)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty, cannot read a CSV without a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read the table, not a readable {kind} ({first})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if df.empty:
        raise DataError(f"{path}: {empty}")
    return df


def is_lin2024_layout(df: pd.DataFrame) -> bool:
    """True for the wide layout of Lin et al. (2024): ``config name``, numeric size columns, ``size``, ``family``."""
    numeric = [c for c in df.columns if str(c).strip().isdigit()]
    return {"config name", "size", "family"} <= set(df.columns) and len(numeric) >= 2


def melt_lin2024(df: pd.DataFrame, *, include_zero_shot: bool = False, source: str = "table") -> pd.DataFrame:
    """Long table (``model, family, size, ft_examples, loss``) from a Lin et al. (2024) wide table.

    The ``0`` column (zero-shot loss, no finetuning) is dropped unless ``include_zero_shot``: power laws in D_f
    are undefined at D_f = 0, and the reference RMSDs are computed over the non-zero sizes only.
    """
    if not is_lin2024_layout(df):
        raise DataError(
            f"{source}: not a Lin et al. (2024) wide table (needs 'config name', 'size', 'family' and numeric "
            f"data-size columns); columns are {list(df.columns)}"
        )
    size_cols = [c for c in df.columns if str(c).strip().isdigit()]
    if not include_zero_shot:
        size_cols = [c for c in size_cols if int(str(c).strip()) > 0]
    long = df.melt(
        id_vars=["config name", "size", "family"],
        value_vars=size_cols,
        var_name="ft_examples",
        value_name="loss",
    )
    long = long.rename(columns={"config name": "model"})
    long["ft_examples"] = long["ft_examples"].astype(str).str.strip().astype(int)
    long["size"] = pd.to_numeric(long["size"], errors="coerce")
    long["loss"] = pd.to_numeric(long["loss"], errors="coerce")
    return (
        long[list(LIN2024_COLUMNS)]
        .sort_values(["family", "size", "model", "ft_examples"])
        .reset_index(drop=True)
    )


def read_lin2024(path: str | Path, *, include_zero_shot: bool = False) -> pd.DataFrame:
    """Read one of Lin et al.'s ``flan.csv`` / ``gigaword.csv`` / ``wmt19.csv`` as a long point table.

    Columns: ``model`` (HF id), ``family``, ``size`` (parameters), ``ft_examples`` (finetuning examples),
    ``loss`` (test loss after full finetuning).
    """
    return melt_lin2024(read_table(path), include_zero_shot=include_zero_shot, source=str(path))


def validate_points(
    df: pd.DataFrame,
    *,
    sizes: Sequence[str],
    y: str,
    source: str,
    extra: Sequence[str] = (),
    zero_ok: Sequence[str] = (),
) -> pd.DataFrame:
    """Check that the size columns are finite and positive and ``y`` is finite and positive; return numeric copy.

    ``extra`` columns (e.g. a grouping column) must exist but are not checked for values. Size columns in
    ``zero_ok`` may also hold 0 (zero-shot points, D_f = 0).
    """
    needed = [*sizes, y, *extra]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: column {missing[0]!r} not found; available columns: {', '.join(map(str, df.columns))}"
        )
    out = df.copy()
    for col in [*sizes, y]:
        values = pd.to_numeric(out[col], errors="coerce")
        bad_text = values.isna() & out[col].notna()
        if bad_text.any():
            row = int(np.flatnonzero(bad_text.to_numpy())[0])
            raise DataError(
                f"{source}: column {col!r} has a non-numeric value {out[col].iloc[row]!r} (data row {row + 1})"
            )
        arr = values.to_numpy(dtype=float)
        finite = np.isfinite(arr)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise DataError(
                f"{source}: column {col!r} has a missing or infinite value (data row {row + 1}); "
                "drop or fix that run"
            )
        zero = col in zero_ok and col != y
        bad = arr < 0 if zero else arr <= 0
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "loss" if col == y else "size"
            raise DataError(
                f"{source}: column {col!r} has a {'negative' if zero else 'non-positive'} {what} {arr[row]:g} "
                f"(data row {row + 1}); scaling laws need {'sizes >= 0' if zero else 'positive values'}"
            )
        out[col] = arr
    return out


def read_points(
    path: str | Path,
    *,
    sizes: Sequence[str],
    y: str = "loss",
    extra: Sequence[str] = (),
    layout: str = "auto",
    zero_ok: Sequence[str] = (),
    where: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Read and validate a results CSV into a point table with the given size columns and loss column.

    ``layout``: ``long`` (one row per run), ``lin2024`` (wide table, melted), or ``auto`` (detect). ``where``:
    (column, value) pairs a row must match (compared as text), applied before the values are checked. Size columns
    in ``zero_ok`` may hold 0 (zero-shot points); a Lin et al. table then keeps its ``0`` column.
    """
    source = str(path)
    df = read_table(path)
    if layout not in {"auto", "long", "lin2024"}:
        raise DataError(f"unknown table layout {layout!r}: use auto, long or lin2024")
    if layout == "lin2024" or (layout == "auto" and is_lin2024_layout(df)):
        df = melt_lin2024(df, include_zero_shot=bool(zero_ok), source=source)
    df = filter_rows(df, where, source)  # before validation: rows filtered out (e.g. baselines) need no sizes
    return validate_points(df, sizes=sizes, y=y, source=source, extra=extra, zero_ok=zero_ok)


def filter_rows(
    df: pd.DataFrame, where: Sequence[tuple[str, Any]], source: str, option: str = "--where"
) -> pd.DataFrame:
    """The rows whose ``column`` equals ``value`` (compared as text) for every pair of ``where``; a missing column
    or no row left is a DataError naming ``option`` (the CLI's ``--where``, the API's ``where=``)."""
    for column, value in where:
        if column not in df.columns:
            raise DataError(
                f"{source}: {option} column {column!r} not found; available columns: "
                f"{', '.join(map(str, df.columns))}"
            )
        df = df[df[column].astype(str) == str(value)]
        if df.empty:
            raise DataError(f"{source}: no rows left after {option} {column}={value}")
    return df


def parse_heldout(spec: str, axis_columns: dict[str, str]) -> str | dict[str, list[float]] | None:
    """Parse a ``--heldout`` value: ``largest``, ``none`` or ``axis=v1;v2,axis=v3``.

    Axis names may be the role (``x``, ``d``) or the column name; values are numbers (``16e9``, ``100000``).
    Returns what :func:`ftscale.laws.evaluation.split_points` takes, keyed by column name.
    """
    text = spec.strip()
    if text.lower() in {"largest", "none"}:
        return text.lower()
    out: dict[str, list[float]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise DataError(
                f"--heldout {spec!r}: expected 'largest', 'none' or axis=value pairs like x=16e9,d=1e5"
            )
        key, _, raw_values = part.partition("=")
        key = key.strip()
        column = axis_columns.get(key, key if key in axis_columns.values() else None)
        if column is None:
            known = sorted({*axis_columns, *axis_columns.values()})
            raise DataError(f"--heldout: axis {key!r} is not one of {', '.join(known)}")
        for raw in filter(None, (v.strip() for v in raw_values.split(";"))):
            try:
                value = float(raw)
            except ValueError:
                raise DataError(f"--heldout: value {raw!r} for axis {key!r} is not a number") from None
            out.setdefault(column, []).append(value)
    if not out:
        raise DataError(f"--heldout {spec!r}: no axis=value pairs found")
    return out


def parse_predict(specs: Sequence[str], axis_columns: dict[str, str]) -> list[dict[str, float]]:
    """Parse ``--predict`` values (``d=1638400`` or ``x=1e9,d=1e5``; repeatable) into points keyed by role.

    Axis names may be the role (``x``, ``d``) or the column name, as in ``--heldout``.
    """
    roles = {role: role for role in axis_columns} | {column: role for role, column in axis_columns.items()}
    points = []
    for spec in specs:
        point: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, raw = part.partition("=")
            if not sep:
                raise DataError(
                    f"--predict {spec!r}: expected axis=value pairs like d=1638400 or x=1e9,d=1e5"
                )
            role = roles.get(key.strip())
            if role is None:
                raise DataError(f"--predict: axis {key.strip()!r} is not one of {', '.join(sorted(roles))}")
            try:
                point[role] = float(raw)
            except ValueError:
                raise DataError(
                    f"--predict: value {raw.strip()!r} for axis {key.strip()!r} is not a number"
                ) from None
        if not point:
            raise DataError(f"--predict {spec!r}: no axis=value pairs found")
        points.append(point)
    return points


def parse_where(items: Sequence[str]) -> list[tuple[str, str]]:
    """``--where COL=VALUE`` options (repeatable) as (column, value) pairs; a malformed one is a DataError."""
    filters = []
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise DataError(f"--where {item!r}: expected COL=VALUE, e.g. family=OPT")
        filters.append((column.strip(), value.strip()))
    return filters
