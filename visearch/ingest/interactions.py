"""Schema validation of click-log events (one JSON object a line), pure Python.

An event is an impression or a click of one search result::

    {"event_id", "user_id", "session_id", "query_image_id", "image_id",
     "position" (int >= 1), "event_type": "impression" | "click", "ts" (ISO-8601),
     "dwell_ms" (int >= 0; required for clicks, 0 when absent on an impression)}

:func:`parse_event` returns an :class:`Event` or a :class:`~visearch.ingest.validation.Rejection` whose
reason is one of ``malformed_json``, ``missing_field:<name>``, ``wrong_type:<name>``,
``bad_value:<name>`` (empty id, position < 1, unknown event_type, negative dwell) or
``bad_timestamp``. Fields are checked in the order above; the first problem is reported.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from visearch.ingest.validation import Fields, RecordRejected, Rejection, load_json_object

log = logging.getLogger(__name__)

EVENT_TYPES = ("impression", "click")
MAX_POSITION = 2**31 - 1  # the table column is INT
MAX_DWELL_MS = 2**63 - 1  # BIGINT
DUPLICATE_EVENT_ID = "duplicate_event_id"


@dataclass(frozen=True)
class Event:
    """One valid impression or click; ``ts`` is an aware UTC datetime."""

    event_id: str
    user_id: str
    session_id: str
    query_image_id: str
    image_id: str
    position: int
    event_type: str
    ts: dt.datetime
    dwell_ms: int


def parse_event(line: str) -> Event | Rejection:
    """Validate one click-log line (see the module docstring for the schema and reasons)."""
    try:
        fields = Fields(load_json_object(line))
        event_id = fields.string("event_id")
        user_id = fields.string("user_id")
        session_id = fields.string("session_id")
        query_image_id = fields.string("query_image_id")
        image_id = fields.string("image_id")
        position = fields.integer("position", minimum=1, maximum=MAX_POSITION)
        event_type = fields.choice("event_type", EVENT_TYPES)
        ts = fields.timestamp("ts")
        if event_type == "click" or fields.has("dwell_ms"):
            dwell_ms = fields.integer("dwell_ms", minimum=0, maximum=MAX_DWELL_MS)
        else:
            dwell_ms = 0
    except RecordRejected as exc:
        return exc.rejection
    return Event(event_id=event_id, user_id=user_id, session_id=session_id,
                 query_image_id=query_image_id, image_id=image_id, position=position,
                 event_type=event_type, ts=ts, dwell_ms=dwell_ms)


def event_id_of(line: str) -> str | None:
    """The event_id of a line when it can be read at all (to name a rejected record), else None."""
    try:
        fields = Fields(load_json_object(line))
        return fields.string("event_id")
    except RecordRejected:
        return None
