"""WMT14 En-De and WMT19 En-Zh through Hugging Face ``datasets`` (a hub id, or a local copy offline)."""

from __future__ import annotations

from pathlib import Path

from ftscale.data.datasets.common import documents_from_lines
from ftscale.data.sources import (
    load_hf_dataset,
)
from ftscale.data.tasks import Task, TaskData
from ftscale.errors import UserError

# The paper's translation sets on the Hugging Face hub: (dataset id, config, dev split, test split).
WMT_SETS = {
    "wmt14-en-de": ("wmt/wmt14", "de-en", "validation", "test"),
    "wmt19-en-zh": ("wmt/wmt19", "zh-en", "validation", "validation"),
}


def wmt_task(
    data_dir: Path | str | None = None,
    src: str = "en",
    tgt: str = "de",
    dataset: str | None = None,
    n_train: int | None = None,
    template: str = "",
    separator: str = "",
) -> TaskData:
    """WMT translation (the paper's WMT14 En-De / WMT19 En-Zh) through Hugging Face ``datasets``: a hub id, or
    ``dataset`` = a local copy (``save_to_disk`` folder or data file) for machines without network. ``n_train``
    keeps the first N training pairs (the full sets hold millions)."""
    set_name = f"wmt{'14' if tgt == 'de' else '19'}-{src}-{tgt}"
    if set_name not in WMT_SETS:
        raise UserError(f"wmt: no WMT set for {src}->{tgt}; available: {sorted(WMT_SETS)}")
    hub_id, config, dev_split, test_split = WMT_SETS[set_name]
    source = dataset or hub_id
    fields = {"source_field": f"translation.{src}", "target_field": f"translation.{tgt}"}
    train, r1 = load_hf_dataset(
        source, "train", src_lang=src, tgt_lang=tgt, config_name=config, max_rows=n_train, **fields
    )
    dev, r2 = load_hf_dataset(source, dev_split, src_lang=src, tgt_lang=tgt, config_name=config, **fields)
    test, r3 = load_hf_dataset(source, test_split, src_lang=src, tgt_lang=tgt, config_name=config, **fields)
    return TaskData(
        task=Task(f"wmt-{src}-{tgt}", "translation", (src, tgt), template, separator),
        train=train,
        dev=dev,
        test=test,
        pretraining_text={
            src: lambda: documents_from_lines([e.source for e in train], 0),
            tgt: lambda: documents_from_lines([e.target for e in train], 1),
        },
        reports=[r1, r2, r3],
    )
