"""Golden: per-model rectified and vanilla finetuning laws on Lin et al. (2024), against the authors' RMSDs.

Fitting details (ours): log residuals with Huber δ = 1 — on these losses every |log residual| is far below 1,
so this is least squares on log loss, the quantity the RMSD measures (Lin et al. also fit an MSE surrogate);
Hoffmann-style starting grids per form (``RectifiedLaw.default_grid``: log D_l ∈ {0, 5, …, 20}).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ftscale.laws.forms import FitWarning, RectifiedLaw, VanillaLaw

pytestmark = pytest.mark.shared_data

TASKS = {"wmt19": "WMT19", "gigaword": "GIGAWORD", "flan": "FLAN"}
AUTHORS_MEAN = {"wmt19": (0.0123, 0.0629), "gigaword": (0.0052, 0.0106), "flan": (0.0065, 0.0358)}


def rmsd_per_model(shared_data, task: str, models: int | None = None) -> pd.DataFrame:
    root = shared_data / "finetuning_scaling_law_lin2024"
    frame = pd.read_csv(root / f"{task}.csv")
    reference = pd.read_csv(root / "reference_rmsd.csv")
    reference = reference[reference["dataset"] == TASKS[task]].set_index("model")
    sizes = [c for c in frame.columns if c.isdigit() and int(c) > 0]  # the 14 non-zero sizes
    d = np.array([float(c) for c in sizes])
    rows = []
    for _, row in frame.head(models).iterrows() if models else frame.iterrows():
        y = row[sizes].to_numpy(dtype=float)
        record = {"model": row["config name"]}
        for name, cls in (("rectified", RectifiedLaw), ("vanilla", VanillaLaw)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                law = cls(residual="log", huber_delta=1.0).fit(d, y)
            record[name] = float(np.sqrt(np.mean((np.log(law.predict(d)) - np.log(y)) ** 2)))
        record["authors_rectified"] = reference.loc[row["config name"], "our_rmsd_under_log"]
        record["authors_vanilla"] = reference.loc[row["config name"], "vanilla_rmsd_under_log"]
        rows.append(record)
    return pd.DataFrame(rows)


def test_rectified_beats_authors_on_first_wmt19_models(shared_data):
    table = rmsd_per_model(shared_data, "wmt19", models=6)
    print(table.to_string())
    assert table["rectified"].mean() <= table["authors_rectified"].mean()
    assert table["rectified"].mean() < table["vanilla"].mean()


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_mean_rmsd_against_authors(shared_data, task):
    table = rmsd_per_model(shared_data, task)
    assert len(table) == 30
    rect, van = table["rectified"].mean(), table["vanilla"].mean()
    authors_rect, authors_van = AUTHORS_MEAN[task]
    print(f"{task}: rectified {rect:.4f} (authors {authors_rect}), vanilla {van:.4f} (authors {authors_van})")
    assert table["authors_rectified"].mean() == pytest.approx(authors_rect, abs=5e-5)
    assert rect <= authors_rect
    assert van > rect  # the rectified law fits better than the vanilla one, as the authors found
    # our vanilla fit (full grid) is no worse than the authors' 10 random restarts, within 10 %
    assert van <= 1.1 * authors_van
