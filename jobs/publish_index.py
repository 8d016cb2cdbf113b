"""Validate an index build and make it live by writing ``indexes/<name>/CURRENT`` (Spark job).

Validation: every object present with its sha256; the build's live vectors are exactly the
eligible embeddings (gold.embeddings of the build's model version joined with silver.images,
status ok and not private), counted both ways; recall@10 of the build's default search against
exact search on a fresh sample of queries reaches ``index.min_publish_recall``. Any failure raises
and leaves ``CURRENT`` as it was. After publishing, builds beyond ``index.keep_builds`` are pruned
(never the live one nor any object a kept build references).

    python -m jobs.publish_index --ds 2026-01-01 [--build-id b-2026-01-01-1a2b3c4d]
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from visearch.core.config import Settings
from visearch.core.jobrun import JobContext, job_parser
from visearch.core.spark import get_spark
from visearch.core.storage import open_store
from visearch.core.timing import StageTimer
from visearch.index.faiss_index import collect_vectors, eligible_embeddings, exact_topk_spark, sample_rows
from visearch.index.manifest import BuildNotFoundError, current_build_id, live_rows_spark, read_manifest
from visearch.index.publish import newest_build_for, prune_builds, publish_build, validate_build

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

VALIDATION_QUERIES = 200
K = 10


def run(
    settings: Settings,
    ds: str,
    *,
    spark: SparkSession | None = None,
    timer: StageTimer | None = None,
    build_id: str | None = None,
) -> dict[str, Any]:
    """Validate and publish ``build_id`` (default: the newest build created for ``ds``).

    Raises:
        BuildNotFoundError: when there is no build for ``ds`` (or the named one does not exist).
        visearch.index.publish.ValidationError: when validation fails (``CURRENT`` unchanged).
        visearch.index.manifest.ChecksumError: when an object of the build is damaged.
    """
    timer = timer or StageTimer("publish_index")
    store = open_store(settings.artifacts, settings.s3)
    name = settings.index.name
    if build_id is None:
        build_id = newest_build_for(store, name, ds)
        if build_id is None:
            raise BuildNotFoundError(f"no build of index {name!r} was created for {ds}: "
                                     "run build_index first")
    manifest = read_manifest(store, name, build_id)
    live = current_build_id(store, name)
    if live == build_id:
        log.info("%s is already live; nothing to publish", build_id)
        return {"build_id": build_id, "published": False, "already_live": True,
                "current_uri": store.uri(f"indexes/{name}/CURRENT")}
    spark = spark or get_spark(settings, "publish_index")

    with timer.stage("expected"):
        eligible = eligible_embeddings(spark, settings, manifest.model_version)
        eligible = eligible.select("image_id", "embedding")
        expected = eligible.count()
        held = live_rows_spark(spark, store, manifest)
        held_ids = held.select("image_id")
        missing = eligible.join(held_ids, "image_id", "left_anti").count()
        unexpected = held_ids.join(eligible, "image_id", "left_anti").count()

    with timer.stage("exact"):
        _, queries = collect_vectors(sample_rows(eligible, VALIDATION_QUERIES, f"publish-{ds}"), manifest.dim)
        _, exact = exact_topk_spark(eligible, queries, K)

    with timer.stage("validate"):
        report = validate_build(store, name, build_id, expected_count=expected, queries=queries,
                                exact_image_ids=exact, min_recall=settings.index.min_publish_recall, k=K,
                                missing=missing, unexpected=unexpected)

    with timer.stage("publish"):
        publish_build(store, name, build_id, ds=ds, report=report)
        pruned = prune_builds(store, name, settings.index.keep_builds)
    return {
        "build_id": build_id,
        "published": True,
        "previous": live,
        "vectors": report.vector_count,
        "recall": report.recall,
        "pruned": pruned,
        "current_uri": store.uri(f"indexes/{name}/CURRENT"),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = job_parser("Validate the day's index build and point indexes/<name>/CURRENT at it.")
    parser.add_argument("--build-id", default=None,
                        help="publish this build (default: the newest build created for --ds)")
    args = parser.parse_args(argv)
    ctx = JobContext.start("publish_index", args)
    result = run(ctx.settings, args.ds, timer=ctx.timer, build_id=args.build_id)
    ctx.finish(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
