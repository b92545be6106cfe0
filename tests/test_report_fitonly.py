"""Fit-only mode on a real wide loss table (Lin et al. 2024): joint laws per family, single laws, crossings."""

from __future__ import annotations

import pandas as pd
import pytest

from ftscale.analysis import analyse_points, load_points
from ftscale.errors import DataError


@pytest.mark.shared_data
@pytest.mark.slow  # eight law fits of the OPT family: minutes on a loaded CPU
def test_lin2024_family(shared_data, tmp_path):
    wide = pd.read_csv(shared_data / "finetuning_scaling_law_lin2024" / "wmt19.csv")
    family = wide[wide["family"] == "OPT"]  # four OPT models, 350m-6.7b
    assert len(family) >= 3
    path = tmp_path / "opt.csv"
    family.to_csv(path, index=False)
    points = load_points(path, x="size", factor="family")
    assert set(points.columns) >= {"group", "model", "x", "d", "loss"}
    assert points["d"].min() == 200  # the zero-shot column (d = 0) is dropped
    result = analyse_points(points, single_forms=("rectified",))
    joint = result.joint.set_index("form")
    assert set(joint.index) == {"multiplicative", "additive"}
    assert (joint["n_heldout"] > 0).all() and (joint["delta_h"] > 0).all()
    # the rectified law fits every OPT curve to within a few percent in log loss (Lin et al.: ~0.01-0.02)
    assert (result.single["rmse_log"] < 0.05).all()
    assert len(result.crossings) == len(family) * (len(family) - 1) // 2
    assert set(result.crossings["status"]) <= {"none", "one", "several"}


def test_column_mapping_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("n,examples,nll\n1,2,3\n")
    with pytest.raises(DataError, match="size"):
        load_points(path, x="size", d="examples", y="nll")
    with pytest.raises(DataError, match="--y"):
        load_points(path, x="n", d="examples")


def test_method_column_splits_groups(tmp_path):
    path = tmp_path / "runs.csv"
    rows = ["params,examples,nll,method"]
    for method, scale in (("fmt", 1.0), ("lora", 1.3)):
        for x in (1e6, 2e6, 4e6):
            for d in (100, 200, 400, 800):
                rows.append(f"{x},{d},{scale * 30 * x**-0.2 * d**-0.1 + 1:.6f},{method}")
    path.write_text("\n".join(rows) + "\n")
    points = load_points(path, x="params", d="examples", y="nll", method="method")
    assert sorted(points["group"].unique()) == ["fmt", "lora"]
    result = analyse_points(points, single_forms=("power",))
    assert set(result.joint["group"]) == {"fmt", "lora"}
    with pytest.raises(DataError, match="kind"):
        load_points(path, x="params", d="examples", y="nll", method="kind")
