"""Seeded random finetuning subsets of a training pool, optionally nested, keeping language ratios.

Each (size, seed) cell of a study trains on ``subset(train, size, seed)``; the paper averages three seeds per size.
Dev and test sets are never subsampled. Stratification (by ``tgt_lang`` by default) keeps a multilingual mix's
language ratio in every subset, as the paper does for MLSum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from ftscale.data.types import Example
from ftscale.errors import DataError

DEFAULT_SEEDS = (0, 1, 2)


def _stratum(example: Example, stratify_by: str) -> str:
    if hasattr(example, stratify_by):
        return str(getattr(example, stratify_by))
    if stratify_by in example.meta:
        return str(example.meta[stratify_by])
    raise DataError(
        f"cannot stratify by {stratify_by!r}: not an Example field nor a meta key; use e.g. 'tgt_lang'"
    )


def selection_order(
    examples: Sequence[Example], seed: int, stratify_by: str | None = "tgt_lang"
) -> np.ndarray:
    """A seeded permutation of ``range(len(examples))`` whose every prefix keeps the strata's ratios.

    Within each stratum the order is random; strata are interleaved by the position of each item in its own
    stratum (item r of a stratum with n items sorts at (r + 0.5) / n), so any prefix of length k holds each
    stratum's share of k up to rounding, and prefixes are nested by construction.
    """
    rng = np.random.default_rng(seed)
    if stratify_by is None:
        return rng.permutation(len(examples))
    labels = np.array([_stratum(example, stratify_by) for example in examples])
    names, stratum_rank = np.unique(labels, return_inverse=True)  # names sorted, so ranks are deterministic
    keys = np.empty(len(examples))
    for rank in range(len(names)):
        members = np.flatnonzero(stratum_rank == rank)
        members = members[rng.permutation(len(members))]
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    # Ties in key are broken by stratum name so the order is deterministic.
    return np.lexsort((stratum_rank, keys))


def subset(
    examples: Sequence[Example],
    n_examples: int,
    seed: int,
    nested: bool = False,
    stratify_by: str | None = "tgt_lang",
) -> list[Example]:
    """``n_examples`` drawn at random (seeded) from the training pool ``examples``.

    ``nested=True``: for a given seed, the subset of size n is the first n of one fixed order, so smaller subsets
    are contained in larger ones (and are returned as their prefixes). ``nested=False``: each (size, seed) is an
    independent draw. Either way, strata keep their pool ratios up to rounding.
    """
    order = selection_order(examples, _order_seed(seed, n_examples, nested, len(examples)), stratify_by)
    return [examples[i] for i in order[:n_examples]]


def _order_seed(seed: int, n_examples: int, nested: bool, pool_size: int) -> int:
    """Check the size; independent draws mix the size into the seed, nested draws share one order per seed."""
    if n_examples < 1:
        raise DataError(f"subset size must be >= 1, got {n_examples}")
    if n_examples > pool_size:
        raise DataError(
            f"subset of {n_examples} examples requested but the training pool has only {pool_size}; "
            f"use a size <= {pool_size}"
        )
    return seed if nested else int.from_bytes(hashlib.sha256(f"{seed}:{n_examples}".encode()).digest()[:8])


def subsets(
    examples: Sequence[Example],
    sizes: Iterable[int],
    seeds: Iterable[int] = DEFAULT_SEEDS,
    nested: bool = False,
    stratify_by: str | None = "tgt_lang",
) -> dict[tuple[int, int], list[Example]]:
    """All (size, seed) subsets of a study's grid; nested subsets of one seed share a single order."""
    seeds = list(seeds)
    orders: dict[int, np.ndarray] = {}
    result: dict[tuple[int, int], list[Example]] = {}
    for size in sizes:
        for seed in seeds:
            order_seed = _order_seed(seed, size, nested, len(examples))
            order = orders.get(order_seed)
            if order is None:
                order = selection_order(examples, order_seed, stratify_by)
                if nested:  # independent draws never share an order: keep nothing
                    orders[order_seed] = order
            result[(size, seed)] = [examples[i] for i in order[:size]]
    return result


def subset_fingerprint(examples: Iterable[Example]) -> str:
    """Order-sensitive hash of example ids and texts, for run ids and for checking that data did not change."""
    digest = hashlib.sha256()
    for example in examples:
        for part in (example.id, example.src_lang, example.tgt_lang, example.source, example.target):
            encoded = part.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    return digest.hexdigest()[:16]
