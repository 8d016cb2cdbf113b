"""Click-event schema validation: the good event, and every reason a line is refused."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from visearch.ingest.interactions import Event, event_id_of, parse_event
from visearch.ingest.validation import Rejection


def line(**fields: Any) -> str:
    base = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "query_image_id": "q1",
            "image_id": "i1", "position": 3, "event_type": "click", "ts": "2026-01-01T08:30:00Z",
            "dwell_ms": 1500}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_parse_event__good_click() -> None:
    assert parse_event(line()) == Event(
        event_id="e1", user_id="u1", session_id="s1", query_image_id="q1", image_id="i1", position=3,
        event_type="click", ts=dt.datetime(2026, 1, 1, 8, 30, tzinfo=dt.UTC), dwell_ms=1500,
    )


def test_parse_event__impression_without_dwell_gets_zero() -> None:
    event = parse_event(line(event_type="impression", dwell_ms=...))
    assert isinstance(event, Event) and event.dwell_ms == 0


def test_parse_event__fractional_seconds_and_offset_normalised_to_utc() -> None:
    event = parse_event(line(ts="2026-01-01T09:30:00.250+01:00"))
    assert isinstance(event, Event)
    assert event.ts == dt.datetime(2026, 1, 1, 8, 30, 0, 250000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"event_id": "e1", ', "malformed_json"),
        ("null", "malformed_json"),
        ('"just a string"', "malformed_json"),
        (line(event_id=...), "missing_field:event_id"),
        (line(user_id=None), "missing_field:user_id"),
        (line(session_id=...), "missing_field:session_id"),
        (line(image_id=...), "missing_field:image_id"),
        (line(position=...), "missing_field:position"),
        (line(ts=...), "missing_field:ts"),
        (line(dwell_ms=...), "missing_field:dwell_ms"),  # a click needs its dwell time
        (line(query_image_id=42), "wrong_type:query_image_id"),
        (line(position="3"), "wrong_type:position"),
        (line(position=3.0), "wrong_type:position"),
        (line(position=True), "wrong_type:position"),
        (line(dwell_ms="long"), "wrong_type:dwell_ms"),
        (line(ts=1767255000), "wrong_type:ts"),
        (line(position=-2), "bad_value:position"),
        (line(position=0), "bad_value:position"),
        (line(position=2**40), "bad_value:position"),
        (line(event_type="hover"), "bad_value:event_type"),
        (line(dwell_ms=-5), "bad_value:dwell_ms"),
        (line(event_id=""), "bad_value:event_id"),
        (line(ts="2026-13-01T00:00:00Z"), "bad_timestamp"),
        (line(ts="last tuesday"), "bad_timestamp"),
    ],
)
def test_parse_event__rejections(text: str, expected: str) -> None:
    result = parse_event(text)
    assert isinstance(result, Rejection), result
    assert result.reason == expected
    assert result.detail


def test_parse_event__first_problem_in_field_order_is_reported() -> None:
    result = parse_event(line(user_id=..., position=-1))
    assert isinstance(result, Rejection) and result.reason == "missing_field:user_id"


def test_event_id_of__names_rejected_lines_when_possible() -> None:
    assert event_id_of(line(position=-1)) == "e1"
    assert event_id_of("{broken") is None
    assert event_id_of(line(event_id=17)) is None
