"""Seed-averaged cells are a function of the runs alone: not of their row order, the pandas release or its parser.

The fits' bootstrap explores flat directions, where a last-bit change of one cell moves resample endpoints and
with them the committed reproduction tables; these tests pin the bits.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ftscale.analysis import SyntheticStudy
from ftscale.analysis.cells import build_cells, load_results
from ftscale.laws.evaluation import exact_mean, exact_std
from ftscale.laws.io import read_table

STUDY = SyntheticStudy(
    model_params={"1B": 1e9, "2B": 2e9, "4B": 4e9},
    pretrain_tokens=(84e9, 126e9, 167e9),
    pet_sizes={"prompt": (50, 100), "lora": (4, 8)},
    examples={"fmt": (1e5, 3e5, 1e6), "prompt": (8e3, 2e4, 4e4), "lora": (8e3, 2e4, 4e4)},
    seeds=5,
    noise=0.03,
)


def test_cells_do_not_depend_on_row_order() -> None:
    runs = STUDY.results(seed=3)
    cells = build_cells(runs)
    for shuffle_seed in range(5):
        shuffled = runs.sample(frac=1.0, random_state=shuffle_seed)
        again = build_cells(shuffled)
        for column in ("x", "d", "loss", "loss_std"):
            assert np.array_equal(cells[column].to_numpy(), again[column].to_numpy()), column


def test_exact_mean_and_std_are_correctly_rounded() -> None:
    values = [0.1] * 10 + [1e16, 1.0, -1e16]
    assert exact_mean(values) == math.fsum(values) / len(values)  # naive summation loses the 1.0 here
    assert exact_mean([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(exact_mean([float("nan")]))
    assert exact_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(
        np.std([2, 4, 4, 4, 5, 5, 7, 9], ddof=1)
    )
    assert math.isnan(exact_std([1.0]))


def test_results_csv_floats_parse_to_the_nearest_double(tmp_path) -> None:
    # pandas before 3.1 parsed with its "high" precision parser by default, off by an ulp on some values.
    rng = np.random.default_rng(0)
    losses = rng.uniform(1.0, 9.0, 5000) * 10.0 ** rng.integers(-3, 3, 5000)
    path = tmp_path / "results.csv"
    pd.DataFrame({"task": "t", "loss": losses}).to_csv(path, index=False)
    assert path.read_text().count("\n") == 5001
    for loaded in (load_results(path), read_table(path)):
        assert np.array_equal(loaded["loss"].to_numpy(float), losses)
