"""Finetuning subsets: sizes, seeds, nesting, language ratios, and the too-large error."""

from __future__ import annotations

import itertools

import pytest

from ftscale.data.subsets import DEFAULT_SEEDS, selection_order, subset, subset_fingerprint, subsets
from ftscale.data.types import Example
from ftscale.errors import DataError

# A 3:1 German:Chinese pool, like a summarisation mix.
POOL = [Example(f"de doc {i}", f"de sum {i}", "de", "de", id=f"de{i}") for i in range(300)] + [
    Example(f"zh doc {i}", f"zh sum {i}", "zh", "zh", id=f"zh{i}") for i in range(100)
]


def ids(examples: list[Example]) -> list[str]:
    return [e.id for e in examples]


def test_sizes_uniqueness_and_determinism() -> None:
    for n in (1, 7, 64, 400):
        chosen = subset(POOL, n, seed=0)
        assert len(chosen) == n and len(set(ids(chosen))) == n
        assert ids(chosen) == ids(subset(POOL, n, seed=0))
    assert set(ids(subset(POOL, 400, seed=3))) == set(ids(POOL))


def test_seeds_give_different_subsets() -> None:
    draws = [set(ids(subset(POOL, 50, seed))) for seed in DEFAULT_SEEDS]
    assert DEFAULT_SEEDS == (0, 1, 2)
    assert draws[0] != draws[1] and draws[1] != draws[2] and draws[0] != draws[2]


@pytest.mark.parametrize("nested", [False, True])
def test_language_ratio_is_kept(nested: bool) -> None:
    for n in (4, 10, 41, 100, 399):
        chosen = subset(POOL, n, seed=1, nested=nested)
        n_zh = sum(e.tgt_lang == "zh" for e in chosen)
        assert abs(n_zh - n / 4) <= 1, (n, n_zh)
    # Without stratification a small draw can stray far from the ratio; with it, never by more than one.
    plain = [sum(e.tgt_lang == "zh" for e in subset(POOL, 20, seed, stratify_by=None)) for seed in range(30)]
    assert max(abs(k - 5) for k in plain) > 1


def test_nested_subsets_are_prefixes() -> None:
    sizes = [10, 25, 100, 250]
    for seed in DEFAULT_SEEDS:
        draws = [subset(POOL, n, seed, nested=True) for n in sizes]
        for small, large in itertools.pairwise(draws):
            assert ids(large[: len(small)]) == ids(small)
    # Independent (non-nested) draws of different sizes are not prefixes of each other.
    small, large = subset(POOL, 25, 0), subset(POOL, 100, 0)
    assert not set(ids(small)) <= set(ids(large))


def test_too_large_and_bad_requests() -> None:
    with pytest.raises(
        DataError, match="subset of 401 examples requested but the training pool has only 400"
    ):
        subset(POOL, 401, seed=0)
    with pytest.raises(DataError, match="subset size must be >= 1"):
        subset(POOL, 0, seed=0)
    with pytest.raises(DataError, match="cannot stratify by 'domain'"):
        subset(POOL, 5, seed=0, stratify_by="domain")


def test_stratify_by_meta_and_grid_helpers() -> None:
    pool = [
        Example(str(i), str(i), "en", "de", id=str(i), meta={"domain": "news" if i % 2 else "web"})
        for i in range(40)
    ]
    chosen = subset(pool, 10, seed=0, stratify_by="domain")
    assert sum(e.meta["domain"] == "news" for e in chosen) == 5
    grid = subsets(POOL, sizes=[8, 16], nested=True)
    assert sorted(grid) == [(8, 0), (8, 1), (8, 2), (16, 0), (16, 1), (16, 2)]
    assert ids(grid[(16, 1)][:8]) == ids(grid[(8, 1)])
    assert ids(grid[(16, 2)]) == ids(subset(POOL, 16, seed=2, nested=True))
    independent = subsets(POOL, sizes=[8, 16], seeds=[1])
    assert ids(independent[(16, 1)]) == ids(subset(POOL, 16, seed=1))
    with pytest.raises(DataError, match="subset of 401 examples requested"):
        subsets(POOL, sizes=[8, 401], nested=True)
    assert sorted(selection_order(POOL, seed=5)) == list(range(len(POOL)))
    assert subset_fingerprint(grid[(8, 0)]) == subset_fingerprint(list(grid[(8, 0)]))
    assert subset_fingerprint(grid[(8, 0)]) != subset_fingerprint(grid[(8, 1)])
