"""The day's offline evaluation: the new model version beside two baselines and the champion.

Steps for ``ds``:

1. **Model**: the newest version trained for ``ds`` (the registry's ``newest_of_day``: the last in
   name order when there are several), or ``model_version`` (a version, or ``CHAMPION``). No
   version of ``ds`` → nothing to do (``{"evaluated": false}``), as on a day training skipped.
2. **Judgments**: ``<landing>/judgments/judgments.csv`` (when present) is MERGEd into
   ``gold.eval_judgments`` on (set, query, candidate); a row is rewritten only when its grade
   changed, so a rerun changes nothing. The set ``settings.eval.eval_set`` is read back from the
   table (judgments may come from elsewhere too).
3. **Images**: ``silver.images`` with status ok. The corpus (what the corpus protocol searches
   and judged candidates may be) is the ok *public* images, as the serving tier only returns
   those; a query may be any ok image. A corpus larger than ``max_corpus`` is cut to every judged
   image plus a deterministic sample of the others (:func:`visearch.evaluate.evaluation.stable_sample`).
4. **Bytes** are read with :func:`visearch.core.storage.read_uri` on the driver, by a thread pool
   (the reads are I/O bound). An image that cannot be read is counted (``unreadable``) and left
   out, which drops its judgments for every embedder alike.
5. **Embedders**, all on the same queries and corpus: ``model`` (the version),
   ``champion`` (the reference champion of :func:`visearch.evaluate.evaluation.reference_champion`, when
   there is one other than the version: the same run makes the promotion comparison fair even as
   the corpus grows), ``random_init`` (the same architecture with weights seeded by
   ``settings.train.seed``) and ``color_histogram``. Both protocols of
   :mod:`visearch.evaluate.evaluation`, at every k of ``settings.eval.ks``.
6. **gold.model_metrics**: the rows of (model_version, eval_set) are replaced (``replaceWhere``),
   so a rerun leaves the same rows; ``embedder_version`` names the model behind ``model`` and
   ``champion`` rows.

Why the driver, and the path to scale: the evaluation set is bounded by design — judged images
(thousands) plus at most ``max_corpus`` distractors — so reading and embedding it on the driver
costs minutes at most and keeps the numbers bit-for-bit reproducible (one process, fixed order).
Spark is used for what grows with the lake (the tables). For full-corpus retrieval metrics at
100-billion scale, vectors would not be recomputed here: the embed job's ``gold.embeddings`` (GPU
executors) and the sharded index provide them, and :func:`visearch.evaluate.evaluation.evaluate_vectors`
takes vectors from any source. Embedding the eval set on executors would be a ``mapPartitions``
over ``(image_id, uri)`` that loads the model once per partition, as the embed job does.

Run by ``jobs/evaluate.py``; try: python -m jobs.evaluate --ds 2026-01-02 [--model-version v-2026-01-02-1a2b3c4d]
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import S3Settings, Settings
from visearch.core.jobrun import check_ds
from visearch.core.storage import open_store, read_uri
from visearch.core.timing import StageTimer
from visearch.evaluate.evaluation import (
    CHAMPION,
    COLOR_HISTOGRAM,
    MODEL,
    RANDOM_INIT,
    Embedder,
    evaluate_embedders,
    parse_judgments_csv,
    random_init_embedder,
    stable_sample,
)
from visearch.evaluate.promotion import reference_champion

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

JUDGMENTS_KEY = "judgments/judgments.csv"
MAX_CORPUS = 50_000
READ_THREADS = 8
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def load_landing_judgments(spark: SparkSession, settings: Settings) -> int:
    """MERGE ``<landing>/judgments/judgments.csv`` into ``gold.eval_judgments``; rows in the file.

    Raises:
        ValueError: for an invalid judgments file (line number in the message).
    """
    store = open_store(settings.landing, settings.s3)
    if not store.exists(JUDGMENTS_KEY):
        log.info("no %s: using gold.eval_judgments as it is", store.uri(JUDGMENTS_KEY))
        return 0
    parsed = parse_judgments_csv(store.get_text(JUDGMENTS_KEY), default_set=settings.eval.eval_set,
                                 source=store.uri(JUDGMENTS_KEY))
    if parsed:
        df = spark.createDataFrame([(j.set, j.query, j.candidate, j.relevance) for j in parsed],
                                   T.GOLD_EVAL_JUDGMENTS.schema)
        T.merge(spark, settings, T.GOLD_EVAL_JUDGMENTS, df,
                update_condition="NOT (t.relevance <=> s.relevance)")
    log.info("merged %d judgments from %s", len(parsed), store.uri(JUDGMENTS_KEY))
    return len(parsed)


def read_images(
    uris: dict[str, str], s3: S3Settings, threads: int = READ_THREADS
) -> tuple[dict[str, bytes], int]:
    """Bytes of each ``{image_id: uri}`` read in parallel; the unreadable ones are counted and left out."""

    def one(item: tuple[str, str]) -> tuple[str, bytes | None]:
        image_id, uri = item
        try:
            return image_id, read_uri(uri, s3)
        except (FileNotFoundError, OSError) as exc:
            log.warning("cannot read %s (%s): %s", image_id, uri, exc)
            return image_id, None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, sorted(uris.items())))
    images = {i: data for i, data in results if data is not None}
    return images, len(results) - len(images)


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None, timer: StageTimer | None = None,
        model_version: str | None = None, max_corpus: int = MAX_CORPUS) -> dict[str, Any]:
    """Evaluate a model version for ``ds`` into ``gold.model_metrics`` (the steps: the module docstring).

    Returns:
        ``evaluated`` (False with ``reason`` when there is no version for ``ds``); when evaluated
        also ``model_version``, ``eval_set``, ``champion_version``, counts (``queries``,
        ``judgments``, ``corpus``, ``unreadable``, ``rows``), ``ndcg@10`` as
        ``{protocol: {embedder: value}}``, ``beats_baselines`` (on the promotion protocol) and the
        Delta ``tables`` versions read.

    Raises:
        ValueError: for a bad ``ds``, ``max_corpus`` or eval-set name, no judgments of the eval
            set, no query left to evaluate, or an image that cannot be decoded.
        FileNotFoundError: for an explicit ``model_version`` that does not exist.
        LookupError: for ``model_version="CHAMPION"`` before any promotion.
    """
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark
    from visearch.evaluate.baselines import ColorHistogramEmbedder
    from visearch.train.registry import ModelRegistry

    check_ds(ds)
    if max_corpus < 1:
        raise ValueError(f"max_corpus must be >= 1, got {max_corpus}")
    eval_set = settings.eval.eval_set
    if not _SAFE.match(eval_set):
        raise ValueError(f"eval_set must be letters, digits, '.', '_' or '-', got {eval_set!r}")
    timer = timer or StageTimer("evaluate")
    registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
    # An explicit version (CHAMPION too) through the registry: UnknownVersionError, a FileNotFoundError.
    version = registry.resolve(model_version) if model_version else registry.newest_of_day(ds)
    if version is None:
        log.info("no model version trained for %s: nothing to evaluate", ds)
        return {"ds": ds, "evaluated": False, "reason": f"no model version of {ds}"}
    config = registry.config(version)
    champion = reference_champion(registry, version)

    spark = spark or get_spark(settings, "visearch-evaluate")
    with timer.stage("judgments"):
        landed = load_landing_judgments(spark, settings)
        tables = {t.name: T.version(spark, settings, t) for t in (T.GOLD_EVAL_JUDGMENTS, T.SILVER_IMAGES)}
        judged_rows = (T.read(spark, settings, T.GOLD_EVAL_JUDGMENTS).where(F.col("set") == eval_set)
                       .select("query_image_id", "candidate_image_id", "relevance").collect())
        judgments: dict[str, dict[str, float]] = {}
        for r in judged_rows:
            judgments.setdefault(r["query_image_id"], {})[r["candidate_image_id"]] = float(r["relevance"])
        if not judgments:
            raise ValueError(f"no judgments of set {eval_set!r} in gold.eval_judgments ({landed} landed): "
                             f"put them in <landing>/{JUDGMENTS_KEY}")

    with timer.stage("read images"):
        ok = (T.read(spark, settings, T.SILVER_IMAGES).where(F.col("status") == "ok")
              .select("image_id", "uri", "is_private").collect())
        uri_of = {r["image_id"]: r["uri"] for r in ok}
        public = [r["image_id"] for r in ok if not r["is_private"]]
        judged_ids = {i for q, js in judgments.items() for i in (q, *js)}
        corpus = stable_sample(public, max_corpus, keep=judged_ids)
        if len(corpus) < len(public):
            log.warning("corpus capped at %d of %d public images (judged ones kept)",
                        len(corpus), len(public))
        wanted = {i: uri_of[i] for i in sorted(set(corpus) | (judged_ids & set(uri_of)))}
        images, unreadable = read_images(wanted, settings.s3)
        corpus = [i for i in corpus if i in images]

    with timer.stage("evaluate"):
        model = registry.load(version)
        embedders: dict[str, Embedder] = {MODEL: model}
        if champion is not None:
            embedders[CHAMPION] = registry.load(champion)
        embedders[RANDOM_INIT] = random_init_embedder(config, settings.train.seed)
        embedders[COLOR_HISTOGRAM] = ColorHistogramEmbedder()
        rows, counts = evaluate_embedders(embedders, images, judgments, settings.eval.ks, corpus=corpus,
                                          batch_size=settings.embed.batch_size)

    with timer.stage("write metrics"):
        names = {MODEL: version, CHAMPION: champion}
        records = [(version, eval_set, m.protocol, m.embedder, m.metric, m.k, m.value, ds,
                    names.get(m.embedder)) for m in rows]
        df = spark.createDataFrame(records, T.GOLD_MODEL_METRICS.schema)
        T.replace_partition(spark, settings, T.GOLD_MODEL_METRICS, df,
                            f"model_version = '{version}' AND eval_set = '{eval_set}'")

    ndcg10: dict[str, dict[str, float]] = {}
    for m in rows:
        if m.name == "ndcg@10":
            ndcg10.setdefault(m.protocol, {})[m.embedder] = round(m.value, 6)
    gate = ndcg10.get(settings.eval.promote_protocol, {})
    beats = bool(gate) and all(gate[MODEL] > gate[b] for b in (RANDOM_INIT, COLOR_HISTOGRAM) if b in gate)
    log.info("model %s nDCG@10 %s", version, ndcg10)
    return {
        "ds": ds,
        "evaluated": True,
        "model_version": version,
        "eval_set": eval_set,
        "champion_version": champion,
        "queries": counts["queries"],
        "judgments": counts["judgments"],
        "corpus": counts["corpus"],
        "unreadable": unreadable,
        "dropped": {k: v for k, v in counts.items() if k not in ("queries", "judgments", "corpus")},
        "rows": len(records),
        "ndcg@10": ndcg10,
        "beats_baselines": beats,
        "tables": tables,
    }
