"""The notebook API: ``ftscale.fit`` / ``load`` / ``critical_data_size`` / ``advise`` on tables and studies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ftscale
from ftscale.errors import DataError, FitError

TRUTH = dict(A=400.0, alpha=0.3, beta=0.25, E=0.8)


def points(seeds: int = 2, noise: float = 0.002) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for x in (1e6, 1e7, 1e8, 1e9, 1e10):
        for d in (1e2, 1e3, 1e4, 1e5, 1e6, 1e7):
            clean = TRUTH["A"] * x ** -TRUTH["alpha"] * d ** -TRUTH["beta"] + TRUTH["E"]
            for seed in range(seeds):
                rows.append(
                    {"model_size": x, "ft_examples": d, "seed": seed, "loss": clean + noise * rng.normal()}
                )
    return pd.DataFrame(rows)


def test_import_stays_light_and_lists_the_api():
    code = "import sys, ftscale; print('numpy' in sys.modules, sorted(set(dir(ftscale)) & {'fit', 'load', 'advise'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False ['advise', 'fit', 'load']"
    with pytest.raises(AttributeError):
        ftscale.no_such_thing  # noqa: B018


def test_fit_predict_summary_plot_and_html():
    fitted = ftscale.fit(points(), "multiplicative", x="model_size", d="ft_examples", bootstrap=20)
    assert fitted.params["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.1)
    assert fitted.law.residual == ftscale.CURVE_RESIDUAL  # the same default as `ftscale fit`
    table = fitted.predict([1e7, 1e8], x=1e10)
    truth = TRUTH["A"] * 1e10 ** -TRUTH["alpha"] * np.array([1e7, 1e8]) ** -TRUTH["beta"] + TRUTH["E"]
    np.testing.assert_allclose(table["loss"], truth, atol=0.01)
    assert (table["low"] <= table["loss"]).all() and (table["loss"] <= table["high"]).all()
    summary = fitted.summary()
    assert {"alpha", "Δh (held out)", "Δh noise floor", "lack-of-fit p"} <= set(summary.index)
    assert summary.loc["alpha", "low"] <= summary.loc["alpha", "value"] <= summary.loc["alpha", "high"]
    figure = fitted.plot()
    assert type(figure).__name__ == "Figure" and len(figure.axes[0].lines) == 5  # one curve per model size
    html = fitted._repr_html_()
    assert "multiplicative law" in html and "<table" in html
    with pytest.raises(FitError, match="give x"):
        fitted.predict([1e7])


def test_fit_single_factor_from_a_file_with_where(tmp_path):
    frame = points()
    frame[frame["model_size"] == 1e8].to_csv(tmp_path / "runs.csv", index=False)
    fitted = ftscale.fit(tmp_path / "runs.csv", "power", d="ft_examples", heldout="none")
    assert fitted.report.n_heldout == 0 and "beta" in fitted.params
    with pytest.raises(FitError, match="needs x="):
        ftscale.fit(frame, "multiplicative", d="ft_examples")
    with pytest.raises(DataError, match="no rows left"):
        ftscale.fit(frame, "power", d="ft_examples", where={"model_size": 5})


@pytest.mark.shared_data
def test_fit_lin2024_table_with_zero_shot_rows(shared_data):
    fitted = ftscale.fit(
        shared_data / "finetuning_scaling_law_lin2024" / "wmt19.csv", "rectified", where={"model": "gpt2"}
    )
    assert (
        fitted.report.n_fit + fitted.report.n_heldout == 14
    )  # the zero-shot column is not in the melted table
    assert fitted.report.converged


def test_load_study_and_advise(tmp_path):
    from ftscale.analysis import SyntheticStudy

    study = SyntheticStudy(
        model_params={"1B": 1e9, "4B": 4e9, "16B": 16e9},
        pretrain_tokens=(84e9, 167e9, 283e9),
        pet_sizes={"prompt": (50, 100, 400), "lora": (4, 16, 64)},
        examples={
            "fmt": (1e5, 1e6, 2e6, 4.5e6),
            "prompt": (8e3, 2e4, 5e4, 1e5),
            "lora": (8e3, 2e4, 5e4, 1e5),
        },
        seeds=2,
        noise=0.001,
    )
    study.results(seed=1).to_csv(tmp_path / "results.csv", index=False)
    loaded = ftscale.load(tmp_path / "results.csv", bootstrap=10)
    assert len(loaded.results) and "<table" in loaded._repr_html_()
    assert {"method", "factor", "alpha", "delta_h"} <= set(loaded.fits.columns)
    advice = ftscale.advise(loaded, 20_000)
    assert advice.best.method in ("fmt", "prompt", "lora") and "P(best beats runner-up)" in advice.render()
    law = loaded.analysis.law(loaded.analysis.tasks[0], "fmt", "model_size")
    other = loaded.analysis.law(loaded.analysis.tasks[0], "lora", "model_size")
    points_ = ftscale.critical_data_size(law, other, 1e9)
    assert points_.status in ("none", "one", "several")
