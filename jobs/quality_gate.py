"""Data-quality gate for a day: fail the run when the quarantine share is above the threshold.

Try: python -m jobs.quality_gate --ds 2026-01-01
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import JobContext, job_parser
from visearch.core.timing import StageTimer
from visearch.ingest.quality_gate import QualityGateError, quarantine_gate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None,
        timer: StageTimer | None = None) -> dict[str, Any]:
    """Count the day's accepted and quarantined records and apply the gate.

    Raises:
        QualityGateError: when the quarantine share exceeds ``settings.ingest.quarantine_share_max``.
    """
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark

    spark = spark or get_spark(settings, "visearch-quality-gate")
    timer = timer or StageTimer("quality_gate")
    with timer.stage("count"):
        raw = T.read(spark, settings, T.BRONZE_IMAGES_RAW).where(F.col("ds") == ds).count()
        events = T.read(spark, settings, T.SILVER_INTERACTIONS).where(F.col("ds") == ds).count()
        quarantine = T.read(spark, settings, T.SILVER_QUARANTINE).where(F.col("ds") == ds)
        by_reason = {r["reason"]: int(r["n"]) for r in
                     quarantine.groupBy("reason").agg(F.count("*").alias("n")).collect()}
        # Image rejects also have a bronze row (the manifest line parsed); don't count them twice.
        image_rejects = quarantine.where(F.col("source") == "image").count()
    quarantined = sum(by_reason.values())
    accepted = max(raw - image_rejects, 0) + events
    result = quarantine_gate(accepted, quarantined, settings.ingest.quarantine_share_max)
    summary = {"ds": ds, "accepted": accepted, "quarantined": quarantined, "share": round(result.share, 4),
               "threshold": result.threshold, "reasons": by_reason, "passed": result.passed}
    if not result.passed:
        raise QualityGateError(
            f"quarantine share {result.share:.1%} for {ds} is above {result.threshold:.1%}: {summary}"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = job_parser("Fail the day when too many records were quarantined (before training/publishing).")
    args = parser.parse_args(argv)
    ctx = JobContext.start("quality_gate", args)
    ctx.finish(run(ctx.settings, args.ds, timer=ctx.timer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
