"""Offline ranking metrics: MRR, P@k, R@k, AP/mAP, DCG and nDCG with graded relevance 0–5.

Pure numpy, no Spark. A query is evaluated from two things:

- ``ranking``: the candidate ids the system returned, most similar first (build it from scores
  with :func:`rank_by_scores`);
- ``judgments``: ``{candidate_id: relevance}`` for that query, graded 0–5 in this project. An id
  that is ranked but not judged has relevance 0 (the retrieval protocol: unjudged = not relevant).

Conventions (the same for every metric, so metrics of one model are comparable with each other
and across models):

- **Positions** are 1-based: the item at position ``i`` has discount ``1 / log2(i + 1)``.
- **Gain** of graded relevance: ``"linear"`` ``rel`` (the seed's ``DCG = Σ rel_i / log2(i+1)``,
  also scikit-learn's ``dcg_score``) or ``"exponential"`` ``2**rel - 1``.
- **Binary relevance** for P@k, R@k, AP and MRR: an item is relevant when
  ``rel >= threshold``; ``threshold`` defaults to 1 (any positive grade counts). It must be > 0,
  otherwise every unjudged id would be relevant. The pipeline and ``visearch bench quality`` use
  the default, so a grade-1 ("same group") item is relevant there.
- **AP@k** divides the sum of ``P@i`` at the relevant positions ``i <= k`` by ``min(k, R)``
  (``R`` = relevant judged ids), not by ``R`` as trec_eval's ``map_cut_k`` does: a ranking whose
  first ``k`` are all relevant scores 1.0 even when ``R > k``. For ``R <= k`` the two agree.
- **Cut-off** ``k``: only the first ``k`` positions count. ``k=None`` means the whole ranking.
  When the ranking is shorter than ``k``, the missing positions count as non-relevant:
  ``precision@k`` still divides by ``k`` (as trec_eval does), so returning fewer results is
  never rewarded.
- **Ideal DCG** (the nDCG denominator) comes from *all* judged relevances of the query, sorted
  descending and cut at ``k``, not only from the ranked ids: a relevant item the system failed to
  retrieve lowers nDCG.
- **No relevant item** (no judged grade ``>= threshold``; for nDCG, no positive gain): every
  metric of that query is 0.0, and the query is *counted* in the means of
  :func:`evaluate_rankings`. Recall is therefore 0.0, not undefined. A query without relevant
  items lowers every model's score by the same amount, so comparisons stay fair, and the means
  of all metrics are over the same set of queries.
- **Duplicate ids** in a ranking raise ``ValueError``: a duplicate would be counted twice by
  DCG and precision, and always means a bug upstream (e.g. shards merged without de-duplication).
- **Ties in scores**: :func:`rank_by_scores` breaks them deterministically by ascending id.
  :func:`dcg_tie_averaged` and :func:`ndcg_tie_averaged` instead average the gain over every
  ordering of tied items (McSherry & Najork, 2008), like scikit-learn's ``ndcg_score`` with
  ``ignore_ties=False``.

Aggregation: :func:`evaluate_rankings` returns the mean over queries of every metric, keyed by
``(metric, k)`` with ``k=None`` for "no cut-off"; :func:`metric_name` flattens a key to a string
such as ``"ndcg@10"``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Id = TypeVar("Id", str, int)
Q = TypeVar("Q", bound=Hashable)
Gain = Literal["linear", "exponential"]
MetricKey = tuple[str, int | None]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
DEFAULT_THRESHOLD = 1.0
MAX_RELEVANCE = 5
#: Metrics computed by :func:`evaluate_rankings` (at every k and with no cut-off).
METRICS: tuple[str, ...] = ("mrr", "precision", "recall", "map", "ndcg")


# ---------------------------------------------------------------------------------------------
# validation and small helpers


def _check_k(k: int | None) -> None:
    """Raises ValueError for a cut-off that is not a positive integer (``None`` is allowed)."""
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer or None, got {k!r}")


def _check_threshold(threshold: float) -> None:
    """Raises ValueError for a binary-relevance threshold that is not finite and > 0."""
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be finite and > 0, got {threshold!r}")


def _check_ranking(ranking: Sequence[Id]) -> None:
    """Raises ValueError when an id occurs more than once in the ranking."""
    if len(set(ranking)) != len(ranking):
        dupes = sorted(i for i, n in Counter(ranking).items() if n > 1)
        raise ValueError(f"duplicate ids in ranking: {dupes[:10]}")


def _check_judgments(judgments: Mapping[Id, float]) -> None:
    """Raises ValueError for a relevance grade that is negative, NaN or infinite."""
    for item, rel in judgments.items():
        if not math.isfinite(rel) or rel < 0:
            raise ValueError(f"relevance of {item!r} must be finite and >= 0, got {rel!r}")


def _gain(relevance: npt.NDArray[np.float64], gain: Gain) -> npt.NDArray[np.float64]:
    """The gain of each graded relevance.

    Raises:
        ValueError: for an unknown gain name.
    """
    if gain == "linear":
        return relevance
    if gain == "exponential":
        return np.exp2(relevance) - 1.0
    raise ValueError(f"gain must be 'linear' or 'exponential', got {gain!r}")


def _discounts(n: int) -> npt.NDArray[np.float64]:
    """``1 / log2(i + 1)`` for positions ``i = 1..n``."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _top_relevances(ranking: Sequence[Id], judgments: Mapping[Id, float], k: int | None) -> (
    npt.NDArray[np.float64]
):
    """Relevance of each of the first ``k`` ranked ids (unjudged = 0), after validating inputs."""
    _check_k(k)
    _check_ranking(ranking)
    _check_judgments(judgments)
    top = ranking if k is None else ranking[:k]
    return np.array([float(judgments.get(item, 0.0)) for item in top], dtype=np.float64)


def _num_relevant(judgments: Mapping[Id, float], threshold: float) -> int:
    """How many judged ids are relevant (``rel >= threshold``)."""
    return sum(1 for rel in judgments.values() if rel >= threshold)


def rank_by_scores(ids: Sequence[Id], scores: Sequence[float] | npt.ArrayLike) -> list[Id]:
    """Order ids by descending score; ties broken by ascending id, so the order is deterministic.

    Raises:
        ValueError: when ids and scores differ in length, a score is NaN, or an id repeats.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {values.shape[0]} scores")
    if np.isnan(values).any():
        raise ValueError(f"scores contain NaN at positions {np.flatnonzero(np.isnan(values))[:10].tolist()}")
    _check_ranking(ids)
    order = sorted(range(len(ids)), key=lambda j: (-values[j], ids[j]))
    return [ids[j] for j in order]


# ---------------------------------------------------------------------------------------------
# per-query metrics


def reciprocal_rank(
    ranking: Sequence[Id],
    judgments: Mapping[Id, float],
    *,
    k: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> float:
    """``1 / position`` of the first relevant id within the first ``k``; 0.0 when there is none.

    Raises:
        ValueError: for a bad ``k`` or ``threshold``, duplicate ids, or a bad relevance grade.
    """
    _check_threshold(threshold)
    rel = _top_relevances(ranking, judgments, k)
    hits = np.flatnonzero(rel >= threshold)
    return 0.0 if hits.size == 0 else 1.0 / float(hits[0] + 1)


def precision_at_k(
    ranking: Sequence[Id], judgments: Mapping[Id, float], k: int, *, threshold: float = DEFAULT_THRESHOLD
) -> float:
    """Relevant ids among the first ``k``, divided by ``k`` (even when fewer than ``k`` are ranked).

    Raises:
        ValueError: for a bad ``k`` or ``threshold``, duplicate ids, or a bad relevance grade.
    """
    _check_threshold(threshold)
    if k is None:
        raise ValueError("precision_at_k needs an integer k, got None")
    rel = _top_relevances(ranking, judgments, k)
    return float(np.count_nonzero(rel >= threshold)) / float(k)


def recall_at_k(
    ranking: Sequence[Id],
    judgments: Mapping[Id, float],
    k: int | None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> float:
    """Relevant ids among the first ``k`` divided by all relevant judged ids; 0.0 when there are none.

    Raises:
        ValueError: for a bad ``k`` or ``threshold``, duplicate ids, or a bad relevance grade.
    """
    _check_threshold(threshold)
    rel = _top_relevances(ranking, judgments, k)
    total = _num_relevant(judgments, threshold)
    if total == 0:
        return 0.0
    return float(np.count_nonzero(rel >= threshold)) / float(total)


def average_precision(
    ranking: Sequence[Id],
    judgments: Mapping[Id, float],
    *,
    k: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> float:
    """Average precision, optionally cut at ``k``.

    ``AP@k = Σ_{i <= k, item i relevant} P@i / min(k, R)`` with ``R`` the number of relevant judged
    ids (``R`` alone when ``k`` is None). Dividing by ``min(k, R)`` makes a perfect top-k score 1.0
    even when more than ``k`` ids are relevant; trec_eval's ``map_cut_k`` divides by ``R`` instead
    and so scores lower whenever ``R > k`` (the two agree for ``R <= k``). Relevant ids never
    retrieved add 0. No relevant id gives 0.0. With every id ranked and ``k=None`` this equals scikit-learn's
    ``average_precision_score`` on the ranking (when scores have no ties).

    Raises:
        ValueError: for a bad ``k`` or ``threshold``, duplicate ids, or a bad relevance grade.
    """
    _check_threshold(threshold)
    rel = _top_relevances(ranking, judgments, k)
    total = _num_relevant(judgments, threshold)
    if total == 0:
        return 0.0
    hit = (rel >= threshold).astype(np.float64)
    precision_at_i = np.cumsum(hit) / np.arange(1, hit.size + 1)  # (n,) P@i for i = 1..n
    denominator = total if k is None else min(k, total)
    return float((precision_at_i * hit).sum()) / float(denominator)


def dcg(
    ranking: Sequence[Id], judgments: Mapping[Id, float], *, k: int | None = None, gain: Gain = "linear"
) -> float:
    """Discounted cumulative gain of the first ``k`` ranked ids: ``Σ gain(rel_i) / log2(i + 1)``.

    Raises:
        ValueError: for a bad ``k`` or gain, duplicate ids, or a bad relevance grade.
    """
    rel = _top_relevances(ranking, judgments, k)
    return float((_gain(rel, gain) * _discounts(rel.size)).sum())


def ideal_dcg(judgments: Mapping[Id, float], *, k: int | None = None, gain: Gain = "linear") -> float:
    """DCG of the best possible ranking: all judged relevances sorted descending, cut at ``k``.

    Raises:
        ValueError: for a bad ``k`` or gain, or a bad relevance grade.
    """
    _check_k(k)
    _check_judgments(judgments)
    rel = np.sort(np.array(list(judgments.values()), dtype=np.float64))[::-1][:k]
    return float((_gain(rel, gain) * _discounts(rel.size)).sum())


def ndcg(
    ranking: Sequence[Id], judgments: Mapping[Id, float], *, k: int | None = None, gain: Gain = "linear"
) -> float:
    """``DCG@k / ideal DCG@k`` in [0, 1]; 0.0 when the query has no positive gain at all.

    Raises:
        ValueError: for a bad ``k`` or gain, duplicate ids, or a bad relevance grade.
    """
    ideal = ideal_dcg(judgments, k=k, gain=gain)
    if ideal <= 0.0:
        _check_ranking(ranking)
        return 0.0
    return dcg(ranking, judgments, k=k, gain=gain) / ideal


def dcg_tie_averaged(
    ids: Sequence[Id],
    scores: Sequence[float] | npt.ArrayLike,
    judgments: Mapping[Id, float],
    *,
    k: int | None = None,
    gain: Gain = "linear",
) -> float:
    """DCG@k from scores, averaging the gain of tied items over the positions they share.

    Items with equal scores form a group occupying consecutive positions; each position of the
    group gets the group's mean gain (the expected DCG over all orders of the tie; McSherry &
    Najork 2008). Equal to scikit-learn's ``dcg_score(..., ignore_ties=False)``.

    Raises:
        ValueError: for a bad ``k`` or gain, mismatched lengths, NaN scores, duplicate ids or a
            bad relevance grade.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {values.shape[0]} scores")
    if np.isnan(values).any():
        raise ValueError("scores contain NaN")
    rel = _top_relevances(ids, judgments, None)  # (n,) in the order of ids
    gains = _gain(rel, gain)
    n = len(ids)
    cut = n if k is None else min(k, n)
    discount = np.zeros(n, dtype=np.float64)
    discount[:cut] = _discounts(cut)
    # Groups of equal scores, best first: inverse maps each item to its group.
    _, inverse, counts = np.unique(-values, return_inverse=True, return_counts=True)
    group_gain = np.zeros(counts.size, dtype=np.float64)
    np.add.at(group_gain, inverse, gains)
    group_gain /= counts  # mean gain of each group
    ends = np.cumsum(counts)  # (G,) one past the last position of each group
    discount_cumsum = np.concatenate([[0.0], np.cumsum(discount)])  # (n + 1,)
    group_discount = discount_cumsum[ends] - discount_cumsum[ends - counts]  # (G,)
    return float((group_gain * group_discount).sum())


def ndcg_tie_averaged(
    ids: Sequence[Id],
    scores: Sequence[float] | npt.ArrayLike,
    judgments: Mapping[Id, float],
    *,
    k: int | None = None,
    gain: Gain = "linear",
) -> float:
    """Tie-averaged DCG@k over the ideal DCG@k; 0.0 when the query has no positive gain.

    Like scikit-learn's ``ndcg_score(..., ignore_ties=False)`` when ``judgments`` covers the ids.

    Raises:
        ValueError: as :func:`dcg_tie_averaged`.
    """
    ideal = ideal_dcg(judgments, k=k, gain=gain)
    value = dcg_tie_averaged(ids, scores, judgments, k=k, gain=gain)
    return 0.0 if ideal <= 0.0 else value / ideal


# ---------------------------------------------------------------------------------------------
# aggregation


def metric_name(metric: str, k: int | None) -> str:
    """A flat name for a metric key: ``("ndcg", 10)`` → ``"ndcg@10"``, ``("map", None)`` → ``"map"``."""
    return metric if k is None else f"{metric}@{k}"


def flatten_metrics(metrics: Mapping[MetricKey, float]) -> dict[str, float]:
    """``{(metric, k): value}`` → ``{"metric@k": value}`` (the form promotion and reports use)."""
    return {metric_name(m, k): v for (m, k), v in metrics.items()}


def query_metrics(
    ranking: Sequence[Id],
    judgments: Mapping[Id, float],
    ks: Iterable[int] = DEFAULT_KS,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    gain: Gain = "linear",
) -> dict[MetricKey, float]:
    """Every metric of one query at every ``k`` and with no cut-off (``k=None``; no P@None).

    Raises:
        ValueError: for bad ``ks``, ``threshold`` or gain, duplicate ids, or a bad relevance grade.
    """
    out: dict[MetricKey, float] = {}
    for k in [*sorted(set(ks)), None]:
        out[("mrr", k)] = reciprocal_rank(ranking, judgments, k=k, threshold=threshold)
        if k is not None:
            out[("precision", k)] = precision_at_k(ranking, judgments, k, threshold=threshold)
        out[("recall", k)] = recall_at_k(ranking, judgments, k, threshold=threshold)
        out[("map", k)] = average_precision(ranking, judgments, k=k, threshold=threshold)
        out[("ndcg", k)] = ndcg(ranking, judgments, k=k, gain=gain)
    return out


def evaluate_rankings(
    rankings: Mapping[Q, Sequence[Id]],
    judgments: Mapping[Q, Mapping[Id, float]],
    ks: Iterable[int] = DEFAULT_KS,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    gain: Gain = "linear",
) -> dict[MetricKey, float]:
    """Mean over queries of MRR, P@k, R@k, mAP and nDCG, keyed by ``(metric, k)``.

    ``k`` runs over ``ks`` and ``None`` (no cut-off; precision has no ``None`` entry). The queries
    are those of ``judgments``; ``rankings`` must have exactly the same queries (an empty ranking
    is allowed and scores 0). Queries without a relevant item are counted with 0.0 (see the module
    docstring) and their number is logged.

    Raises:
        ValueError: when there are no queries, the two mappings' queries differ, ``ks`` is empty
            or holds a non-positive value, or any per-query check fails.
    """
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must not be empty")
    for k in ks:
        _check_k(k)
    _check_threshold(threshold)
    if not judgments:
        raise ValueError("no judged queries to evaluate")
    missing = [q for q in judgments if q not in rankings]
    extra = [q for q in rankings if q not in judgments]
    if missing or extra:
        raise ValueError(
            f"rankings and judgments must cover the same queries: {len(missing)} judged queries "
            f"without a ranking (e.g. {missing[:3]}), {len(extra)} ranked queries without judgments "
            f"(e.g. {extra[:3]})"
        )
    sums: dict[MetricKey, float] = {}
    without_relevant = 0
    for query, judged in judgments.items():
        if _num_relevant(judged, threshold) == 0:
            without_relevant += 1
        for key, value in query_metrics(rankings[query], judged, ks, threshold=threshold, gain=gain).items():
            sums[key] = sums.get(key, 0.0) + value
    if without_relevant:
        log.warning("%d of %d queries have no relevant item (rel >= %s); they score 0.0",
                    without_relevant, len(judgments), threshold)
    n = float(len(judgments))
    return {key: total / n for key, total in sums.items()}


# ---------------------------------------------------------------------------------------------
# kNN classification


L = TypeVar("L", bound=Hashable)


def knn_majority_label(neighbor_labels: Sequence[L], k: int) -> L | None:
    """The most frequent label among the first ``k`` neighbours (nearest first).

    A tie in the vote goes to the tied label whose first occurrence is nearest; ``None`` when
    there are no neighbours.

    Raises:
        ValueError: for a ``k`` that is not a positive integer.
    """
    _check_k(k)
    top = list(neighbor_labels[:k])
    if not top:
        return None
    counts = Counter(top)
    best = max(counts.values())
    return next(label for label in top if counts[label] == best)


def knn_accuracy(neighbor_labels: Sequence[Sequence[L]], true_labels: Sequence[L], k: int) -> float:
    """Share of queries whose majority label among their top-``k`` neighbours is their true label.

    ``neighbor_labels[q]`` lists the labels of query ``q``'s neighbours, nearest first (the query
    itself excluded by the caller). A query without neighbours counts as wrong.

    Raises:
        ValueError: for no queries, mismatched lengths, or a bad ``k``.
    """
    if len(neighbor_labels) != len(true_labels):
        raise ValueError(f"{len(neighbor_labels)} neighbour lists but {len(true_labels)} true labels")
    if len(true_labels) == 0:
        raise ValueError("no queries to classify")
    correct = sum(
        1 for labels, truth in zip(neighbor_labels, true_labels, strict=True)
        if knn_majority_label(labels, k) == truth
    )
    return correct / len(true_labels)
