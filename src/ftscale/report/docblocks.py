"""Generated blocks of a Markdown document: ``<!-- BEGIN generated:NAME -->`` ... ``<!-- END generated:NAME -->``.

Parse them, rewrite their contents (text outside the blocks is never touched), and check them against freshly
generated contents: numbers are compared with a relative tolerance (``REL_TOL``) or one unit of their last printed
digit, whichever is larger, and the text between numbers exactly (whitespace aside), so last-digit differences of
fits across machines (BLAS, libm) do not count as drift while any changed result, verdict or row does. The two ends
of an interval ``[low, high]`` (a bootstrap percentile interval) may also move by ``INTERVAL_TOL`` of its width: a
percentile of a few hundred resamples moves that much across machines when one or two resamples reach another
optimum, while every point estimate, verdict and row stays as it was.
"""

from __future__ import annotations

import re

from ftscale.errors import DataError

# --check: numbers agree when within 2 % (relative) or one unit of their last printed digit.
REL_TOL = 0.02
# --check: the ends of an interval [low, high] also agree when within this share of the interval's width.
INTERVAL_TOL = 0.1

_BEGIN = re.compile(r"^<!-- BEGIN generated:([A-Za-z0-9_.-]+) -->\s*$")
_END = re.compile(r"^<!-- END generated:([A-Za-z0-9_.-]+) -->\s*$")
_NUMBER = re.compile(r"[-−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_INTERVAL = re.compile(rf"\[\s*({_NUMBER.pattern})\s*,\s*({_NUMBER.pattern})\s*\]")


def parse_blocks(text: str, source: str = "<doc>") -> dict[str, str]:
    """Contents of the generated blocks of a document, by name (markers excluded)."""
    blocks: dict[str, str] = {}
    current: str | None = None
    start = 0
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if current is not None:
                raise DataError(
                    f"{source}:{number}: BEGIN generated:{begin[1]} inside block {current!r}; close it first"
                )
            if begin[1] in blocks:
                raise DataError(f"{source}:{number}: block {begin[1]!r} appears twice; keep one")
            current, start = begin[1], number
        elif end:
            if current != end[1]:
                raise DataError(
                    f"{source}:{number}: END generated:{end[1]} does not close "
                    f"{'any block' if current is None else repr(current)}"
                )
            blocks[current] = "".join(lines[start : number - 1])
            current = None
    if current is not None:
        raise DataError(f"{source}:{start}: block {current!r} has no END marker")
    return blocks


def rewrite_blocks(text: str, new: dict[str, str], source: str = "<doc>") -> tuple[str, list[str], list[str]]:
    """``text`` with the named blocks' contents replaced; also (blocks not regenerated, generated without a place)."""
    present = parse_blocks(text, source)
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        begin, end = _BEGIN.match(line), _END.match(line)
        if end and skipping:
            body = new[end[1]].strip("\n")
            out.append(body + "\n" if body else "")
            skipping = False
        if not skipping:
            out.append(line)
        if begin and begin[1] in new:
            if not line.endswith("\n"):
                out.append("\n")
            skipping = True
    untouched = [name for name in present if name not in new]
    missing = [name for name in new if name not in present]
    return "".join(out), untouched, missing


def _ulp(token: str) -> float:
    """One unit of the last printed digit of a real number token; 0 for integers (compared relatively)."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa and not exponent:
        return 0.0
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def _number(token: str) -> float:
    return float(token.replace("−", "-"))


def _interval_widths(text: str) -> dict[int, float]:
    """Index (among the text's numbers) of each end of an interval ``[low, high]`` -> the interval's width."""
    starts = {match.start(): i for i, match in enumerate(_NUMBER.finditer(text))}
    widths = {}
    for match in _INTERVAL.finditer(text):
        width = abs(_number(match.group(2)) - _number(match.group(1)))
        for group in (1, 2):
            if match.start(group) in starts:
                widths[starts[match.start(group)]] = width
    return widths


def compare_text(old: str, new: str, rel_tol: float = REL_TOL) -> str | None:
    """None when two block texts agree (numbers within tolerance, other text equal); else the first difference."""
    old_text, new_text = _NUMBER.split(old), _NUMBER.split(new)
    old_nums, new_nums = _NUMBER.findall(old), _NUMBER.findall(new)
    for a, b in zip(old_text, new_text, strict=False):
        if " ".join(a.split()) != " ".join(b.split()):
            return f"text {' '.join(a.split())[:60]!r} became {' '.join(b.split())[:60]!r}"
    if len(old_text) != len(new_text):
        return f"{len(old_nums)} numbers before, {len(new_nums)} now (rows or columns changed)"
    old_widths, new_widths = _interval_widths(old), _interval_widths(new)
    for i, (a, b) in enumerate(zip(old_nums, new_nums, strict=True)):
        x, y = _number(a), _number(b)
        width = max(old_widths.get(i, 0.0), new_widths.get(i, 0.0))
        tolerance = max(rel_tol * max(abs(x), abs(y)), _ulp(a), _ulp(b), INTERVAL_TOL * width)
        if abs(x - y) > tolerance * (1 + 1e-9):
            return f"{a} became {b} (tolerance {tolerance:.3g})"
    return None


def check_blocks(
    text: str, new: dict[str, str], source: str = "<doc>", rel_tol: float = REL_TOL
) -> dict[str, str]:
    """Blocks whose committed content differs from ``new``: name -> first difference (absent blocks included)."""
    present = parse_blocks(text, source)
    differ = {}
    for name, content in new.items():
        if name not in present:
            differ[name] = "not in the document"
            continue
        reason = compare_text(present[name], content, rel_tol)
        if reason is not None:
            differ[name] = reason
    return differ
