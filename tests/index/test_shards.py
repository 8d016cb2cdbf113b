"""Pure shard and id arithmetic: ranges, stable assignment, collision probing, top-k merge."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from visearch.index.shards import (
    ID_BITS,
    IdCollisionError,
    assign_ids,
    batch_ranges,
    check_unique,
    drop_ids,
    faiss_id,
    faiss_ids,
    merge_topk,
    resolve_collisions,
    shard_of,
    shard_ranges,
)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7, 16])
def test_shard_ranges__every_size_2_to_499_is_covered_exactly_and_balanced(num_shards: int) -> None:
    for n in range(2, 500):
        ranges = shard_ranges(n, num_shards)
        assert len(ranges) == num_shards
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        sizes = [end - start for start, end in ranges]
        assert max(sizes) - min(sizes) <= 1
        assert sum(sizes) == n


def test_batch_ranges__every_size_2_to_499_in_order_without_gaps() -> None:
    for n in range(2, 500):
        for batch in (1, 7, 64, 500):
            ranges = batch_ranges(n, batch)
            covered = [i for start, end in ranges for i in range(start, end)]
            assert covered == list(range(n))
            assert all(end - start <= batch for start, end in ranges)
            assert all(end - start == batch for start, end in ranges[:-1])


def test_ranges__bad_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="-1"):
        shard_ranges(-1, 2)
    with pytest.raises(ValueError, match="num_shards must be >= 1, got 0"):
        shard_ranges(5, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        batch_ranges(5, 0)


def test_faiss_id__deterministic_63_bit_and_salt_changes_it() -> None:
    assert faiss_id("img-1") == faiss_id("img-1")
    assert 0 <= faiss_id("img-1") < 2**ID_BITS
    assert faiss_id("img-1", 1) != faiss_id("img-1")
    assert faiss_id("img-1") != faiss_id("img-2")
    # A known value pins the hash so that a change of function is noticed (ids live in built indexes).
    assert faiss_id("img-1") == 6234173719379615863
    assert shard_of("img-1", 1000) == 719
    assert faiss_id("img-1") == int(faiss_ids(["img-1"])[0])


def test_faiss_ids__no_collisions_among_100k_ids() -> None:
    ids = faiss_ids(f"image-{i}" for i in range(100_000))
    check_unique(ids)
    assert ids.dtype == np.int64 and ids.min() >= 0


def test_shard_of__stable_roughly_uniform_and_independent_of_count_order() -> None:
    names = [f"image-{i}" for i in range(20_000)]
    shards = [shard_of(n, 8) for n in names]
    assert shards == [shard_of(n, 8) for n in names]
    counts = np.bincount(shards, minlength=8)
    assert counts.min() > 0.9 * 2500 and counts.max() < 1.1 * 2500


def tiny_hash(image_id: str, salt: int) -> int:
    """A 3-bit hash so that collisions are certain."""
    return faiss_id(image_id, salt) % 8


def test_assign_ids__collisions_resolved_uniquely_and_independent_of_input_order() -> None:
    names = [f"x{i}" for i in range(6)]
    first = assign_ids(names, hasher=tiny_hash, max_salt=200)
    second = assign_ids(list(reversed(names)), hasher=tiny_hash, max_salt=200)
    assert first == second
    assert len(set(first.values())) == len(names)
    # Images whose salt-0 id was free keep it.
    plain = {n: tiny_hash(n, 0) for n in names}
    counts = np.bincount(list(plain.values()), minlength=8)
    for name, fid in plain.items():
        if counts[fid] == 1:
            assert first[name] == fid


def test_assign_ids__avoids_occupied_ids_of_the_parent_build() -> None:
    names = [f"y{i}" for i in range(4)]
    occupied = {tiny_hash(n, 0) for n in names[:2]}
    ids = assign_ids(names, occupied, hasher=tiny_hash, max_salt=200)
    assert not set(ids.values()) & occupied


def test_resolve_collisions__runs_out_of_salts_loudly() -> None:
    with pytest.raises(IdCollisionError, match="no free id"):
        resolve_collisions({"a": tiny_hash("a", 0)}, set(range(8)), hasher=tiny_hash, max_salt=5)


def test_check_unique__names_the_duplicate() -> None:
    with pytest.raises(IdCollisionError, match=r"duplicate faiss ids, e\.g\. 5"):
        check_unique(np.array([1, 5, 3, 5]))
    with pytest.raises(ValueError, match="negative"):
        check_unique(np.array([1, -1]))


def test_merge_topk__equals_a_global_sort_with_id_tie_break() -> None:
    rng = np.random.default_rng(0)
    nq, k = 5, 4
    scores = [np.round(rng.random((nq, k)), 1).astype(np.float32) for _ in range(3)]  # rounding -> ties
    ids = [rng.choice(1000, size=(nq, k), replace=False) + 1000 * s for s in range(3)]
    merged_s, merged_i = merge_topk(scores, ids, k)
    for q in range(nq):
        pairs = sorted(zip(np.concatenate([s[q] for s in scores]), np.concatenate([i[q] for i in ids]),
                           strict=True), key=lambda p: (-p[0], p[1]))[:k]
        assert merged_i[q].tolist() == [p[1] for p in pairs]
        assert np.allclose(merged_s[q], [p[0] for p in pairs])


def test_merge_topk__empty_slots_never_win_and_pad_to_k() -> None:
    scores = [np.array([[0.5, 0.0]], np.float32), np.array([[0.9, -1e9]], np.float32)]
    ids = [np.array([[7, -1]]), np.array([[3, -1]])]
    merged_s, merged_i = merge_topk(scores, ids, 5)
    assert merged_i.tolist() == [[3, 7, -1, -1, -1]]
    assert merged_s[0, 0] == pytest.approx(0.9) and np.isneginf(merged_s[0, 2:]).all()


def test_merge_topk__shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        merge_topk([np.zeros((2, 3))], [np.zeros((2, 4), np.int64)], 3)


def test_drop_ids__tombstones_removed_order_kept_padded() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    ids = np.array([[4, 9, 2, 7]])
    kept_s, kept_i = drop_ids(scores, ids, np.array([9, 7]))
    assert kept_i.tolist() == [[4, 2, -1, -1]]
    assert kept_s[0, :2].tolist() == pytest.approx([0.9, 0.7])
