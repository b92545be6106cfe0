"""The analysis cache: the same results, settings and code give the stored analysis back; anything else recomputes."""

from __future__ import annotations

import pandas as pd
import pytest

from ftscale.analysis import cache as cache_module
from ftscale.analysis import core
from ftscale.analysis.cache import CACHE_ENV, analysis_key, cached_analyse


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """A stand-in for ``analyse`` that counts its calls (the cache logic, not the fits, is under test)."""
    calls = []

    def fake(results, **settings):
        calls.append(settings)
        return {"rows": len(results), "settings": settings}

    monkeypatch.setattr(core, "analyse", fake)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return calls


RESULTS = pd.DataFrame({"task": ["t", "t"], "loss": [2.0, 1.5], "ft_examples": [10, 20]})


def test_second_call_reads_the_cache(counted, tmp_path):
    first = cached_analyse(RESULTS, n_bootstrap=20, seed=0)
    again = cached_analyse(RESULTS.copy(), n_bootstrap=20, seed=0)
    assert first == again and len(counted) == 1
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == 1


def test_other_results_or_settings_miss(counted):
    cached_analyse(RESULTS, n_bootstrap=20, seed=0)
    cached_analyse(RESULTS, n_bootstrap=20, seed=1)
    changed = RESULTS.assign(loss=[2.0, 1.4])
    cached_analyse(changed, n_bootstrap=20, seed=0)
    assert len(counted) == 3
    assert analysis_key(RESULTS, {"seed": 0}) != analysis_key(
        RESULTS.rename(columns={"loss": "l"}), {"seed": 0}
    )


def test_changed_code_misses(counted, monkeypatch):
    cached_analyse(RESULTS, n_bootstrap=20, seed=0)
    monkeypatch.setattr(cache_module, "_code_fingerprint", lambda: "another version of the fitter")
    cached_analyse(RESULTS, n_bootstrap=20, seed=0)
    assert len(counted) == 2


def test_damaged_entry_is_recomputed_and_replaced(counted, tmp_path):
    cached_analyse(RESULTS, n_bootstrap=20, seed=0)
    (entry,) = (tmp_path / "cache").glob("*.pkl")
    entry.write_bytes(b"not a pickle")
    assert cached_analyse(RESULTS, n_bootstrap=20, seed=0)["rows"] == 2
    assert len(counted) == 2
    assert cached_analyse(RESULTS, n_bootstrap=20, seed=0)["rows"] == 2 and len(counted) == 2


def test_off_and_unwritable_cache_still_analyse(counted, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    cached_analyse(RESULTS, seed=0)
    cached_analyse(RESULTS, seed=0)
    assert len(counted) == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "sub"))  # below a file: cannot be created
    assert cached_analyse(RESULTS, seed=0)["rows"] == 2
