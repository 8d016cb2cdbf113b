"""The data-quality gate: a day whose quarantine share is too high stops before training and publishing.

:func:`quarantine_gate` is the decision (pure Python); :func:`run` counts a day's accepted and
quarantined records with Spark and applies it (what ``jobs/quality_gate.py`` runs). Spark is
imported inside :func:`run` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visearch.core.jobrun import check_ds

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from visearch.core.config import Settings
    from visearch.core.timing import StageTimer


class QualityGateError(RuntimeError):
    """Raised when a day's inputs are too broken to train or publish on."""


@dataclass(frozen=True)
class GateResult:
    """Counts behind the gate's decision."""

    accepted: int
    quarantined: int
    share: float
    threshold: float
    passed: bool


def quarantine_gate(accepted: int, quarantined: int, threshold: float) -> GateResult:
    """Decide whether a day passes: quarantined / (accepted + quarantined) <= threshold.

    A day with no records at all passes (a quiet day is not a broken one).

    Raises:
        ValueError: for negative counts or a threshold outside [0, 1].
    """
    if accepted < 0 or quarantined < 0:
        raise ValueError(f"counts must be >= 0, got accepted={accepted} quarantined={quarantined}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    total = accepted + quarantined
    share = quarantined / total if total else 0.0
    return GateResult(accepted, quarantined, share, threshold, share <= threshold)


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None,
        timer: StageTimer | None = None) -> dict[str, Any]:
    """Count the day's accepted and quarantined records and apply the gate.

    Accepted: the day's bronze.images_raw rows (less those whose image was rejected, which are
    quarantined too) and silver.interactions events; quarantined: the day's silver.quarantine rows.

    Returns:
        ``{"ds", "accepted", "quarantined", "share", "threshold", "reasons", "passed"}``.

    Raises:
        ValueError: when ``ds`` is not ``YYYY-MM-DD``.
        QualityGateError: when the quarantine share exceeds ``settings.ingest.quarantine_share_max``.
    """
    from pyspark.sql import functions as F

    from visearch.core import tables as T
    from visearch.core.spark import get_spark
    from visearch.core.timing import StageTimer

    check_ds(ds)
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
