"""Choosing, training, filling and tuning Faiss indexes, against exact search."""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np
import pytest

from tests.support.index_builds import clustered
from visearch.index.faiss_index import (
    FLAT_MAX_N,
    MAX_TRAIN_PER_CENTROID,
    MIN_TRAIN_PER_CENTROID,
    IdExcluder,
    ShardBuilder,
    choose_index,
    choose_nlist,
    effective_dim_share,
    exact_search,
    recall_at_k,
    search,
    train_index,
    tune_nprobe,
    wants_rotation,
)

MB = 1 << 20


def test_choose_index__small_collection_is_exact_flat_with_ids() -> None:
    plan = choose_index(10_000, 128, 1 << 30)
    assert plan.kind == "flat" and plan.factory == "IDMap,Flat" and not plan.is_ivf
    assert plan.estimated_bytes == 10_000 * (4 * 128 + 8)


def test_choose_index__tiers_follow_the_memory_budget() -> None:
    n, dim = 200_000, 128
    assert choose_index(n, dim, 1 << 30).kind == "ivf_flat"
    assert choose_index(n, dim, 40 * MB).kind == "ivf_sq8"
    pq = choose_index(n, dim, 6 * MB)
    assert pq.kind == "ivf_pq" and pq.factory == f"IVF{pq.nlist},PQ{pq.m}" and pq.m == 16
    big = choose_index(5_000_000, 256, 256 * MB)
    assert big.kind == "opq_ivf_hnsw_pq"
    assert big.factory == f"OPQ{big.m},IVF{big.nlist}_HNSW32,PQ{big.m}" and 256 % big.m == 0
    # 128e6 bytes for 1M vectors fit 104-byte codes; 104 does not divide 256: OPQ rotates into 312 dims.
    padded = choose_index(1_000_000, 256, 128_000_000)
    assert padded.factory == f"OPQ104_312,IVF{padded.nlist}_HNSW32,PQ104"


def _anisotropic(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors whose variance decays fast over randomly rotated directions (like CNN features)."""
    rng = np.random.default_rng(seed)
    scales = 0.7 ** np.arange(dim)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = (rng.standard_normal((n, dim)) * scales) @ basis.T + 0.05 * rng.standard_normal(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_effective_dim_share__one_when_isotropic_small_when_a_few_directions_dominate() -> None:
    rng = np.random.default_rng(0)
    assert effective_dim_share(rng.standard_normal((20_000, 32))) > 0.95
    assert effective_dim_share(_anisotropic(20_000, 32, seed=1)) < 0.2
    assert effective_dim_share(np.ones((10, 8))) == 1.0
    with pytest.raises(ValueError, match="n >= 2"):
        effective_dim_share(np.ones((1, 8)))


def test_wants_rotation__auto_follows_the_spectrum_and_the_setting_overrides() -> None:
    iso = clustered(5_000, 32, seed=4, clusters=100, spread=0.3)
    aniso = _anisotropic(5_000, 32, seed=4)
    assert not wants_rotation(iso) and wants_rotation(aniso)
    assert wants_rotation(iso, "always") and not wants_rotation(aniso, "never")
    with pytest.raises(ValueError, match="rotation mode"):
        wants_rotation(iso, "sometimes")


def test_choose_index__rotate_adds_opq_to_pq_only() -> None:
    n, dim = 200_000, 128
    assert choose_index(n, dim, 1 << 30, rotate=True).factory == choose_index(n, dim, 1 << 30).factory
    plain, rotated = choose_index(n, dim, 6 * MB), choose_index(n, dim, 6 * MB, rotate=True)
    assert rotated.kind == "opq_ivf_pq" and rotated.factory.startswith(f"OPQ{rotated.m}")
    assert rotated.factory.endswith(f"IVF{plain.nlist},PQ{rotated.m}") and rotated.train_size == plain.train_size
    assert rotated.estimated_bytes <= 6 * MB


def test_rotation__anisotropic_vectors_get_a_higher_recall_with_opq() -> None:
    n, dim = 10_200, 16  # >= 39 * 256 training points: 8-bit codes
    vectors = _anisotropic(n, dim, seed=5)
    queries, base = vectors[:200], vectors[200:]
    _, exact = exact_search(base, queries, 10)
    budget = (n - 200) * (4 + 8) + 50_000  # 4-byte codes and ids, the quantizer and codebooks
    recalls = {}
    for rotate in (False, True):
        plan = choose_index(len(base), dim, budget, rotate=rotate)
        assert plan.m == 4 and plan.factory.startswith("OPQ") == rotate
        builder = ShardBuilder(train_index(plan, base[: plan.train_size]))
        builder.add(base, np.arange(len(base), dtype=np.int64))
        _, found = search(builder.finish(), queries, 10, nprobe=16)
        recalls[rotate] = recall_at_k(found, exact, 10)
    assert wants_rotation(base[:5_000])
    assert recalls[True] > recalls[False] + 0.05, recalls  # measured 0.63 against 0.53


@pytest.mark.parametrize("n", [50_000, 100_000, 1_000_000, 10_000_000, 1_000_000_000])
def test_choose_index__nlist_power_of_two_between_4_and_16_sqrt_n(n: int) -> None:
    plan = choose_index(n, 64, 1 << 40)
    assert plan.nlist & (plan.nlist - 1) == 0
    assert 4 * math.sqrt(n) <= plan.nlist <= 16 * math.sqrt(n)
    assert MIN_TRAIN_PER_CENTROID * plan.nlist <= plan.train_size <= MAX_TRAIN_PER_CENTROID * plan.nlist
    assert plan.train_size <= n
    assert plan.estimated_bytes <= plan.memory_budget_bytes


@pytest.mark.parametrize("budget_mb", [6, 20, 100, 1000])
def test_choose_index__estimate_fits_the_budget(budget_mb: int) -> None:
    plan = choose_index(300_000, 96, budget_mb * MB)
    assert plan.estimated_bytes <= budget_mb * MB


def test_choose_index__budget_too_small_says_how_much_is_needed() -> None:
    with pytest.raises(ValueError, match="too small for 1000000 vectors of dim 64: even PQ1 needs about"):
        choose_index(1_000_000, 64, 1 * MB)
    with pytest.raises(ValueError, match="got 0"):
        choose_index(0, 64, MB)


def test_choose_nlist__few_points_caps_lists_by_training_points() -> None:
    assert choose_nlist(FLAT_MAX_N) * MIN_TRAIN_PER_CENTROID <= FLAT_MAX_N
    assert choose_nlist(100) == 2


def test_train_index__sample_too_small_for_the_lists_is_refused() -> None:
    plan = choose_index(200_000, 32, 1 << 30)
    with pytest.raises(ValueError, match="too small for"):
        train_index(plan, clustered(100, 32, seed=0))


def test_recall_at_k__hand_worked_example() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 9, 1], [7, 8, -1]])
    assert recall_at_k(found, exact, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(np.array([["a", "b"]], dtype=object), np.array([["b", ""]], dtype=object), 2) == 1.0
    with pytest.raises(ValueError, match="no query has an exact neighbour"):
        recall_at_k(np.array([[1]]), np.array([[-1]]), 1)


def test_shard_builder__rejects_bad_vectors_and_ids() -> None:
    plan = choose_index(100, 8, 1 << 30)
    builder = ShardBuilder(train_index(plan, clustered(100, 8, seed=0)))
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        builder.add(np.zeros((3, 7), np.float32), np.arange(3))
    with pytest.raises(ValueError, match="ids must be >= 0"):
        builder.add(np.zeros((2, 8), np.float32), np.array([1, -4]))
    with pytest.raises(ValueError, match="non-finite"):
        builder.add(np.full((1, 8), np.nan, np.float32), np.array([1]))


def test_search__excluded_ids_never_returned_and_k_results_remain() -> None:
    vectors = clustered(2000, 16, seed=1)
    plan = choose_index(2000, 16, 1 << 30)
    builder = ShardBuilder(train_index(plan, vectors))
    builder.add(vectors, np.arange(2000) + 10)
    index = builder.finish()
    dead = np.arange(10, 60)
    _, ids = search(index, vectors[:50], 10, exclude=IdExcluder(dead))
    assert not np.isin(ids, dead).any()
    assert (ids >= 0).all()


@pytest.fixture(scope="module")
def pq_setup() -> dict[str, Any]:
    """20k clustered vectors of dim 64 in an IVF-PQ index, plus 400 queries with exact answers."""
    n, dim = 20_000, 64
    vectors = clustered(n, dim, seed=2, clusters=200, spread=0.3)
    plan = choose_index(n, dim, 1_000_000)  # room for a 32-byte code a vector (16x smaller than float32)
    assert plan.kind == "ivf_pq" and plan.m == 32
    trained = train_index(plan, vectors[: plan.train_size])
    builder = ShardBuilder(trained)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    builder.add(vectors, ids)
    rng = np.random.default_rng(3)
    noise = 0.05 * rng.standard_normal((400, dim)).astype(np.float32)
    queries = vectors[rng.choice(n, 400, replace=False)] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, rows = exact_search(vectors, queries, 10)
    return {"index": builder.finish(), "queries": queries, "exact": ids[rows], "plan": plan}


@pytest.mark.slow
def test_tune_nprobe__ivf_pq_held_out_recall_above_the_tuned_target(pq_setup: dict[str, Any]) -> None:
    index, queries, exact = pq_setup["index"], pq_setup["queries"], pq_setup["exact"]
    target = 0.75
    tuned = tune_nprobe(index, queries[:200], exact[:200], target, latency_budget_ms=50.0)
    assert tuned.reached
    assert tuned.recall >= target
    nprobes = [p.nprobe for p in tuned.curve]
    assert nprobes == [1 << i for i in range(len(nprobes))]  # powers of two, stopped at the choice
    assert tuned.nprobe == nprobes[-1]
    assert all(p.recall < target for p in tuned.curve[:-1])  # the smallest nprobe that reaches it
    _, found = search(index, queries[200:], 10, nprobe=tuned.nprobe)
    assert recall_at_k(found, exact[200:], 10) >= target


@pytest.mark.slow
def test_tune_nprobe__unreachable_target_picks_best_within_budget(pq_setup: dict[str, Any]) -> None:
    index, queries, exact = pq_setup["index"], pq_setup["queries"], pq_setup["exact"]
    tuned = tune_nprobe(index, queries[:100], exact[:100], 1.0, latency_budget_ms=50.0, latency_queries=10)
    assert not tuned.reached
    assert tuned.recall == max(p.recall for p in tuned.curve if p.p50_ms <= 50.0)
    assert len(tuned.curve) == int(math.log2(pq_setup["plan"].nlist)) + 1


def test_tune_nprobe__flat_index_is_one_exact_point() -> None:
    vectors = clustered(500, 8, seed=4)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(8))
    index.add_with_ids(vectors, np.arange(500))
    _, exact = exact_search(vectors, vectors[:20], 10)
    tuned = tune_nprobe(index, vectors[:20], exact, 0.99, 100.0)
    assert tuned.reached and tuned.recall == 1.0 and len(tuned.curve) == 1 and tuned.nprobe == 0


def test_tune_nprobe__bad_arguments_name_the_value() -> None:
    index = faiss.IndexFlatIP(4)
    with pytest.raises(ValueError, match=r"1\.5"):
        tune_nprobe(index, np.zeros((1, 4), np.float32), np.zeros((1, 10)), 1.5, 5.0)
    with pytest.raises(ValueError, match="-1"):
        tune_nprobe(index, np.zeros((1, 4), np.float32), np.zeros((1, 10)), 0.9, -1.0)


def test_hnsw_quantizer__ef_search_is_swept() -> None:
    vectors = clustered(8000, 16, seed=5)
    from visearch.index.faiss_index import IndexPlan, ivf_info

    plan = IndexPlan(kind="opq_ivf_hnsw_pq", factory="OPQ8,IVF64_HNSW32,PQ8", n=8000, dim=16, nlist=64,
                     m=8, nbits=8, train_size=8000, default_nprobe=8, estimated_bytes=0,
                     memory_budget_bytes=1 << 30)
    builder = ShardBuilder(train_index(plan, vectors))
    builder.add(vectors, np.arange(8000))
    index = builder.finish()
    assert ivf_info(index).hnsw_quantizer
    _, exact = exact_search(vectors, vectors[:50], 10)
    tuned = tune_nprobe(index, vectors[:50], exact, 0.99, 100.0, latency_queries=5)
    assert {p.ef_search for p in tuned.curve} >= {16, 32}
    assert all(p.ef_search >= p.nprobe for p in tuned.curve)


@pytest.mark.gpu
@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a CUDA GPU")
def test_train_index__on_gpu_gives_a_working_cpu_index() -> None:
    vectors = clustered(60_000, 32, seed=6)
    plan = choose_index(60_000, 32, 1 << 30)
    trained = train_index(plan, vectors[: plan.train_size])
    assert not faiss.downcast_index(trained).__class__.__name__.startswith("Gpu")
    builder = ShardBuilder(trained, use_gpu=True)
    builder.add(vectors, np.arange(60_000))
    _, exact = exact_search(vectors, vectors[:100], 10)
    _, found = search(builder.finish(), vectors[:100], 10, nprobe=plan.nlist)
    assert recall_at_k(found, exact, 10) > 0.99
