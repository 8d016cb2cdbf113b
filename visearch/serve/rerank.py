"""Re-ranking rules of the serving tier: pure functions over candidate lists (no Faiss, no I/O).

:func:`rerank` applies, in this order, to the candidates a sharded search returned:

1. drop what must never be shown: private images, images whose status is not ``ok`` (deleted,
   quarantined) and images that have no live row in the build (tombstoned);
2. drop the query itself: a candidate whose file has the query's sha256;
3. order most-similar first (score descending, ties by image id, so the order is deterministic);
4. collapse near-duplicates: walking down the list, a candidate is dropped when it is a
   near-duplicate of a candidate already kept (perceptual-hash Hamming distance <= a threshold,
   or embedding cosine >= a threshold), so the best-ranked copy stays;
5. keep the first ``k``.

Every dropped candidate is counted under its reason, so callers can see what the rules did.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

OK_STATUS = "ok"
REASON_PRIVATE = "private"
REASON_STATUS = "status"
REASON_TOMBSTONED = "tombstoned"
REASON_QUERY = "query"
REASON_DUPLICATE = "near_duplicate"
REASON_BEYOND_K = "beyond_k"
REASONS = (REASON_PRIVATE, REASON_STATUS, REASON_TOMBSTONED, REASON_QUERY, REASON_DUPLICATE, REASON_BEYOND_K)


@dataclass(frozen=True)
class Candidate:
    """One search hit with what the re-ranking rules look at.

    Attributes:
        image_id: the image.
        score: similarity to the query (inner product of unit vectors = cosine; higher is closer).
        uri: where the image file lives ("" when unknown).
        sha256: hex sha256 of the image file (None when unknown: never matches the query).
        phash: 64-bit perceptual hash as 16 hex characters (None when unknown).
        is_private: the owner made it private.
        status: ``ok``, or e.g. ``deleted`` / ``quarantined``.
        live: False when the build holds no live row for the image (a tombstoned entry).
        row: position of the candidate's vector in the ``vectors`` passed to :func:`rerank`
            (-1 when the vector is unknown: only the perceptual hash can find its duplicates).
    """

    image_id: str
    score: float
    uri: str = ""
    sha256: str | None = None
    phash: str | None = None
    is_private: bool = False
    status: str = OK_STATUS
    live: bool = True
    row: int = -1


@dataclass(frozen=True)
class DuplicateRule:
    """When two results count as near-duplicates.

    Attributes:
        phash_max_distance: Hamming distance (of 64 bits) at or below which two perceptual
            hashes are the same picture; a negative value switches the hash rule off.
        min_cosine: embedding cosine at or above which two results are the same picture;
            a value above 1 switches the embedding rule off. It must sit above what the model
            gives *distinct* pictures of one object: on the demo (a ResNet-18 trained on it),
            re-encoded copies score >= 0.99999 and different variants of one item up to 0.9999,
            hence 0.99995. pHash catches re-encodes and resizes; this rule catches the copies it
            misses that the model still maps onto the same vector.
    """

    phash_max_distance: int = 4
    min_cosine: float = 0.99995

    def __post_init__(self) -> None:
        if self.phash_max_distance > 64:
            raise ValueError(f"phash_max_distance must be <= 64 (bits), got {self.phash_max_distance}")
        if not self.min_cosine >= -1.0:  # also rejects NaN
            raise ValueError(f"min_cosine must be >= -1, got {self.min_cosine}")


@dataclass(frozen=True)
class Reranked:
    """The kept candidates (best first) and how many were dropped for each reason."""

    kept: tuple[Candidate, ...]
    dropped: dict[str, int] = field(default_factory=dict)
    duplicate_of: dict[str, str] = field(default_factory=dict)


def phash_to_int(value: str | None) -> int | None:
    """A 16-hex-character perceptual hash as an int (None for a missing or malformed hash)."""
    if not value:
        return None
    try:
        return int(value, 16)
    except ValueError:
        log.warning("ignoring malformed perceptual hash %r", value)
        return None


def visible(candidates: Sequence[Candidate]) -> tuple[list[Candidate], Counter[str]]:
    """Candidates that may be shown: public, status ``ok``, live in the build."""
    kept: list[Candidate] = []
    dropped: Counter[str] = Counter()
    for c in candidates:
        if not c.live:
            dropped[REASON_TOMBSTONED] += 1
        elif c.is_private:
            dropped[REASON_PRIVATE] += 1
        elif c.status != OK_STATUS:
            dropped[REASON_STATUS] += 1
        else:
            kept.append(c)
    return kept, dropped


def without_query(candidates: Sequence[Candidate], query_sha256: str | None) -> tuple[list[Candidate], int]:
    """Candidates whose file is not the query's file (same sha256); and how many were dropped."""
    if not query_sha256:
        return list(candidates), 0
    kept = [c for c in candidates if c.sha256 != query_sha256]
    return kept, len(candidates) - len(kept)


def by_similarity(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Most similar first; ties broken by image id so the order never depends on shard order."""
    return sorted(candidates, key=lambda c: (-c.score, c.image_id))


def duplicate_matrix(
    candidates: Sequence[Candidate], vectors: np.ndarray | None, rule: DuplicateRule
) -> np.ndarray:
    """(n, n) booleans: whether candidates i and j are near-duplicates under ``rule``.

    Raises:
        ValueError: when ``vectors`` is not 2-D or a candidate's ``row`` is outside it.
    """
    n = len(candidates)
    dup = np.zeros((n, n), dtype=bool)
    if n == 0:
        return dup
    if rule.phash_max_distance >= 0:
        hashes = [phash_to_int(c.phash) for c in candidates]
        has = np.array([h is not None for h in hashes])  # (n,)
        if has.sum() > 1:
            values = np.array([h if h is not None else 0 for h in hashes], dtype=np.uint64)  # (n,)
            distance = np.bitwise_count(values[:, None] ^ values[None, :])  # (n, 1) ^ (1, n) -> (n, n)
            dup |= (distance <= rule.phash_max_distance) & has[:, None] & has[None, :]
    if vectors is not None and rule.min_cosine <= 1.0:
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D (rows, dim), got shape {vectors.shape}")
        rows = np.array([c.row for c in candidates], dtype=np.int64)  # (n,)
        if rows.size and int(rows.max()) >= vectors.shape[0]:
            raise ValueError(f"candidate row {int(rows.max())} outside {vectors.shape[0]} vectors")
        known = rows >= 0  # (n,)
        if known.sum() > 1:
            v = vectors[np.where(known, rows, 0)].astype(np.float32)  # (n, d)
            norms = np.linalg.norm(v, axis=1, keepdims=True)  # (n, 1)
            v = v / np.maximum(norms, 1e-12)
            cosine = v @ v.T  # (n, d) @ (d, n) -> (n, n)
            dup |= (cosine >= rule.min_cosine) & known[:, None] & known[None, :]
    np.fill_diagonal(dup, False)
    return dup


def collapse_duplicates(
    candidates: Sequence[Candidate],
    vectors: np.ndarray | None,
    rule: DuplicateRule,
    limit: int | None = None,
) -> tuple[list[Candidate], dict[str, str]]:
    """Walk the list in order; drop a candidate that duplicates one already kept.

    Returns the kept candidates (in the input order) and ``{dropped image_id: kept image_id}``.
    Comparing against *kept* candidates only means a chain a~b~c with a !~ c keeps a and c.
    With ``limit``, the walk stops once that many are kept (the rest is neither kept nor dropped).
    """
    dup = duplicate_matrix(candidates, vectors, rule)  # (n, n)
    is_kept = np.zeros(len(candidates), dtype=bool)  # (n,)
    kept: list[Candidate] = []
    duplicate_of: dict[str, str] = {}
    for i, c in enumerate(candidates):
        if limit is not None and len(kept) >= limit:
            break
        hits = dup[i] & is_kept  # (n,)
        if hits.any():
            duplicate_of[c.image_id] = candidates[int(np.argmax(hits))].image_id  # best-ranked kept copy
        else:
            is_kept[i] = True
            kept.append(c)
    return kept, duplicate_of


def rerank(
    candidates: Sequence[Candidate],
    k: int,
    *,
    query_sha256: str | None = None,
    vectors: np.ndarray | None = None,
    rule: DuplicateRule | None = None,
) -> Reranked:
    """Apply the serving rules (module docstring) and keep the best ``k``.

    Args:
        candidates: hits of one query, any order (duplicates of one image_id keep the best one).
        k: how many results to return at most.
        query_sha256: sha256 of the query file (None: nothing is dropped as "the query").
        vectors: (rows, dim) embeddings the candidates' ``row`` fields point into, for the
            cosine rule (None: perceptual hashes only).
        rule: near-duplicate thresholds (default :class:`DuplicateRule`).

    Raises:
        ValueError: for ``k`` < 1 or inconsistent ``vectors``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rule = rule or DuplicateRule()
    best: dict[str, Candidate] = {}
    for c in candidates:  # an image found twice (e.g. by two shards) counts once, at its best score
        if c.image_id not in best or c.score > best[c.image_id].score:
            best[c.image_id] = c
    shown, dropped = visible(list(best.values()))
    shown, n_query = without_query(shown, query_sha256)
    if n_query:
        dropped[REASON_QUERY] += n_query
    ordered = by_similarity(shown)
    unique, duplicate_of = collapse_duplicates(ordered, vectors, rule, limit=k)
    if duplicate_of:
        dropped[REASON_DUPLICATE] += len(duplicate_of)
    beyond = len(ordered) - len(unique) - len(duplicate_of)
    if beyond:
        dropped[REASON_BEYOND_K] += beyond
    return Reranked(kept=tuple(unique), dropped=dict(dropped), duplicate_of=duplicate_of)
