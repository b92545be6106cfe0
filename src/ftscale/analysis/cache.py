"""A cache of finished analyses, so that ``advise`` (and ``report``, ``fit DIR``, the demo) on the same results
answer in seconds instead of refitting every law with its bootstrap on every call.

The key is a hash of the results table (values and columns), the analysis settings and the source of the code that
computes an analysis (``ftscale.analysis`` and ``ftscale.laws``): new runs, other settings or a changed fitter each
miss the cache, never read a stale analysis. Entries are pickles under the user's cache directory
(``$FTSCALE_ANALYSIS_CACHE`` moves it, ``off`` disables it); an unreadable or damaged entry is recomputed and
replaced, and a cache that cannot be written is skipped silently (the analysis itself is the product).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ftscale.study.cache import user_cache

CACHE_ENV = "FTSCALE_ANALYSIS_CACHE"

#: Packages whose source decides an analysis's numbers: a change in any of them changes every key.
_CODE_PACKAGES = ("ftscale.analysis", "ftscale.laws")


def cache_dir() -> Path | None:
    """Where analyses are kept; None when the cache is off."""
    return user_cache(CACHE_ENV, "analyses")


def _code_fingerprint() -> str:
    import importlib

    digest = hashlib.sha256()
    for name in _CODE_PACKAGES:
        package = Path(importlib.import_module(name).__file__).parent  # type: ignore[arg-type]
        for path in sorted(package.rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def analysis_key(results: pd.DataFrame, settings: dict[str, Any]) -> str:
    """Hash of the results' values and columns, the settings and the analysing code."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in results.columns]).encode())
    digest.update(pd.util.hash_pandas_object(results, index=False).to_numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(_code_fingerprint().encode())
    return digest.hexdigest()[:32]


def cached_analyse(results: pd.DataFrame, **settings: Any) -> Any:
    """``analyse(results, **settings)``, read from the cache when this exact analysis was done before."""
    from ftscale.analysis.core import analyse

    root = cache_dir()
    key = analysis_key(results, settings) if root is not None else ""
    path = root / f"{key}.pkl" if root is not None else None
    if path is not None and path.is_file():
        try:
            with path.open("rb") as handle:
                return pickle.load(handle)
        except Exception:
            pass
    analysis = analyse(results, **settings)
    if path is not None:
        _store(analysis, path)
    return analysis


def _store(analysis: Any, path: Path) -> None:
    temp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            temp = handle.name
            pickle.dump(analysis, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temp, path)  # atomic: a reader never sees half an entry
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
