"""Report figures when there is little to draw: the critical-size figure when method pairs never cross."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ftscale.analysis import FACTOR_BY_NAME, MethodTruth, SyntheticStudy, analyse
from ftscale.report import plots
from ftscale.report.html import build_sections, write_report

# Same exponents, same E, LoRA's A larger: LoRA's loss is a constant factor above FMT's, so they never cross.
NEVER_CROSSING = SyntheticStudy(
    truth={
        "fmt": MethodTruth(A_m=20.0, alpha_m=0.2, alpha_p=0.1, beta=0.1, E=1.5),
        "lora": MethodTruth(A_m=30.0, alpha_m=0.2, alpha_p=0.1, beta=0.1, E=1.5),
    },
    task="toy",
    model_params={"s": 1e5, "m": 4e5, "l": 1.6e6},
    pretrain_tokens=(2e5, 5e5, 1e6),
    pet_sizes={},
    examples={m: (100, 300, 1000, 3000) for m in ("fmt", "lora")},
    seeds=1,
    noise=0.001,
)


@pytest.fixture(scope="module")
def no_crossing():
    analysis = analyse(NEVER_CROSSING.results(), n_bootstrap=0, single_factor=False, compare_additive=False)
    assert len(analysis.critical) and analysis.critical["critical"].isna().all()  # the case under test
    return analysis


def test_critical_sizes_is_none_when_no_pair_crosses(no_crossing, tmp_path):
    assert plots.critical_sizes(no_crossing, "toy") is None
    # the report still renders: the critical section keeps its table, without a figure
    (crit,) = [s for s in build_sections(no_crossing) if s.title.startswith("Critical")]
    kinds = [kind for kind, _ in crit.blocks]
    assert "table" in kinds and "figure" not in kinds
    assert (write_report(no_crossing, tmp_path / "report") / "report.html").is_file()


def test_critical_sizes_draws_only_the_factors_and_pairs_that_cross(no_crossing):
    crit = no_crossing.critical.copy()
    crossing_rows = crit["factor"] == "pretrain_tokens"
    crit.loc[crossing_rows, "critical"] = np.geomspace(300.0, 900.0, int(crossing_rows.sum()))
    extra = crit[crit["factor"] == "model_size"].assign(pair="FMT vs Prompt")  # a second pair, never crossing
    curves = crit.loc[crossing_rows, ["task", "factor", "pair", "x", "critical"]]
    partial = dataclasses.replace(
        no_crossing, critical=pd.concat([crit, extra], ignore_index=True), critical_curves=curves
    )
    fig = plots.critical_sizes(partial, "toy")
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_xlabel() == FACTOR_BY_NAME["pretrain_tokens"].label
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["FMT vs LoRA"]
    assert len(plots.to_png(fig)) > 1000
