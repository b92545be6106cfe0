"""Shared test fixtures: the real data beside the repository (``../shared/data``), skipped when absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never read or fill the user's family cache (a study would reuse base models built by other code); the
# cache's own tests give their studies a cache directory of their own (execution.family_cache).
os.environ.setdefault("FTSCALE_FAMILY_CACHE", "off")
# Nor the analysis cache: a test that breaks an analysis on purpose must not be answered from an earlier one; the
# cache's own tests point it at a directory of their own.
os.environ.setdefault("FTSCALE_ANALYSIS_CACHE", "off")


def shared_data_dir() -> Path:
    """Where the shared reference data lives: $FTSCALE_SHARED_DATA or ../shared/data beside the repo."""
    env = os.environ.get("FTSCALE_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


def cli_env() -> dict[str, str]:
    """Environment for running ``python -m ftscale`` from a checkout without installing it."""
    env = dict(os.environ)
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_cli(*args: str, timeout: float = 300, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m ftscale ARGS`` from this checkout, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "ftscale", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=cwd,
        timeout=timeout,
    )


def assert_objective_gradient(law, raw_center, X, y, rng, trials: int = 3) -> None:
    """The law's analytic objective gradient matches central finite differences at points near ``raw_center``."""
    import numpy as np

    for _ in range(trials):
        raw = raw_center + rng.normal(0, 0.05, len(raw_center))
        f, g = law.objective_and_gradient(raw, X, y)
        h, eye = 1e-6, np.eye(len(raw))
        numeric = np.array(
            [
                (law.objective(raw + h * eye[i], X, y) - law.objective(raw - h * eye[i], X, y)) / (2 * h)
                for i in range(len(raw))
            ]
        )
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-9 * max(1.0, abs(f)))


def assert_from_params_predicts(cls, params, X, expected) -> None:
    """A law built from natural parameters predicts ``expected`` at ``X`` and round-trips its parameters."""
    import numpy as np

    law = cls.from_params(**params)
    np.testing.assert_allclose(law.predict(X), expected, rtol=1e-12)
    assert law.params_ == pytest.approx(params)
    np.testing.assert_allclose(law.raw_params_, cls.raw_from_natural(**params))
