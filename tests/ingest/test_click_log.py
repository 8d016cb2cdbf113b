"""The ingest_interactions job (:mod:`visearch.ingest.click_log`) on a hand-written click log:
bad lines counted, dedupe, unknown images.

Day 1: five good events (one about an image the lake does not know), an event delivered twice
(the copy with the earlier ``ts`` is kept even though it comes later in the file), malformed
JSON, a missing field, a wrong type, a negative position, a bad timestamp, an unknown event
type, and two broken lines sharing one event_id. Day 2: a redelivery of a day-1 event and one
new event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from visearch.core import tables as T
from visearch.core.config import Settings, load_settings
from visearch.ingest import click_log

DAY1, DAY2 = "2026-01-01", "2026-01-02"
KNOWN_IMAGES = ("img-1", "img-2", "img-3", "img-del")


def event(event_id: str, *, query: str = "img-1", image: str = "img-2", position: int = 1,
          kind: str = "impression", ts: str = "2026-01-01T10:00:00Z", dwell: int = 0, **extra: Any) -> str:
    record = {"event_id": event_id, "user_id": "u1", "session_id": "s1", "query_image_id": query,
              "image_id": image, "position": position, "event_type": kind, "ts": ts, "dwell_ms": dwell,
              **extra}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def write_clicks(landing: Path, ds: str, name: str, lines: list[str]) -> None:
    folder = landing / "clicks" / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


def seed_images(spark: Any, settings: Settings) -> None:
    """silver.images with three live images and a deleted one (deleted images are known)."""
    rows = [(i, f"file:///x/{i}.jpg", "o", None, [], "0" * 64, 8, 8, "JPEG", "0" * 16, False,
             "deleted" if i == "img-del" else "ok", DAY1) for i in KNOWN_IMAGES]
    T.merge(spark, settings, T.SILVER_IMAGES, spark.createDataFrame(rows, T.SILVER_IMAGES.schema))


def build_landing(landing: Path) -> None:
    day1 = [
        event("e1"),
        event("e2", kind="click", dwell=1200),
        event("e3", image="img-unknown", position=2),  # about an image the lake does not know yet
        event("e4", query="img-3", image="img-del", position=3),  # a deleted image is known
        event("dup", position=4, ts="2026-01-01T10:05:00Z"),
        event("dup", position=5, ts="2026-01-01T10:01:00Z"),  # earlier ts, later line: this one is kept
        '{"event_id": "bad-json", ',
        event("no-user", user_id=None),
        event("typed", position="2"),
        event("negative", position=-1),
        event("when", ts="not a time"),
        event("kind", kind="hover"),
        event("twice-bad", position=0),
        event("twice-bad", position=-3),
        "",
    ]
    write_clicks(landing, DAY1, "events.jsonl", day1)
    write_clicks(landing, DAY1, "events-2.jsonl", [event("e5", kind="click", dwell=300)])
    write_clicks(landing, DAY2, "events.jsonl", [
        event("e1", ts="2026-01-02T00:00:01Z"),  # redelivered across midnight
        event("e10", ts="2026-01-02T10:00:00Z"),
    ])


def rows(spark: Any, settings: Settings, table: T.Table, ds: str | None = None) -> list[dict[str, Any]]:
    frame = T.read(spark, settings, table)
    if ds:
        frame = frame.where(f"ds = '{ds}'")
    return sorted((r.asDict() for r in frame.collect()),
                  key=lambda r: json.dumps(r, default=str, sort_keys=True))


@pytest.fixture(scope="module")
def runs(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Day 1, day 1 again, day 2, day 2 again, day 1 again after day 2; results and table contents."""
    root = tmp_path_factory.mktemp("ingest_interactions")
    settings = load_settings(env={"VISEARCH_LANDING": str(root / "landing"),
                                  "VISEARCH_LAKE": str(root / "lake"),
                                  "VISEARCH_ARTIFACTS": str(root / "artifacts")})
    build_landing(root / "landing")
    seed_images(spark, settings)
    out: dict[str, Any] = {"settings": settings}
    for step, ds in (("day1", DAY1), ("day1_again", DAY1), ("day2", DAY2), ("day2_again", DAY2),
                     ("day1_after_day2", DAY1)):
        out[step] = {
            "result": click_log.run(settings, ds, spark=spark),
            "interactions": rows(spark, settings, T.SILVER_INTERACTIONS),
            "quarantine": rows(spark, settings, T.SILVER_QUARANTINE),
        }
    return out


pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_ingest_interactions__day1_counts(runs: dict[str, Any]) -> None:
    result = runs["day1"]["result"]
    assert (result["files"], result["lines"]) == (2, 15)
    assert (result["events"], result["impressions"], result["clicks"]) == (6, 4, 2)
    assert result["unknown_image_events"] == 1
    assert result["quarantined"] == {
        "duplicate_event_id": 1, "malformed_json": 1, "missing_field:user_id": 1, "wrong_type:position": 1,
        "bad_value:position": 3, "bad_timestamp": 1, "bad_value:event_type": 1,
    }


def test_ingest_interactions__every_good_event_arrives(runs: dict[str, Any]) -> None:
    events = {r["event_id"]: r for r in runs["day1"]["interactions"]}
    assert set(events) == {"e1", "e2", "e3", "e4", "e5", "dup"}
    assert events["e2"]["dwell_ms"] == 1200 and events["e2"]["event_type"] == "click"
    assert {r["ds"] for r in events.values()} == {DAY1}


def test_ingest_interactions__duplicate_keeps_earliest_ts(runs: dict[str, Any]) -> None:
    events = {r["event_id"]: r for r in runs["day1"]["interactions"]}
    assert events["dup"]["position"] == 5
    quarantined = [q for q in runs["day1"]["quarantine"] if q["reason"] == "duplicate_event_id"]
    assert [q["record_id"] for q in quarantined] == ["dup"]
    assert '"position": 4' in quarantined[0]["raw"]


def test_ingest_interactions__unknown_images_kept_and_flagged(runs: dict[str, Any]) -> None:
    known = {r["event_id"]: r["known_images"] for r in runs["day1"]["interactions"]}
    assert known == {"e1": True, "e2": True, "e3": False, "e4": True, "e5": True, "dup": True}


def test_ingest_interactions__quarantine_record_ids(runs: dict[str, Any]) -> None:
    quarantine = runs["day1"]["quarantine"]
    ids = {q["record_id"]: q["reason"] for q in quarantine}
    assert len(ids) == len(quarantine)  # (ds, source, record_id) is a key
    assert ids["negative"] == "bad_value:position"
    assert ids["line:events.jsonl:7"] == "malformed_json"  # no event_id to name it by
    assert ids["twice-bad@line:events.jsonl:13"] == "bad_value:position"
    assert ids["twice-bad@line:events.jsonl:14"] == "bad_value:position"
    assert {q["source"] for q in quarantine} == {"interactions"}


def test_ingest_interactions__rerun_same_day_is_identical(runs: dict[str, Any]) -> None:
    for table in ("interactions", "quarantine"):
        assert runs["day1_again"][table] == runs["day1"][table]
        assert runs["day2_again"][table] == runs["day2"][table]


def test_ingest_interactions__redelivery_next_day_quarantined(runs: dict[str, Any]) -> None:
    result = runs["day2"]["result"]
    assert (result["events"], result["duplicates"]) == (1, 1)
    day2 = [r for r in runs["day2"]["interactions"] if r["ds"] == DAY2]
    assert [r["event_id"] for r in day2] == ["e10"]
    redelivered = [q for q in runs["day2"]["quarantine"] if q["ds"] == DAY2]
    assert [(q["record_id"], q["reason"]) for q in redelivered] == [("e1", "duplicate_event_id")]
    assert "ds=2026-01-01" in redelivered[0]["detail"]


def test_ingest_interactions__rerun_of_earlier_day_ignores_later_days(runs: dict[str, Any]) -> None:
    assert runs["day1_after_day2"]["interactions"] == runs["day2"]["interactions"]
    assert runs["day1_after_day2"]["quarantine"] == runs["day2"]["quarantine"]


def test_ingest_interactions__day_without_log_is_empty(spark: Any, settings: Settings) -> None:
    result = click_log.run(settings, "2026-02-01", spark=spark)
    assert (result["files"], result["lines"], result["events"], result["quarantined_total"]) == (0, 0, 0, 0)
    assert T.read(spark, settings, T.SILVER_INTERACTIONS).count() == 0


def test_ingest_interactions__rejects_bad_arguments(spark: Any, settings: Settings) -> None:
    with pytest.raises(ValueError, match="20260101"):
        click_log.run(settings, "20260101", spark=spark)
    with pytest.raises(ValueError, match="-1"):
        click_log.run(settings, DAY1, spark=spark, lookback_days=-1)
