"""Pure shard and id arithmetic for the sharded index (no Faiss, no Spark).

- Faiss ids are 63-bit hashes of the ``image_id`` (so an image keeps its id from one build to the
  next, and incremental builds need no global counter); the rare collisions are resolved
  deterministically by probing salted hashes (:func:`resolve_collisions`).
- An image's shard is a second, independent hash of its ``image_id`` modulo the shard count.
- Range arithmetic (:func:`shard_ranges`, :func:`batch_ranges`) splits N items into balanced
  contiguous pieces, e.g. the batches a shard task adds to Faiss.
- :func:`merge_topk` merges per-shard top-k lists by score (descending), ties broken by id.
- :func:`drop_ids` filters tombstoned ids out of result lists.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

ID_BITS = 63
MAX_SALT = 64
_ID_MASK = (1 << ID_BITS) - 1
_ID_PERSON = b"visearch-id"
_SHARD_PERSON = b"visearch-shard"

Hasher = Callable[[str, int], int]


class IdCollisionError(ValueError):
    """Raised when ids cannot be made unique (more collisions than salts to probe)."""


def faiss_id(image_id: str, salt: int = 0) -> int:
    """The 63-bit non-negative Faiss id of ``image_id`` (``salt`` > 0 only to resolve collisions).

    Raises:
        ValueError: for an empty ``image_id`` or a negative salt.
    """
    if not image_id:
        raise ValueError(f"image_id must be a non-empty string, got {image_id!r}")
    if salt < 0:
        raise ValueError(f"salt must be >= 0, got {salt}")
    data = image_id.encode("utf-8") if salt == 0 else f"{salt}\x00{image_id}".encode()
    digest = hashlib.blake2b(data, digest_size=8, person=_ID_PERSON).digest()
    return int.from_bytes(digest, "big") & _ID_MASK


def faiss_ids(image_ids: Iterable[str]) -> np.ndarray:
    """Salt-0 ids of many image ids, as an int64 array (the vectorised form used by Spark)."""
    return np.fromiter((faiss_id(i) for i in image_ids), dtype=np.int64)


def shard_of(image_id: str, num_shards: int) -> int:
    """The shard an image belongs to: an independent hash of its id modulo ``num_shards``.

    Stable across builds and independent of the Faiss id (so probing never moves an image).

    Raises:
        ValueError: when ``num_shards`` < 1.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8, person=_SHARD_PERSON).digest()
    return int.from_bytes(digest, "big") % num_shards


def shards_of(image_ids: Iterable[str], num_shards: int) -> np.ndarray:
    """:func:`shard_of` for many ids, as an int32 array."""
    return np.fromiter((shard_of(i, num_shards) for i in image_ids), dtype=np.int32)


def shard_ranges(n: int, num_shards: int) -> list[tuple[int, int]]:
    """Split ``n`` items into ``num_shards`` contiguous half-open ranges whose sizes differ by <= 1.

    The first ``n % num_shards`` ranges get one extra item; with more shards than items the
    trailing ranges are empty. Ranges cover ``[0, n)`` exactly, in order.

    Raises:
        ValueError: for a negative ``n`` or ``num_shards`` < 1.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    base, extra = divmod(n, num_shards)
    ranges: list[tuple[int, int]] = []
    start = 0
    for shard in range(num_shards):
        size = base + (1 if shard < extra else 0)
        ranges.append((start, start + size))
        start += size
    return ranges


def batch_ranges(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` ranges of at most ``batch_size`` items covering ``[0, n)``.

    Raises:
        ValueError: for a negative ``n`` or ``batch_size`` < 1.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def collision_groups(ids: Mapping[str, int]) -> dict[int, list[str]]:
    """Ids shared by more than one image id, each with its image ids sorted."""
    by_id: dict[int, list[str]] = {}
    for image_id, fid in ids.items():
        by_id.setdefault(fid, []).append(image_id)
    return {fid: sorted(members) for fid, members in by_id.items() if len(members) > 1}


def probe_candidates(image_id: str, max_salt: int = MAX_SALT, hasher: Hasher = faiss_id) -> list[int]:
    """The ids an image may take, in probing order (salt 0, 1, ...)."""
    return [hasher(image_id, salt) for salt in range(max_salt + 1)]


def resolve_collisions(
    candidates: Mapping[str, int],
    occupied: Iterable[int],
    *,
    max_salt: int = MAX_SALT,
    hasher: Hasher = faiss_id,
) -> dict[str, int]:
    """Give every image in ``candidates`` (image_id -> salt-0 id) a unique id not in ``occupied``.

    ``occupied`` holds ids already in use by images outside ``candidates`` (the parent build's
    live ids, the other new images). Images are processed in sorted ``image_id`` order; each takes
    the first of its salted ids (salt 0, 1, ...) that is neither occupied nor taken by an earlier
    image, so the result depends only on the inputs, never on their order.

    Raises:
        IdCollisionError: when an image exhausts ``max_salt`` probes.
    """
    taken = set(occupied)
    resolved: dict[str, int] = {}
    for image_id in sorted(candidates):
        first = candidates[image_id]
        if first != hasher(image_id, 0):
            raise ValueError(f"candidate id {first} of {image_id!r} is not its salt-0 id")
        for salt in range(max_salt + 1):
            fid = first if salt == 0 else hasher(image_id, salt)
            if fid not in taken:
                resolved[image_id] = fid
                taken.add(fid)
                break
        else:
            raise IdCollisionError(f"no free id for {image_id!r} after {max_salt} probes")
    return resolved


def assign_ids(
    image_ids: Sequence[str],
    occupied: Iterable[int] = (),
    *,
    max_salt: int = MAX_SALT,
    hasher: Hasher = faiss_id,
) -> dict[str, int]:
    """Unique, deterministic ids for ``image_ids`` avoiding ``occupied`` (single-process form).

    Equivalent to what the build job does with Spark: salt-0 ids for all, then
    :func:`resolve_collisions` for the images whose salt-0 id collides.

    Raises:
        ValueError: for duplicate image ids.
        IdCollisionError: when probing runs out of salts.
    """
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("image_ids contains duplicates")
    first = {i: hasher(i, 0) for i in image_ids}
    outside = set(occupied)
    groups = collision_groups(first)
    conflicting = {i for members in groups.values() for i in members}
    conflicting |= {i for i, fid in first.items() if fid in outside}
    ids = {i: fid for i, fid in first.items() if i not in conflicting}
    if conflicting:
        log.info("resolving %d colliding ids", len(conflicting))
        busy = outside | set(ids.values())
        ids.update(resolve_collisions({i: first[i] for i in conflicting}, busy, max_salt=max_salt,
                                      hasher=hasher))
    return ids


def check_unique(ids: np.ndarray) -> None:
    """Check that a Faiss id array has no duplicates and no negative ids.

    Raises:
        IdCollisionError: naming a duplicated id.
        ValueError: for a negative id (Faiss uses -1 for "no result").
    """
    if ids.size == 0:
        return
    if int(ids.min()) < 0:
        raise ValueError(f"negative faiss id {int(ids.min())}")
    ordered = np.sort(ids)
    dup = ordered[1:][ordered[1:] == ordered[:-1]]
    if dup.size:
        raise IdCollisionError(f"duplicate faiss ids, e.g. {int(dup[0])} ({dup.size} duplicates)")


def merge_topk(
    scores: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k results into one top-k, most similar first, ties broken by smaller id.

    ``scores[s]`` and ``ids[s]`` are shard ``s``'s (nq, k_s) results (similarities, higher is
    better); id -1 marks an empty slot and never wins. Returns (nq, k) arrays padded with -inf / -1.

    Raises:
        ValueError: for mismatched shapes or ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(scores) != len(ids) or not scores:
        raise ValueError(f"need the same non-zero number of score and id arrays, got {len(scores)}, "
                         f"{len(ids)}")
    nq = scores[0].shape[0]
    for s, i in zip(scores, ids, strict=True):
        if s.shape != i.shape or s.ndim != 2 or s.shape[0] != nq:
            raise ValueError(f"shard result shapes differ: {s.shape} vs {i.shape} (nq={nq})")
    all_scores = np.concatenate([s.astype(np.float32) for s in scores], axis=1)  # (nq, sum k_s)
    all_ids = np.concatenate([i.astype(np.int64) for i in ids], axis=1)  # (nq, sum k_s)
    all_scores = np.where(all_ids < 0, -np.inf, all_scores)
    # lexsort: last key is primary -> score descending, then id ascending; empty slots last.
    order = np.lexsort((all_ids, all_ids < 0, -all_scores), axis=1)  # (nq, sum k_s)
    top = order[:, :k]
    out_scores = np.take_along_axis(all_scores, top, axis=1)
    out_ids = np.take_along_axis(all_ids, top, axis=1)
    out_ids = np.where(np.isneginf(out_scores), -1, out_ids)
    if out_ids.shape[1] < k:  # fewer candidates than k in total
        pad = k - out_ids.shape[1]
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
    return out_scores, out_ids


def drop_ids(
    scores: np.ndarray, ids: np.ndarray, dropped: np.ndarray, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Remove ``dropped`` ids (e.g. tombstones) from (nq, m) results, keeping order; pad to ``k``.

    Rows are compacted so that surviving results keep their rank order; the tail is padded with
    -inf / -1. ``k`` defaults to the input width.
    """
    width = ids.shape[1] if k is None else k
    keep = (~np.isin(ids, dropped)) & (ids >= 0)  # (nq, m)
    # Stable sort of "not kept" flags moves kept entries to the front in their original order.
    order = np.argsort(~keep, axis=1, kind="stable")
    kept_ids = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(ids, order, axis=1), -1)
    kept_scores = np.where(kept_ids >= 0, np.take_along_axis(scores, order, axis=1), -np.inf)
    if kept_ids.shape[1] >= width:
        return kept_scores[:, :width].astype(np.float32), kept_ids[:, :width].astype(np.int64)
    pad = width - kept_ids.shape[1]
    return (
        np.pad(kept_scores, ((0, 0), (0, pad)), constant_values=-np.inf).astype(np.float32),
        np.pad(kept_ids, ((0, 0), (0, pad)), constant_values=-1).astype(np.int64),
    )
