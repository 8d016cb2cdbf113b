"""Simulated users of a demo corpus: search sessions, what they are shown, what they click.

A user queries an image and is shown ~10 results: some of the query's group, maybe a composition
holding its item, some of its category, the rest random, **in a uniformly random order** (a
randomised experiment, so that ``CTR(p) / CTR(1)`` estimates the examination propensity). Each
shown result is an impression; it is clicked with probability ``examination(p) * relevance(grade)``,
where ``examination(p) = (1/p) ** eta`` (:func:`propensities`) and the relevance of a grade is
:data:`RELEVANCE_BY_GRADE`. Dwell time is longer for relevant clicks. :func:`plant_bad_clicks`
adds the deliberately bad click-log lines (:data:`BAD_CLICK_KINDS`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from visearch.demo.judgments import CategoryPools, grade, pick
from visearch.demo.streams import STREAM_BAD, STREAM_CLICKS, stream_rng
from visearch.demo.uploads import DemoRun, PlannedImage, insert_bad

# Click model: probability that an examined result of a given grade is clicked.
RELEVANCE_BY_GRADE: dict[int, float] = {5: 0.9, 4: 0.7, 3: 0.5, 2: 0.25, 0: 0.04}  # grade() never gives 1
# The bad click-log lines planted, in the order they are cycled through, with the quarantine reason
# we expect ingestion to give (a suggestion; ``kind`` is the fact).
BAD_CLICK_KINDS: dict[str, str] = {
    "malformed_json": "malformed_json",
    "missing_field": "missing_field",
    "negative_position": "invalid_position",
    "duplicate_event_id": "duplicate_event_id",
    "unknown_image": "unknown_image",
}


def propensities(positions: int, eta: float) -> dict[int, float]:
    """The planted examination probability of each position: ``(1/p) ** eta`` for p = 1..positions."""
    return {p: float((1.0 / p) ** eta) for p in range(1, positions + 1)}


def _candidates(query: PlannedImage, visible: list[PlannedImage], by_item: dict[int, list[PlannedImage]],
                categories: CategoryPools, rng: np.random.Generator, k: int) -> list[PlannedImage]:
    """A result list for ``query``: some of its group, a composition holding its item, some of its
    category, the rest random (order decided by the caller)."""
    chosen: dict[str, PlannedImage] = {query.image_id: query}

    def take(pool: Sequence[PlannedImage], n: int) -> None:
        need = max(0, min(n, k + 1 - len(chosen)))  # k results besides the query
        for p in pick(pool, need, rng, chosen):
            chosen[p.image_id] = p

    same = [p for it in query.items for p in by_item[it]]
    take([p for p in same if not p.is_composition], int(rng.integers(1, 5)))
    take([p for p in same if p.is_composition], 1)
    take(categories.of(query.items), 2)
    take(visible, k)
    del chosen[query.image_id]
    return list(chosen.values())


_EVENT_KEYS = ("event_id", "user_id", "session_id", "query_image_id", "image_id", "position", "event_type",
               "ts", "dwell_ms")


def simulate_day(run: DemoRun, day: int, visible: list[PlannedImage], n_sessions: int, k: int,
                 prop: dict[int, float], n_users: int) -> list[dict[str, Any]]:
    """The good click-log events of one day, in time order, from ``n_sessions`` search sessions."""
    crng = stream_rng(run.seed, STREAM_CLICKS, day)
    ds_compact = run.ds_list[day].replace("-", "")
    by_item: dict[int, list[PlannedImage]] = defaultdict(list)
    for p in visible:
        for it in p.items:
            by_item[it].append(p)
    categories = CategoryPools(visible, run.specs)
    queryable = [p for p in visible if not p.is_composition and len(by_item[p.items[0]]) >= 2]
    events: list[tuple[int, dict[str, Any]]] = []  # (ms of day, event)
    for s in range(n_sessions if len(visible) >= 2 else 0):
        if queryable and crng.uniform() < 0.85:
            query = queryable[int(crng.integers(0, len(queryable)))]
        else:
            query = visible[int(crng.integers(0, len(visible)))]
        shown = _candidates(query, visible, by_item, categories, crng, k)
        crng.shuffle(shown)  # type: ignore[arg-type]  # random order: position independent of relevance
        start_ms = int(crng.integers(43_200_000, 85_800_000))
        user = f"user-{int(crng.integers(0, n_users)):04d}"
        session = f"s-{ds_compact}-{s:05d}"
        for position, cand in enumerate(shown, start=1):
            g = grade(query.items, cand.items, run.specs)
            base = {"user_id": user, "session_id": session, "query_image_id": query.image_id,
                    "image_id": cand.image_id, "position": position}
            events.append((start_ms, {**base, "event_type": "impression", "dwell_ms": 0}))
            if crng.uniform() < prop[position] * RELEVANCE_BY_GRADE[g]:
                mean = 15_000.0 if g >= 4 else 3_000.0
                dwell = int(min(600_000, crng.lognormal(np.log(mean), 0.5)))
                click_ms = start_ms + 1500 * position + int(crng.integers(0, 3000))
                events.append((click_ms, {**base, "event_type": "click", "dwell_ms": dwell}))
    events.sort(key=lambda e: e[0])  # stable: a session's events keep their order
    day_start = dt.datetime.combine(run.dates[day], dt.time(0, 0), tzinfo=dt.UTC)
    out: list[dict[str, Any]] = []
    for n, (ms, ev) in enumerate(events):
        stamp = day_start + dt.timedelta(milliseconds=ms)
        ev = {**ev, "event_id": f"ev-{ds_compact}-{n:07d}",
              "ts": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"}
        out.append({key: ev[key] for key in _EVENT_KEYS})
    return out


def plant_bad_clicks(run: DemoRun, day: int, records: list[dict[str, Any]], lines: list[str],
                     bad_numbers: list[int]) -> list[dict[str, Any]]:
    """Insert the bad click lines numbered ``bad_numbers`` into ``lines``; return their records."""
    kinds = list(BAD_CLICK_KINDS)
    markers: list[dict[str, Any] | None] = [None] * len(lines)
    for b in bad_numbers:
        kind = kinds[b % len(kinds)]
        brng = stream_rng(run.seed, STREAM_BAD, 2, b)
        template = dict(records[int(brng.integers(0, len(records)))])
        template["event_id"] = f"ev-bad-{b:04d}"
        record_id: str | None = template["event_id"]
        lo = 0
        if kind == "malformed_json":
            text, record_id = json.dumps(template)[:-20], None
        elif kind == "missing_field":
            del template["event_type"]
            text = json.dumps(template)
        elif kind == "negative_position":
            template["position"] = -int(brng.integers(1, 4))
            text = json.dumps(template)
        elif kind == "unknown_image":
            template.update(image_id=f"demo-unknown-{b:04d}", event_type="impression", dwell_ms=0)
            text = json.dumps(template)
        elif kind == "duplicate_event_id":  # the exact line of an earlier good event, again
            i = int(brng.integers(0, len(lines)))
            while markers[i] is not None:
                i = (i + 1) % len(lines)
            text = lines[i]
            record_id = json.loads(text)["event_id"]
            lo = i + 1
        else:
            raise ValueError(f"unknown bad click kind {kind!r}")
        pos = insert_bad(lines, text, lo, int(brng.integers(0, 1 << 30)))
        markers.insert(pos, {"source": "clicks", "ds": run.ds_list[day], "record_id": record_id, "kind": kind,
                             "expected_reason": BAD_CLICK_KINDS[kind], "path": None})
    return [{**m, "line": n} for n, m in enumerate(markers, start=1) if m is not None]

