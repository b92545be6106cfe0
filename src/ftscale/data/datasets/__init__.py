"""The data sets and the task registry: one module per data set (Multi30k, Tatoeba En-Zh, Klexikon, CSL, WMT,
the synthetic corpus), the real monolingual pretraining corpus, and ``load_task(name)``.

The data root is the ``data_dir`` argument, else ``$FTSCALE_DATA_DIR``, else ``../shared/data`` relative to the
current directory. Every split is deterministic: the same arguments give the same examples in the same order.
"""

from ftscale.data.datasets.common import DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_data_dir, split_sentences
from ftscale.data.datasets.csl import csl_task, sum_de_zh_task
from ftscale.data.datasets.klexikon import klexikon_task, klexikon_wiki_documents
from ftscale.data.datasets.multi30k import MULTI30K_LANGUAGES, multi30k_task
from ftscale.data.datasets.pretraining import PretrainingCorpus, pretraining_corpus
from ftscale.data.datasets.registry import known_task, load_task, task_names, task_options
from ftscale.data.datasets.synthetic import synthetic_task
from ftscale.data.datasets.tatoeba import tatoeba_task
from ftscale.data.datasets.wmt import WMT_SETS, wmt_task

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "MULTI30K_LANGUAGES",
    "WMT_SETS",
    "PretrainingCorpus",
    "csl_task",
    "klexikon_task",
    "klexikon_wiki_documents",
    "known_task",
    "load_task",
    "multi30k_task",
    "pretraining_corpus",
    "resolve_data_dir",
    "split_sentences",
    "sum_de_zh_task",
    "synthetic_task",
    "task_names",
    "task_options",
    "tatoeba_task",
    "wmt_task",
]
