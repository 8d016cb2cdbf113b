"""The quality gate: the decision on counts, and the day's counts read from the tables (Spark)."""

from __future__ import annotations

from typing import Any

import pytest

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.ingest.quality_gate import QualityGateError, quarantine_gate, run

DS = "2026-01-02"


def test_quarantine_gate__share_at_the_threshold_passes() -> None:
    result = quarantine_gate(accepted=80, quarantined=20, threshold=0.2)
    assert result.share == pytest.approx(0.2) and result.passed
    assert not quarantine_gate(accepted=79, quarantined=21, threshold=0.2).passed


def test_quarantine_gate__a_day_without_records_passes() -> None:
    result = quarantine_gate(0, 0, 0.0)
    assert result.share == 0.0 and result.passed


@pytest.mark.parametrize(("accepted", "quarantined", "threshold", "match"), [
    (-1, 0, 0.2, "accepted=-1"),
    (0, -2, 0.2, "quarantined=-2"),
    (1, 1, 1.5, "1.5"),
])
def test_quarantine_gate__rejects_bad_arguments(accepted: int, quarantined: int, threshold: float,
                                                match: str) -> None:
    with pytest.raises(ValueError, match=match):
        quarantine_gate(accepted, quarantined, threshold)


def _write_day(spark: Any, settings: Settings, *, images: int, image_rejects: int, events: int,
               line_rejects: int) -> None:
    """``images`` bronze rows (``image_rejects`` of them also quarantined as images), ``events``
    interactions and ``line_rejects`` quarantined manifest lines, all on ``DS``."""
    bronze = [(DS, f"img{i}", f"file:///x/img{i}.jpg", "o", None, [], False, "upsert", i, "uploads.jsonl")
              for i in range(images)]
    interactions = [(f"e{i}", "u", "s", "img0", "img1", 1, "impression", None, 0, True, DS) for i in range(events)]
    quarantine = [(DS, "image", f"img{i}", "truncated", "", "") for i in range(image_rejects)]
    quarantine += [(DS, "images_manifest", f"line:uploads.jsonl:{i}", "malformed_json", "", "")
                   for i in range(line_rejects)]
    for table, rows in ((T.BRONZE_IMAGES_RAW, bronze), (T.SILVER_INTERACTIONS, interactions),
                        (T.SILVER_QUARANTINE, quarantine)):
        T.replace_partition(spark, settings, table, spark.createDataFrame(rows, table.schema), f"ds = '{DS}'")


@pytest.mark.spark
def test_run__counts_image_rejects_once_and_passes(spark: Any, settings: Settings) -> None:
    _write_day(spark, settings, images=10, image_rejects=2, events=12, line_rejects=1)
    summary = run(settings, DS, spark=spark)
    # Accepted: 10 bronze rows less the 2 rejected images, plus 12 events; quarantined: 3.
    assert (summary["accepted"], summary["quarantined"], summary["passed"]) == (20, 3, True)
    assert summary["reasons"] == {"truncated": 2, "malformed_json": 1}
    assert summary["share"] == pytest.approx(3 / 23, abs=1e-4)


@pytest.mark.spark
def test_run__too_many_rejects_fail_the_day(spark: Any, settings: Settings) -> None:
    _write_day(spark, settings, images=4, image_rejects=3, events=0, line_rejects=5)
    with pytest.raises(QualityGateError, match=DS):
        run(settings, DS, spark=spark)


def test_run__rejects_a_bad_ds(settings: Settings) -> None:
    with pytest.raises(ValueError, match="2026-1-2"):
        run(settings, "2026-1-2")  # checked before a Spark session is made
