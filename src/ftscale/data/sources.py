"""Load finetuning examples from local files (parallel text, TSV, JSONL) or Hugging Face datasets, with validation.

Every loader returns ``(examples, LoadReport)``. Problems a user can fix raise a one-line
:class:`~ftscale.errors.DataError` naming the file (and line) and the fix; nothing is dropped silently: rows skipped
on request are counted in the report.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ftscale.data.types import Example
from ftscale.errors import DataError, UserError

# ISO 639-1 two-letter codes: a fixed, closed set so a typo ("ge" for German) fails loudly.
_ISO_639_1_CODES = """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el
    en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu
    ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na
    nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so
    sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """
ISO_639_1 = frozenset(_ISO_639_1_CODES.split())

EmptyPolicy = Literal["error", "skip"]


@dataclass
class LoadReport:
    """What a loader read and what it left out, so nothing disappears without a count."""

    source: str
    n_rows: int = 0
    n_loaded: int = 0
    n_skipped_empty: int = 0
    n_trailing_blank_lines: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.source}: {self.n_loaded} examples from {self.n_rows} rows"]
        if self.n_skipped_empty:
            parts.append(f"{self.n_skipped_empty} skipped (empty source or target)")
        if self.n_trailing_blank_lines:
            parts.append(f"{self.n_trailing_blank_lines} blank line(s) at end of file ignored")
        parts.extend(self.notes)
        return "; ".join(parts)


def check_language(code: str, where: str) -> str:
    """Return ``code`` lower-cased if it is an ISO 639-1 code, else raise a DataError naming ``where``."""
    normalized = str(code).strip().lower()
    if normalized not in ISO_639_1:
        raise DataError(
            f"{where}: unknown language code {code!r}; use a two-letter ISO 639-1 code such as en, de, zh, fr, cs"
        )
    return normalized


def _open_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path (or the data directory setting)")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; pass the path of a data file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); re-download or re-compress the file") from exc


def read_lines(path: str | Path) -> tuple[list[str], int]:
    """Read a UTF-8 text file (plain or ``.gz``) into lines; return ``(lines, n_trailing_blank_lines)``.

    A leading byte-order mark is removed. Blank lines at the very end of the file are not data and are counted
    separately; blank lines elsewhere are kept (the caller decides whether an empty row is an error).
    """
    path = Path(path)
    raw = _open_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_number = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line_number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-encode the file as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    n_trailing = 0
    while lines and not lines[-1].strip():
        lines.pop()
        n_trailing += 1
    # A file that ends with "\n" yields one empty string after the split: that is not a blank line.
    if text.endswith("\n"):
        n_trailing -= 1
    if not lines:
        raise DataError(f"{path}: file is empty; point to a file with one example per line")
    return lines, max(n_trailing, 0)


def _keep_or_reject(
    source: str,
    target: str,
    where: str,
    empty: EmptyPolicy,
    report: LoadReport,
    side_names=("source", "target"),
) -> bool:
    """Return True to keep the pair; on an empty side raise (``empty="error"``) or count it (``"skip"``)."""
    for value, side in ((source, side_names[0]), (target, side_names[1])):
        if not value.strip():
            if empty == "skip":
                report.n_skipped_empty += 1
                return False
            raise DataError(f"{where}: empty {side}; fix or remove this line, or load with empty='skip'")
    return True


def _check_unique_ids(examples: Sequence[Example], where: str, id_lines: Sequence[int] | None = None) -> None:
    seen: dict[str, int] = {}
    for index, example in enumerate(examples):
        if not example.id:
            continue
        if example.id in seen:
            location = f"{where}:{id_lines[index]}" if id_lines is not None else where
            first = id_lines[seen[example.id]] if id_lines is not None else seen[example.id]
            raise DataError(
                f"{location}: duplicate id {example.id!r} (first seen at line {first}); ids must be unique"
            )
        seen[example.id] = index


# --------------------------------------------------------------------------------------------------------------
# Line-aligned parallel text


def find_parallel_file(directory: Path, split: str, lang: str) -> Path:
    """``directory/split.lang`` or ``directory/split.lang.gz``, whichever exists."""
    for candidate in (directory / f"{split}.{lang}.gz", directory / f"{split}.{lang}"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{directory / f'{split}.{lang}.gz'}: file not found (nor {split}.{lang}); "
        f"check the data directory and the split/language names"
    )


def load_parallel_text(
    source_path: str | Path,
    target_path: str | Path,
    src_lang: str,
    tgt_lang: str,
    *,
    id_prefix: str | None = None,
    empty: EmptyPolicy = "error",
) -> tuple[list[Example], LoadReport]:
    """Line-aligned files (plain or ``.gz``): line *i* of ``target_path`` translates line *i* of ``source_path``.

    Ids are ``{id_prefix}:{line}`` (1-based line numbers), ``id_prefix`` defaulting to the source file's stem.
    """
    source_path, target_path = Path(source_path), Path(target_path)
    src_lang = check_language(src_lang, f"{source_path} (src_lang)")
    tgt_lang = check_language(tgt_lang, f"{target_path} (tgt_lang)")
    source_lines, source_trailing = read_lines(source_path)
    target_lines, target_trailing = read_lines(target_path)
    if len(source_lines) != len(target_lines):
        raise DataError(
            f"{source_path} has {len(source_lines)} lines but {target_path} has {len(target_lines)}; "
            f"parallel files must be line-aligned"
        )
    prefix = id_prefix if id_prefix is not None else source_path.name.split(".")[0]
    report = LoadReport(
        source=f"{source_path} + {target_path}",
        n_rows=len(source_lines),
        n_trailing_blank_lines=max(source_trailing, target_trailing),
    )
    examples = []
    for line_number, (source, target) in enumerate(zip(source_lines, target_lines, strict=True), start=1):
        where = f"{source_path if not source.strip() else target_path}:{line_number}"
        if not _keep_or_reject(source, target, where, empty, report):
            continue
        examples.append(
            Example(
                source=source.strip(),
                target=target.strip(),
                src_lang=src_lang,
                tgt_lang=tgt_lang,
                id=f"{prefix}:{line_number}",
            )
        )
    report.n_loaded = len(examples)
    return examples, report


# --------------------------------------------------------------------------------------------------------------
# TSV


def load_tsv(
    path: str | Path,
    source_column: str | int,
    target_column: str | int,
    src_lang: str,
    tgt_lang: str,
    *,
    header: bool | None = None,
    id_column: str | int | None = None,
    id_prefix: str | None = None,
    empty: EmptyPolicy = "error",
) -> tuple[list[Example], LoadReport]:
    """Tab-separated rows (plain or ``.gz``), no quoting. Columns by name (needs a header row) or 0-based index.

    ``header=None`` means: a header row exists exactly when some column is given by name.
    """
    path = Path(path)
    src_lang = check_language(src_lang, f"{path} (src_lang)")
    tgt_lang = check_language(tgt_lang, f"{path} (tgt_lang)")
    lines, n_trailing = read_lines(path)
    named = [c for c in (source_column, target_column, id_column) if isinstance(c, str)]
    has_header = bool(named) if header is None else header
    if named and not has_header:
        raise DataError(f"{path}: columns {named} are given by name but header=False; pass column indices")
    first_data_line = 1
    column_index: dict[str, int] = {}
    if has_header:
        names = lines[0].split("\t")
        column_index = {name.strip(): i for i, name in enumerate(names)}
        first_data_line = 2
        lines = lines[1:]
        if not lines:
            raise DataError(f"{path}: only a header row, no data; add rows below the header")

    def resolve(column: str | int, role: str) -> int:
        if isinstance(column, int):
            if column < 0:
                raise DataError(
                    f"{path}: {role} column index {column} is negative; "
                    f"give a 0-based index from the start of the row (0 is the first column)"
                )
            return column
        if column not in column_index:
            raise DataError(
                f"{path}: no column named {column!r} for the {role}; the header has {sorted(column_index)}"
            )
        return column_index[column]

    source_index = resolve(source_column, "source")
    target_index = resolve(target_column, "target")
    id_index = resolve(id_column, "id") if id_column is not None else None
    needed = max(i for i in (source_index, target_index, id_index) if i is not None) + 1
    prefix = id_prefix if id_prefix is not None else path.name.split(".")[0]
    report = LoadReport(source=str(path), n_rows=len(lines), n_trailing_blank_lines=n_trailing)
    examples, id_lines = [], []
    for line_number, line in enumerate(lines, start=first_data_line):
        cells = line.split("\t")
        if len(cells) < needed:
            if not line.strip() and empty == "skip":
                report.n_skipped_empty += 1
                continue
            raise DataError(
                f"{path}:{line_number}: {len(cells)} tab-separated column(s), need at least {needed}; "
                f"check the delimiter or the column settings"
            )
        source, target = cells[source_index], cells[target_index]
        if not _keep_or_reject(source, target, f"{path}:{line_number}", empty, report):
            continue
        example_id = cells[id_index].strip() if id_index is not None else f"{prefix}:{line_number}"
        examples.append(Example(source.strip(), target.strip(), src_lang, tgt_lang, id=example_id))
        id_lines.append(line_number)
    _check_unique_ids(examples, str(path), id_lines)
    report.n_loaded = len(examples)
    return examples, report


# --------------------------------------------------------------------------------------------------------------
# JSONL


def load_jsonl(
    path: str | Path,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    *,
    source_field: str = "source",
    target_field: str = "target",
    empty: EmptyPolicy = "error",
) -> tuple[list[Example], LoadReport]:
    """One JSON object per line with ``source``, ``target`` and optionally ``id``, ``src_lang``, ``tgt_lang``
    (``lang`` sets the target language, e.g. for summarisation). Per-row languages override the arguments;
    every row must end up with both languages. Other fields go to ``Example.meta``.
    """
    path = Path(path)
    lines, n_trailing = read_lines(path)
    default_src = check_language(src_lang, f"{path} (src_lang)") if src_lang else None
    default_tgt = check_language(tgt_lang, f"{path} (tgt_lang)") if tgt_lang else None
    report = LoadReport(source=str(path), n_rows=len(lines), n_trailing_blank_lines=n_trailing)
    examples, id_lines = [], []
    reserved = {source_field, target_field, "id", "src_lang", "tgt_lang", "lang"}
    for line_number, line in enumerate(lines, start=1):
        where = f"{path}:{line_number}"
        if not line.strip():
            if empty == "skip":
                report.n_skipped_empty += 1
                continue
            raise DataError(f"{where}: blank line; remove it or load with empty='skip'")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in (source_field, target_field):
            if key not in row:
                raise DataError(
                    f"{where}: missing field {key!r}; each object needs {source_field!r} and {target_field!r}"
                )
            if not isinstance(row[key], str):
                raise DataError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")
        if not _keep_or_reject(row[source_field], row[target_field], where, empty, report):
            continue
        row_src = row.get("src_lang") or default_src
        row_tgt = row.get("tgt_lang") or row.get("lang") or default_tgt
        if row_src is None or row_tgt is None:
            missing = "src_lang" if row_src is None else "tgt_lang"
            raise DataError(f"{where}: no {missing}; add it to the row or pass {missing}= to the loader")
        examples.append(
            Example(
                source=row[source_field].strip(),
                target=row[target_field].strip(),
                src_lang=check_language(row_src, f"{where} (src_lang)"),
                tgt_lang=check_language(row_tgt, f"{where} (tgt_lang)"),
                id=str(row["id"])
                if row.get("id") is not None
                else f"{path.name.split('.')[0]}:{line_number}",
                meta={k: v for k, v in row.items() if k not in reserved},
            )
        )
        id_lines.append(line_number)
    _check_unique_ids(examples, str(path), id_lines)
    report.n_loaded = len(examples)
    return examples, report


# --------------------------------------------------------------------------------------------------------------
# Hugging Face datasets

_DATA_FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}


def _hub_unreachable(exc: BaseException) -> bool:
    """Whether an exception from ``datasets`` means the hub could not be contacted (offline, DNS, proxy)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    return (
        any(isinstance(e, ConnectionError | TimeoutError) for e in chain)
        or bool(names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError", "ConnectTimeout"})
        or "couldn't reach" in text
        or "name or service not known" in text
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_hf_dataset(
    name_or_path: str | Path,
    split: str,
    source_field: str,
    target_field: str,
    src_lang: str,
    tgt_lang: str,
    *,
    config_name: str | None = None,
    id_field: str | None = None,
    empty: EmptyPolicy = "error",
    max_rows: int | None = None,
) -> tuple[list[Example], LoadReport]:
    """Examples from a Hugging Face dataset: a directory written by ``save_to_disk``, a local data file
    (.json/.jsonl/.csv/.parquet), or a hub id (needs network; offline this raises a UserError saying so).

    ``source_field`` / ``target_field`` may be dotted to reach into nested columns, e.g. ``translation.en``.
    ``max_rows`` reads only the first N rows of the split (the full WMT sets hold millions).
    """
    import datasets

    src_lang = check_language(src_lang, f"{name_or_path} (src_lang)")
    tgt_lang = check_language(tgt_lang, f"{name_or_path} (tgt_lang)")
    local = Path(name_or_path)
    label = str(name_or_path)
    if local.is_dir() and ((local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()):
        try:
            loaded = datasets.load_from_disk(str(local))
        except Exception as exc:
            raise DataError(
                f"{local}: cannot load the saved dataset ({_first_line(exc)}); re-save it"
            ) from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"{local}: no split {split!r}; available: {sorted(loaded)}")
            loaded = loaded[split]
    elif local.is_file():
        builder = _DATA_FILE_BUILDERS.get(local.suffix if local.suffix != ".gz" else Path(local.stem).suffix)
        if builder is None:
            raise DataError(f"{local}: cannot tell the format; use one of {sorted(_DATA_FILE_BUILDERS)}")
        try:
            loaded = datasets.load_dataset(builder, data_files={split: str(local)}, split=split)
        except Exception as exc:
            raise DataError(f"{local}: cannot read as {builder} ({_first_line(exc)}); fix the file") from None
    elif local.exists() or str(name_or_path).startswith((".", "/", "~")):
        raise DataError(f"{local}: not a saved dataset directory or data file; check the path")
    else:
        try:
            loaded = datasets.load_dataset(str(name_or_path), config_name, split=split)
        except Exception as exc:
            if _hub_unreachable(exc):
                raise UserError(
                    f"cannot reach the Hugging Face hub for {label!r} (offline?): download it elsewhere "
                    f"and pass a local path"
                ) from None
            if type(exc).__name__ in {"DatasetNotFoundError", "FileNotFoundError"}:
                raise DataError(f"{label}: no such dataset on the Hugging Face hub; check the id") from None
            if isinstance(exc, ValueError):
                raise DataError(f"{label}: {_first_line(exc)}") from None
            raise
    if max_rows is not None and max_rows < len(loaded):
        loaded = loaded.select(range(max(max_rows, 0)))

    def pick(row: dict[str, Any], dotted: str, index: int) -> Any:
        value: Any = row
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise DataError(
                    f"{label}[{split}] row {index}: no field {dotted!r}; columns: {loaded.column_names}"
                )
            value = value[part]
        return value

    report = LoadReport(source=f"{label}[{split}]", n_rows=len(loaded))
    examples = []
    for index, row in enumerate(loaded):
        source, target = pick(row, source_field, index), pick(row, target_field, index)
        where = f"{label}[{split}] row {index}"
        if not isinstance(source, str) or not isinstance(target, str):
            raise DataError(f"{where}: {source_field!r} and {target_field!r} must be strings")
        if not _keep_or_reject(source, target, where, empty, report):
            continue
        example_id = str(pick(row, id_field, index)) if id_field else f"{split}:{index}"
        examples.append(Example(source.strip(), target.strip(), src_lang, tgt_lang, id=example_id))
    _check_unique_ids(examples, f"{label}[{split}]")
    report.n_loaded = len(examples)
    return examples, report
