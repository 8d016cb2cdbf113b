"""Offline evaluation of image embedders on graded judgments: two protocols, the same queries for all.

An *embedder* is anything with ``embed_images(images) -> (N, D) float32`` (a registry
:class:`~visearch.train.registry.LoadedModel`, the :class:`~visearch.evaluate.baselines.ColorHistogramEmbedder`,
the random-weight network of :func:`random_init_embedder`). Judgments are
``{query_id: {candidate_id: relevance 0–5}}``. Similarity is cosine: every embedding is
L2-normalised here, so an inner product is a cosine.

Protocols (metrics from :mod:`visearch.evaluate.metrics`, at every ``k`` of ``settings.eval.ks``):

- ``judged`` (the seed's protocol): each query's judged candidates are ranked by similarity to the
  query. It measures ordering within a fixed candidate list, independent of the corpus.
- ``corpus``: each query retrieves its top ``max(ks)`` from the whole corpus with an exact Faiss
  ``IndexFlatIP`` (the query itself excluded). Unjudged results count as relevance 0, as in TREC;
  this is what a user of the search experiences, distractors included.

Only images that can be evaluated count: a query whose image is missing is dropped, a candidate
missing from the corpus is removed from the query's judgments (so the ideal DCG holds only what
could be retrieved), and a query left without candidates is dropped. :func:`restrict_judgments`
does this once, so every embedder is scored on exactly the same queries.

Who uses it: the day's evaluation into ``gold.model_metrics`` (:mod:`visearch.evaluate.evaluate_day`),
``visearch evaluate`` on a user's own judged folder (:mod:`visearch.evaluate.cli`) and the quality
benchmark.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from visearch.evaluate.metrics import MAX_RELEVANCE, evaluate_rankings, knn_accuracy, metric_name, rank_by_scores

if TYPE_CHECKING:
    from visearch.train.registry import LoadedModel

log = logging.getLogger(__name__)

JUDGED = "judged"
CORPUS = "corpus"
PROTOCOLS: tuple[str, ...] = (JUDGED, CORPUS)

MODEL = "model"
RANDOM_INIT = "random_init"
COLOR_HISTOGRAM = "color_histogram"
CHAMPION = "champion"
#: Embedder names written to ``gold.model_metrics`` (``champion``: the incumbent, same run).
EMBEDDERS: tuple[str, ...] = (MODEL, CHAMPION, RANDOM_INIT, COLOR_HISTOGRAM)

Judgments = Mapping[str, Mapping[str, float]]
FloatMatrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """What evaluation needs of a model: encoded images (or Pillow images) in, ``(N, D)`` out."""

    def embed_images(self, images: Sequence[bytes | Image.Image]) -> npt.NDArray[Any]:
        """Embed a batch of images."""
        ...


@dataclass(frozen=True)
class MetricRow:
    """One number of an evaluation: ``embedder`` scored ``value`` on ``metric@k`` under ``protocol``."""

    embedder: str
    protocol: str
    metric: str
    k: int
    value: float

    @property
    def name(self) -> str:
        """Flat metric name, e.g. ``ndcg@10``."""
        return metric_name(self.metric, self.k)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass(frozen=True)
class Judgment:
    """One line of a judgments file."""

    set: str
    query: str
    candidate: str
    relevance: int


# ---------------------------------------------------------------------------------------------
# judgments


def check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    """Sorted distinct cut-offs.

    Raises:
        ValueError: for no cut-off or one that is not a positive integer.
    """
    out = tuple(sorted(set(ks)))
    if not out or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in out):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)!r}")
    return out


def check_protocols(protocols: Iterable[str]) -> tuple[str, ...]:
    """The protocol names, checked.

    Raises:
        ValueError: for no protocol or an unknown protocol name.
    """
    out = tuple(protocols)
    bad = [p for p in out if p not in PROTOCOLS]
    if bad or not out:
        raise ValueError(f"protocols must be among {PROTOCOLS}, got {out!r}")
    return out


def parse_judgments_csv(
    text: str, *, default_set: str = "default", source: str = "judgments"
) -> list[Judgment]:
    """Parse a judgments CSV.

    Accepted columns (header optional; without one, three columns are ``query,candidate,relevance``
    and four are ``set,query,candidate,relevance``): ``query``/``query_image_id``,
    ``candidate``/``candidate_image_id``, ``relevance`` and an optional ``set`` (``default_set``
    when absent). Relevance is an integer 0–5. A pair judged twice with the same grade is kept
    once.

    Raises:
        ValueError: for a missing column, an empty id, a grade that is not an integer in 0–5, or a
            pair judged twice with different grades (the line number is in the message).
    """
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    if not rows:
        return []
    aliases = {"query": "query", "query_image_id": "query", "candidate": "candidate",
               "candidate_image_id": "candidate", "relevance": "relevance", "set": "set"}
    first = [c.strip().lower() for c in rows[0]]
    if first[-1] == "relevance" or "relevance" in first:
        columns = [aliases.get(c, c) for c in first]
        body = list(enumerate(rows[1:], start=2))
    elif len(first) in (3, 4):
        columns = ["query", "candidate", "relevance"] if len(first) == 3 else ["set", "query", "candidate",
                                                                                "relevance"]
        body = list(enumerate(rows, start=1))
    else:
        raise ValueError(f"{source}: expected a header with query, candidate, relevance or 3-4 columns, "
                         f"got {rows[0]!r}")
    missing = [c for c in ("query", "candidate", "relevance") if c not in columns]
    if missing:
        raise ValueError(f"{source}: header {rows[0]!r} lacks {missing}")
    index = {c: columns.index(c) for c in ("set", "query", "candidate", "relevance") if c in columns}
    seen: dict[tuple[str, str, str], int] = {}
    out: list[Judgment] = []
    for line, row in body:
        if len(row) < len(columns):
            raise ValueError(f"{source}:{line}: expected {len(columns)} columns, got {row!r}")
        query, candidate = row[index["query"]].strip(), row[index["candidate"]].strip()
        judged_set = row[index["set"]].strip() if "set" in index else default_set
        if not query or not candidate or not judged_set:
            raise ValueError(f"{source}:{line}: empty set, query or candidate in {row!r}")
        raw = row[index["relevance"]].strip()
        try:
            relevance = int(raw)
        except ValueError as exc:
            raise ValueError(
                f"{source}:{line}: relevance must be an integer 0-{MAX_RELEVANCE}, got {raw!r}"
            ) from exc
        if not 0 <= relevance <= MAX_RELEVANCE:
            raise ValueError(f"{source}:{line}: relevance must be in 0-{MAX_RELEVANCE}, got {relevance}")
        key = (judged_set, query, candidate)
        if key in seen:
            if seen[key] != relevance:
                raise ValueError(f"{source}:{line}: {key} judged {seen[key]} earlier and {relevance} here")
            continue
        seen[key] = relevance
        out.append(Judgment(judged_set, query, candidate, relevance))
    return out


def group_judgments(rows: Iterable[Judgment], judged_set: str | None = None) -> dict[str, dict[str, float]]:
    """``{query: {candidate: relevance}}`` of one set (all rows when ``judged_set`` is None)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if judged_set is None or r.set == judged_set:
            out.setdefault(r.query, {})[r.candidate] = float(r.relevance)
    return out


def restrict_judgments(
    judgments: Judgments, queries: Iterable[str], corpus: Iterable[str]
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Keep what can be evaluated: queries with an image, candidates in the corpus (not the query).

    Returns:
        The restricted judgments (queries in sorted order) and counts of what was dropped:
        ``queries_missing`` (no image), ``candidates_missing`` (not in the corpus), ``self_judged``
        (a query judged against itself) and ``queries_empty`` (no candidate left).
    """
    query_set, corpus_set = set(queries), set(corpus)
    dropped = {"queries_missing": 0, "candidates_missing": 0, "self_judged": 0, "queries_empty": 0}
    out: dict[str, dict[str, float]] = {}
    for query in sorted(judgments):
        if query not in query_set:
            dropped["queries_missing"] += 1
            continue
        kept: dict[str, float] = {}
        for candidate, rel in judgments[query].items():
            if candidate == query:
                dropped["self_judged"] += 1
            elif candidate not in corpus_set:
                dropped["candidates_missing"] += 1
            else:
                kept[candidate] = float(rel)
        if kept:
            out[query] = kept
        else:
            dropped["queries_empty"] += 1
    return out, dropped


def stable_sample(ids: Iterable[str], n: int, *, keep: Iterable[str] = ()) -> list[str]:
    """At most ``n`` ids: all of ``keep`` (that are in ``ids``) then others by sha256 of the id, sorted.

    Deterministic and independent of input order, so a capped corpus is the same in every run.

    Raises:
        ValueError: for a negative ``n``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = set(ids)
    chosen = sorted(set(keep) & pool)
    rest = sorted(pool - set(chosen), key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    return sorted(chosen + rest[: max(0, n - len(chosen))])


# ---------------------------------------------------------------------------------------------
# embedding and exact search


def normalise(vectors: npt.ArrayLike) -> FloatMatrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as contiguous float32 ``(N, D)``.

    Raises:
        ValueError: when the input is not a 2-D array or holds NaN or infinity.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"embeddings hold NaN or infinity in rows {bad[:10].tolist()}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def embed_ids(
    embedder: Embedder, images: Mapping[str, bytes | Image.Image], ids: Sequence[str], *, batch_size: int = 64
) -> FloatMatrix:
    """Embed ``images[id]`` for each id in order, in batches → L2-normalised ``(len(ids), D)``.

    Raises:
        KeyError: when an id has no image.
        ValueError: when an image cannot be embedded (its id is in the message), the embedder
            returns the wrong number of rows, or ``batch_size`` is not positive.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    missing = [i for i in ids if i not in images]
    if missing:
        raise KeyError(f"no image for {len(missing)} ids, e.g. {missing[:5]}")
    chunks: list[npt.NDArray[Any]] = []
    for start in range(0, len(ids), batch_size):
        batch = list(ids[start : start + batch_size])
        try:
            out = np.asarray(embedder.embed_images([images[i] for i in batch]))
        except ValueError:
            for one in batch:  # name the image that fails
                try:
                    embedder.embed_images([images[one]])
                except ValueError as exc:
                    raise ValueError(f"cannot embed image {one!r}: {exc}") from exc
            raise
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ValueError(f"embedder returned shape {out.shape} for {len(batch)} images")
        chunks.append(out)
    if not chunks:
        raise ValueError("no images to embed")
    return normalise(np.concatenate(chunks))  # (N, D)


def exact_top_k(
    corpus_ids: Sequence[str],
    corpus_vectors: npt.ArrayLike,
    query_ids: Sequence[str],
    query_vectors: npt.ArrayLike,
    k: int,
    *,
    exclude_self: bool = True,
) -> list[list[tuple[str, float]]]:
    """The ``k`` most similar corpus items of each query by inner product (exact Faiss ``IndexFlatIP``).

    Vectors are used as given (normalise them for cosine). With ``exclude_self`` a corpus item
    with the query's id is never returned. Results are ordered by descending score, ties by
    ascending id, so they are deterministic.

    Returns:
        For each query, up to ``k`` ``(corpus_id, score)`` pairs.

    Raises:
        ValueError: for a bad ``k``, mismatched ids and vectors, or different dimensions.
    """
    import faiss

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    base = np.ascontiguousarray(corpus_vectors, dtype=np.float32)  # (N, D)
    queries = np.ascontiguousarray(query_vectors, dtype=np.float32)  # (Q, D)
    if base.ndim != 2 or base.shape[0] != len(corpus_ids):
        raise ValueError(f"{len(corpus_ids)} corpus ids but vectors of shape {base.shape}")
    if queries.ndim != 2 or queries.shape[0] != len(query_ids):
        raise ValueError(f"{len(query_ids)} query ids but vectors of shape {queries.shape}")
    if base.shape[0] and queries.shape[0] and base.shape[1] != queries.shape[1]:
        raise ValueError(f"corpus dimension {base.shape[1]} differs from query dimension {queries.shape[1]}")
    if base.shape[0] == 0 or queries.shape[0] == 0:
        return [[] for _ in query_ids]
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    depth = min(base.shape[0], k + (1 if exclude_self else 0))
    scores, found = index.search(queries, depth)  # (Q, depth) each
    out: list[list[tuple[str, float]]] = []
    for qid, row_scores, row_ids in zip(query_ids, scores, found, strict=True):
        hits = [(corpus_ids[int(j)], float(s)) for s, j in zip(row_scores, row_ids, strict=True) if j >= 0]
        if exclude_self:
            hits = [h for h in hits if h[0] != qid]
        hits.sort(key=lambda h: (-h[1], h[0]))
        out.append(hits[:k])
    return out


def rank_judged(ids: Sequence[str], vectors: npt.ArrayLike, judgments: Judgments) -> dict[str, list[str]]:
    """Judged protocol: each query's judged candidates ordered by cosine similarity to the query.

    Raises:
        ValueError: when a query or candidate has no vector.
    """
    position = {image_id: row for row, image_id in enumerate(ids)}
    x = np.asarray(vectors, dtype=np.float32)
    rankings: dict[str, list[str]] = {}
    for query, judged in judgments.items():
        wanted = [query, *judged]
        absent = [i for i in wanted if i not in position]
        if absent:
            raise ValueError(f"no embedding for {absent[:5]} (query {query!r})")
        candidates = list(judged)
        scores = x[[position[c] for c in candidates]] @ x[position[query]]  # (C, D) @ (D,) -> (C,)
        rankings[query] = rank_by_scores(candidates, scores)
    return rankings


def rank_corpus(
    ids: Sequence[str],
    vectors: npt.ArrayLike,
    queries: Iterable[str],
    depth: int,
    *,
    corpus: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Corpus protocol: each query's top ``depth`` from the corpus (itself excluded).

    ``corpus`` (default: every id) is the searched subset of ``ids``; queries may lie outside it.

    Raises:
        ValueError: when a query or corpus id has no vector, or for a bad ``depth``.
    """
    position = {image_id: row for row, image_id in enumerate(ids)}
    x = np.asarray(vectors, dtype=np.float32)
    query_ids = list(queries)
    corpus_ids = list(ids) if corpus is None else sorted(set(corpus))
    absent = [i for i in (*query_ids, *corpus_ids) if i not in position]
    if absent:
        raise ValueError(f"no embedding for {absent[:5]}")
    hits = exact_top_k(corpus_ids, x[[position[i] for i in corpus_ids]],  # (N, D)
                       query_ids, x[[position[q] for q in query_ids]], depth)  # (Q, D)
    return {q: [i for i, _ in h] for q, h in zip(query_ids, hits, strict=True)}


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_vectors(
    name: str,
    ids: Sequence[str],
    vectors: npt.ArrayLike,
    judgments: Judgments,
    ks: Iterable[int],
    protocols: Iterable[str] = PROTOCOLS,
    *,
    corpus: Iterable[str] | None = None,
) -> list[MetricRow]:
    """Metrics of one embedder's vectors (rows aligned with ``ids``).

    ``judgments`` must already be restricted to what can be evaluated (:func:`restrict_judgments`);
    ``corpus`` is what the corpus protocol searches (default: every id).

    Raises:
        ValueError: for bad ``ks`` or protocols, no judged query, or a judged id without a vector.
    """
    ks = check_ks(ks)
    protocols = check_protocols(protocols)
    if not judgments:
        raise ValueError("no judged query to evaluate")
    x = normalise(vectors)  # (N, D) unit rows: inner product = cosine
    rows: list[MetricRow] = []
    for protocol in protocols:
        if protocol == JUDGED:
            rankings = rank_judged(ids, x, judgments)
        else:
            rankings = rank_corpus(ids, x, judgments, max(ks), corpus=corpus)
        means = evaluate_rankings(rankings, judgments, ks)
        rows += [MetricRow(name, protocol, metric, k, float(value))
                 for (metric, k), value in sorted(means.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
                 if k is not None]
    return rows


def evaluate_embedders(
    embedders: Mapping[str, Embedder],
    images: Mapping[str, bytes | Image.Image],
    judgments: Judgments,
    ks: Iterable[int],
    *,
    corpus: Iterable[str] | None = None,
    protocols: Iterable[str] = PROTOCOLS,
    batch_size: int = 64,
) -> tuple[list[MetricRow], dict[str, int]]:
    """Evaluate every embedder on the same queries, candidates and corpus.

    Args:
        embedders: ``{name: embedder}``, e.g. ``{"model": ..., "random_init": ..., "color_histogram": ...}``.
        images: encoded image (or Pillow image) of every id that may be needed.
        judgments: ``{query: {candidate: relevance}}``; restricted here (:func:`restrict_judgments`).
        ks: cut-offs.
        corpus: ids searched by the corpus protocol (and allowed as candidates); default every id
            of ``images``. Queries are any id of ``images``.
        protocols: a subset of :data:`PROTOCOLS`.
        batch_size: images per ``embed_images`` call.

    Returns:
        Metric rows of every embedder and the counts of :func:`restrict_judgments` plus
        ``queries``, ``judgments`` and ``corpus``.

    Raises:
        ValueError: for bad ``ks`` or protocols, no embedder, a corpus id without an image, no
            query left to evaluate, or an image that cannot be embedded.
    """
    ks = check_ks(ks)
    protocols = check_protocols(protocols)
    if not embedders:
        raise ValueError("no embedder to evaluate")
    corpus_ids = sorted(set(images) if corpus is None else set(corpus))
    absent = [i for i in corpus_ids if i not in images]
    if absent:
        raise ValueError(f"{len(absent)} corpus ids have no image, e.g. {absent[:5]}")
    restricted, counts = restrict_judgments(judgments, images, corpus_ids)
    if not restricted:
        raise ValueError(f"no judged query can be evaluated with these images ({counts})")
    ids = sorted(set(corpus_ids) | set(restricted))  # corpus plus queries outside it
    counts = {**counts, "queries": len(restricted), "judgments": sum(len(j) for j in restricted.values()),
              "corpus": len(corpus_ids)}
    log.info("evaluating %s on %d queries, %d judgments, corpus of %d images (dropped: %s)",
             sorted(embedders), counts["queries"], counts["judgments"], counts["corpus"],
             {k: v for k, v in counts.items() if k in ("queries_missing", "candidates_missing", "self_judged",
                                                       "queries_empty")})
    rows: list[MetricRow] = []
    for name, embedder in embedders.items():
        vectors = embed_ids(embedder, images, ids, batch_size=batch_size)  # (N, D)
        rows += evaluate_vectors(name, ids, vectors, restricted, ks, protocols, corpus=corpus_ids)
        if 10 in ks:
            log.info("%s: nDCG@10 %s", name,
                     {r.protocol: round(r.value, 4) for r in rows
                      if r.embedder == name and r.name == "ndcg@10"})
    return rows, counts


def metrics_by_embedder(rows: Iterable[MetricRow], protocol: str) -> dict[str, dict[str, float]]:
    """``{embedder: {"ndcg@10": value, ...}}`` of one protocol (the form promotion takes)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.protocol == protocol:
            out.setdefault(r.embedder, {})[r.name] = r.value
    return out


def knn_accuracy_at(
    ids: Sequence[str], vectors: npt.ArrayLike, labels: Mapping[str, Hashable], ks: Iterable[int]
) -> dict[int, float]:
    """kNN classification accuracy of labelled ids at each ``k`` (neighbours by cosine, self excluded).

    Every labelled id is a query; its neighbours are the other labelled ids (majority vote of
    :func:`visearch.evaluate.metrics.knn_accuracy`).

    Raises:
        ValueError: for bad ``ks``, fewer than two labelled ids, or a labelled id without a vector.
    """
    ks = check_ks(ks)
    position = {image_id: row for row, image_id in enumerate(ids)}
    labelled = sorted(i for i in labels if i in position)
    if len(labelled) != len(labels):
        raise ValueError(f"{len(labels) - len(labelled)} labelled ids have no vector")
    if len(labelled) < 2:
        raise ValueError(f"need at least 2 labelled ids, got {len(labelled)}")
    x = normalise(np.asarray(vectors, dtype=np.float32)[[position[i] for i in labelled]])  # (L, D)
    hits = exact_top_k(labelled, x, labelled, x, max(ks))
    neighbour_labels = [[labels[i] for i, _ in h] for h in hits]
    truth = [labels[i] for i in labelled]
    return {k: knn_accuracy(neighbour_labels, truth, k) for k in ks}


# ---------------------------------------------------------------------------------------------
# the random-weight baseline


def random_init_embedder(config: Mapping[str, Any], seed: int) -> LoadedModel:
    """The same architecture and preprocessing as a model version's ``config``, with random weights.

    The weights come from ``torch`` seeded with ``seed`` inside a forked RNG (the caller's random
    state is untouched), so the baseline is the same network in every run.

    Raises:
        ValueError: when the config does not describe a valid architecture.
    """
    import torch

    from visearch.core.config import ModelSettings
    from visearch.train.model import Architecture, build_model
    from visearch.train.preprocess import Preprocessing
    from visearch.train.registry import LoadedModel

    arch = Architecture.from_dict(config)
    prep = Preprocessing.from_dict(config["preprocessing"]) if "preprocessing" in config else Preprocessing(
        size=arch.image_size)
    settings = ModelSettings(backbone=arch.backbone, embed_dim=arch.embed_dim, image_size=arch.image_size,
                             small_stem=arch.small_stem, init_weights="", mean=prep.mean, std=prep.std,
                             width=arch.width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(settings)
    model.eval()
    described = {**arch.to_dict(), "preprocessing": prep.to_dict(), "seed": seed}
    return LoadedModel(model, prep, described, f"{RANDOM_INIT}-seed{seed}")
