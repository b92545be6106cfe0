"""``ftscale import``: runs people already have (Trainer directories, TensorBoard, MLflow, W&B) → one results table.

:func:`import_runs` reads every location with its own library (:mod:`ftscale.importers.sources`) and maps each run
onto the columns of ``ftscale study export`` (:mod:`ftscale.importers.table`), so ``fit``, ``report`` and
``advise`` take the imported table unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ftscale.importers.mapping import ImportMapping, load_mapping
from ftscale.importers.sources import SOURCES, read_runs
from ftscale.importers.table import results_frame

__all__ = ["SOURCES", "ImportMapping", "import_runs", "load_mapping"]


def import_runs(
    locations: Sequence[str], mapping: ImportMapping | None = None, source: str | None = None
) -> pd.DataFrame:
    """The results table of every run found at ``locations`` (paths, or MLflow tracking URIs)."""
    runs = [run for location in locations for run in read_runs(str(location), source)]
    return results_frame(runs, mapping or ImportMapping())
