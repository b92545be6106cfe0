"""The example notebook (docs/example.ipynb) runs from top to bottom, so it cannot rot."""

from __future__ import annotations

import os

import pytest

from conftest import REPO_ROOT

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def test_example_notebook_runs(shared_data, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(REPO_ROOT / "docs" / "example.ipynb", as_version=4)
    env = {"FTSCALE_SHARED_DATA": str(shared_data)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(REPO_ROOT / "docs")}},
        )
        client.execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    texts = " ".join(
        str(out.get("data", {}).get("text/plain", "")) + str(out.get("text", "")) for out in outputs
    )
    assert "use " in texts and "P(best beats runner-up)" in texts  # the advice was printed
    assert sum("image/png" in out.get("data", {}) for out in outputs) == 2  # both plots rendered
