"""Golden: the Chinchilla Approach-3 refit of Besiroglu et al. (2024) on Epoch's digitised points."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from ftscale.laws.bootstrap import bootstrap
from ftscale.laws.forms import AdditiveLaw

pytestmark = pytest.mark.shared_data


def load(shared_data):
    frame = pd.read_csv(shared_data / "chinchilla" / "svg_extracted_data.csv")
    frame = frame.sort_values("loss").iloc[:-5]  # the 5 highest-loss points are excluded
    n = frame["Model Size"].to_numpy()
    d = frame["Training FLOP"].to_numpy() / (6 * n)  # tokens D = C / (6N)
    return np.c_[n, d], frame["loss"].to_numpy()


@pytest.mark.parametrize("solver", ["multistart", "vp"])
def test_full_grid_fit_matches_epoch(shared_data, solver):
    """Both solvers reach Epoch's optimum: the 4,500-start Hoffmann grid and variable projection."""
    X, y = load(shared_data)
    assert len(y) == 240
    start = time.perf_counter()
    law = AdditiveLaw(residual="log", huber_delta=1e-3, reduction="sum", solver=solver).fit(X, y)
    elapsed = time.perf_counter() - start
    print(f"chinchilla {solver}: {elapsed:.1f} s, objective {law.loss_:.12g}, {law.params_}")
    assert law.n_starts_ == (4500 if solver == "multistart" else 36**2)
    assert law.converged_ and law.warnings_ == []
    assert law.loss_ <= 0.00101828  # Epoch's best grid objective: 0.0010182740
    assert law.params_["E"] == pytest.approx(1.817, abs=0.005)
    assert law.params_["alpha"] == pytest.approx(0.3478, abs=0.002)
    assert law.params_["beta"] == pytest.approx(0.3658, abs=0.002)


@pytest.mark.slow
def test_bootstrap_matches_epoch_standard_errors(shared_data):
    X, y = load(shared_data)
    res = bootstrap(AdditiveLaw(residual="log"), X, y, n_resamples=1000, seed=42, n_jobs=2)
    ci = res.ci()
    assert res.n_failed <= 20
    # Epoch (4,000 resamples): s.e. E 0.026, alpha 0.0154, beta 0.0206; allow for Monte-Carlo spread
    assert ci.loc["E", "se"] == pytest.approx(0.026, rel=0.35)
    assert ci.loc["alpha", "se"] == pytest.approx(0.0154, rel=0.35)
    assert ci.loc["beta", "se"] == pytest.approx(0.0206, rel=0.35)
