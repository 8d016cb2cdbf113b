"""The re-ranking rules on hand-made candidate lists (pure: no index, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from visearch.serve.rerank import (
    REASON_BEYOND_K,
    REASON_DUPLICATE,
    REASON_PRIVATE,
    REASON_QUERY,
    REASON_STATUS,
    REASON_TOMBSTONED,
    Candidate,
    DuplicateRule,
    collapse_duplicates,
    duplicate_matrix,
    phash_to_int,
    rerank,
)

NO_DUPES = DuplicateRule(phash_max_distance=-1, min_cosine=2.0)


def flip_bits(hex_hash: str, bits: int) -> str:
    """The hash with its ``bits`` lowest bits inverted (a Hamming distance of ``bits``)."""
    return f"{int(hex_hash, 16) ^ ((1 << bits) - 1):016x}"


def cands(*scores: float, **overrides: object) -> list[Candidate]:
    return [Candidate(f"img-{i}", s, **overrides) for i, s in enumerate(scores)]  # type: ignore[arg-type]


def test_rerank__orders_most_similar_first_and_breaks_ties_by_image_id() -> None:
    shuffled = [Candidate("b", 0.5), Candidate("c", 0.9), Candidate("a", 0.5), Candidate("d", 0.7)]
    out = rerank(shuffled, 10, rule=NO_DUPES)
    assert [c.image_id for c in out.kept] == ["c", "d", "a", "b"]
    assert out.dropped == {}


def test_rerank__drops_private_deleted_quarantined_and_tombstoned() -> None:
    candidates = [
        Candidate("public", 0.9),
        Candidate("private", 0.95, is_private=True),
        Candidate("deleted", 0.94, status="deleted"),
        Candidate("quarantined", 0.93, status="quarantined"),
        Candidate("tombstoned", 0.92, live=False),
        Candidate("also-public", 0.5),
    ]
    out = rerank(candidates, 10, rule=NO_DUPES)
    assert [c.image_id for c in out.kept] == ["public", "also-public"]
    assert out.dropped == {REASON_PRIVATE: 1, REASON_STATUS: 2, REASON_TOMBSTONED: 1}


def test_rerank__drops_the_query_file_by_sha256_but_keeps_other_files() -> None:
    candidates = [Candidate("query-copy", 0.99, sha256="aa"), Candidate("other", 0.8, sha256="bb"),
                  Candidate("unknown-hash", 0.7, sha256=None)]
    out = rerank(candidates, 10, query_sha256="aa", rule=NO_DUPES)
    assert [c.image_id for c in out.kept] == ["other", "unknown-hash"]
    assert out.dropped == {REASON_QUERY: 1}
    assert len(rerank(candidates, 10, query_sha256=None, rule=NO_DUPES).kept) == 3


def test_rerank__near_duplicate_by_phash_keeps_the_best_ranked_copy() -> None:
    base = "f0f0f0f0aaaa5555"
    candidates = [
        Candidate("copy-lower", 0.80, phash=flip_bits(base, 3)),
        Candidate("original", 0.95, phash=base),
        Candidate("different", 0.90, phash=flip_bits(base, 20)),
        Candidate("copy-exact", 0.85, phash=base),
    ]
    out = rerank(candidates, 10, rule=DuplicateRule(phash_max_distance=4, min_cosine=2.0))
    assert [c.image_id for c in out.kept] == ["original", "different"]
    assert out.duplicate_of == {"copy-exact": "original", "copy-lower": "original"}
    assert out.dropped == {REASON_DUPLICATE: 2}


def test_rerank__phash_distance_above_threshold_is_not_a_duplicate() -> None:
    base = "0123456789abcdef"
    candidates = [Candidate("a", 0.9, phash=base), Candidate("b", 0.8, phash=flip_bits(base, 5))]
    assert len(rerank(candidates, 10, rule=DuplicateRule(phash_max_distance=4, min_cosine=2.0)).kept) == 2
    assert len(rerank(candidates, 10, rule=DuplicateRule(phash_max_distance=5, min_cosine=2.0)).kept) == 1


def test_rerank__near_duplicate_by_embedding_cosine() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 16)).astype(np.float32)
    v[1] = v[0] + 0.01 * rng.standard_normal(16).astype(np.float32)  # nearly the same direction as row 0
    candidates = [Candidate("a", 0.9, row=0), Candidate("a-dup", 0.89, row=1), Candidate("c", 0.5, row=2)]
    out = rerank(candidates, 10, vectors=v, rule=DuplicateRule(phash_max_distance=-1, min_cosine=0.99))
    assert [c.image_id for c in out.kept] == ["a", "c"]
    assert out.duplicate_of == {"a-dup": "a"}


def test_rerank__candidates_without_vector_or_hash_are_never_duplicates() -> None:
    v = np.ones((2, 4), dtype=np.float32)
    candidates = [Candidate("a", 0.9, row=0), Candidate("b", 0.8, row=-1), Candidate("c", 0.7, row=1)]
    out = rerank(candidates, 10, vectors=v, rule=DuplicateRule(phash_max_distance=64, min_cosine=0.5))
    assert [c.image_id for c in out.kept] == ["a", "b"]  # c duplicates a (same vector); b has nothing
    assert out.duplicate_of == {"c": "a"}


def test_collapse_duplicates__chain_compares_with_kept_results_only() -> None:
    # a~b (distance 3) and b~c (distance 3) but a !~ c (distance 6): b goes, c stays.
    a = "0000000000000000"
    b = "0000000000000007"
    c = "000000000000003f"
    ordered = [Candidate("a", 0.9, phash=a), Candidate("b", 0.8, phash=b), Candidate("c", 0.7, phash=c)]
    rule = DuplicateRule(phash_max_distance=4, min_cosine=2.0)
    kept, duplicate_of = collapse_duplicates(ordered, None, rule)
    assert [x.image_id for x in kept] == ["a", "c"]
    assert duplicate_of == {"b": "a"}


def test_duplicate_matrix__matches_pairwise_hamming_and_cosine() -> None:
    rng = np.random.default_rng(1)
    hashes = [f"{int(h):016x}" for h in rng.integers(0, 2**63, size=12, dtype=np.int64)]
    hashes[5] = flip_bits(hashes[2], 2)
    vectors = rng.standard_normal((12, 8)).astype(np.float32)
    candidates = [Candidate(str(i), 1.0 - i / 100, phash=h, row=i) for i, h in enumerate(hashes)]
    rule = DuplicateRule(phash_max_distance=2, min_cosine=0.9)
    got = duplicate_matrix(candidates, vectors, rule)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for i in range(12):
        for j in range(12):
            hamming = bin(int(hashes[i], 16) ^ int(hashes[j], 16)).count("1")
            expected = i != j and (hamming <= 2 or float(unit[i] @ unit[j]) >= 0.9)
            assert got[i, j] == expected, (i, j)
    assert got[2, 5] and got[5, 2]


def test_rerank__keeps_k_and_counts_the_rest() -> None:
    out = rerank(cands(0.9, 0.8, 0.7, 0.6, 0.5), 2, rule=NO_DUPES)
    assert [c.image_id for c in out.kept] == ["img-0", "img-1"]
    assert out.dropped == {REASON_BEYOND_K: 3}


def test_rerank__same_image_twice_counts_once_at_its_best_score() -> None:
    candidates = [Candidate("x", 0.4), Candidate("y", 0.6), Candidate("x", 0.9)]
    out = rerank(candidates, 10, rule=NO_DUPES)
    assert [(c.image_id, c.score) for c in out.kept] == [("x", 0.9), ("y", 0.6)]


def test_rerank__rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        rerank(cands(0.5), 0)
    with pytest.raises(ValueError, match="outside"):
        bad_row = [Candidate("a", 0.5, row=3), Candidate("b", 0.4, row=0)]
        rerank(bad_row, 5, vectors=np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="phash_max_distance"):
        DuplicateRule(phash_max_distance=65)
    with pytest.raises(ValueError, match="min_cosine"):
        DuplicateRule(min_cosine=float("nan"))


def test_phash_to_int__malformed_or_missing_hash_is_none() -> None:
    assert phash_to_int("00000000000000ff") == 255
    assert phash_to_int(None) is None
    assert phash_to_int("") is None
    assert phash_to_int("not-hex") is None
