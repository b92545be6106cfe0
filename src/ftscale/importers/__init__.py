"""``ftscale import``: runs people already have (Trainer directories, TensorBoard, MLflow, W&B) → one results table.

:func:`import_runs` reads every location with its own library (:mod:`ftscale.importers.sources`) and maps each run
onto the columns of ``ftscale study export`` (:mod:`ftscale.importers.table`), so ``fit``, ``report`` and
``advise`` take the imported table unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ftscale.importers.mapping import ImportMapping, load_mapping
from ftscale.importers.sources import DEFAULT_LOSS, SOURCES, read_runs
from ftscale.importers.table import results_frame

__all__ = ["SOURCES", "ImportMapping", "import_runs", "load_mapping"]


def import_runs(
    locations: str | Sequence[str],
    mapping: ImportMapping | str | Path | None = None,
    source: str | None = None,
    *,
    fields: Mapping[str, str] | Sequence[str] | None = None,
    loss: str | None = None,
    pick: str | None = None,
    task: str | None = None,
    metrics: Mapping[str, str] | None = None,
    notify: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    r"""The results table of every run found at ``locations`` (paths, or MLflow tracking URIs).

    ``mapping`` is an :class:`ImportMapping` or a YAML file; ``fields`` adds to it as on the command line, as a
    dict (``{"ft_examples": r"regex:-n(\d+)"}``) or ``NAME=KIND:VALUE`` strings; ``metrics`` adds columns
    (``{"bleu": "eval_bleu"}``: its value at the loss's step); ``notify`` gets one line per location read."""
    if isinstance(locations, str | Path):
        locations = [locations]
    flags = [f"{k}={v}" for k, v in fields.items()] if isinstance(fields, Mapping) else list(fields or [])
    extra = [f"{column}={metric}" for column, metric in (metrics or {}).items()]
    mapping = load_mapping(mapping, fields=flags, loss=loss, pick=pick, task=task, metrics=extra)
    needed = {mapping.loss.metric, *mapping.metrics.values(), *(f.metric for f in mapping.fields.values())}
    needed = {m for m in needed if m} | {m for names in DEFAULT_LOSS.values() for m in names}
    runs = []
    for location in locations:
        started = time.monotonic()
        found = read_runs(str(location), source, histories=needed)
        runs += found
        if notify is not None:
            notify(
                f"{location}: {len(found)} {found[0].source} runs read in {time.monotonic() - started:.1f} s"
            )
    return results_frame(runs, mapping)
