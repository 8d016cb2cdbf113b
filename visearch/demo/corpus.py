"""The procedural demo corpus: real image files with ground truth, manifests, click logs, judgments.

``visearch demo-data --images N --days D --out DIR`` renders ``N`` good images with Pillow and numpy
and writes a complete landing folder (layout in ``DESIGN.md`` and the brief):

- ``images/ds=YYYY-MM-DD/<image_id>.<ext>``: mostly JPEG, some PNG, a few WebP and GIF.
  Each *item* (one procedurally drawn object: a shape family, a two-colour palette and a texture)
  appears as several *variants* (rotation, scale, position, colour shift, background, occlusion,
  random crop); a *group* is all variants of one item. Items belong to shape-family *categories*.
  A few images are *compositions*: two different items side by side (left and right halves of a
  ``2*size x size`` image), with both items and their pixel boxes in the truth (for crop queries).
- ``manifests/ds=…/uploads.jsonl``: the day's uploads; from the second day on also deletes,
  ``set_private``, ``set_public`` (of an image uploaded private) and upserts that replace an
  image's file (same id, a new variant of the same item, new file).
- ``clicks/ds=…/events.jsonl``: simulated search sessions. A user queries an image and is shown
  ~10 results: some of the query's group, maybe a composition holding its item, some of its
  category, the rest random, **in a uniformly random order** (a randomised experiment, so that
  ``CTR(p) / CTR(1)`` estimates the examination propensity). Each shown result is an impression;
  it is clicked with probability ``examination(p) * relevance(grade)``, where
  ``examination(p) = (1/p) ** eta``. Dwell time is longer for relevant clicks.
- ``judgments/judgments.csv``: graded relevance 0–5 (set ``demo``) of candidates for a sample of
  query images; ``labels/labels.csv``: a few human-label positives.
- ``demo_truth.json``: the ground truth (structure in :func:`generate_demo`).
- Deliberately bad inputs (truncated JPEG, zero-byte file, text named ``.jpg``, a PNG declaring
  100000x100000 pixels, a missing file, a duplicate image_id, malformed/missing-field/wrong-type
  manifest lines; malformed, missing-field, negative-position, duplicate and unknown-image click
  events) and legit-but-unusual images that must be accepted (CMYK JPEG, 16-bit PNG, palette PNG
  with transparency, animated GIF, EXIF-rotated JPEG), all listed in the truth.

``N`` counts the good images (those in ``truth["images"]``); bad records come on top of it.
Every random choice comes from a ``numpy`` generator keyed on ``(seed, stream, index)`` and no
clock is read, so one seed gives byte-identical files.

The pieces, one module each: :mod:`~visearch.demo.rendering` (items and image files),
:mod:`~visearch.demo.uploads` (the planned images, actions and upload manifests),
:mod:`~visearch.demo.simulation` (search sessions and clicks), :mod:`~visearch.demo.judgments`
(the graded judged set and labels), :mod:`~visearch.demo.streams` (the seeded random streams) and
:mod:`~visearch.demo.sink` (where files go). This module ties them together: :func:`generate_demo`
and the ``visearch demo-data`` command.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visearch.core.config import load_settings
from visearch.core.jobrun import check_ds
from visearch.demo.judgments import judgments_and_labels
from visearch.demo.rendering import CATEGORIES, UNUSUAL_KINDS, UNUSUAL_MODE, ItemSpec, make_item
from visearch.demo.simulation import (
    BAD_CLICK_KINDS,
    RELEVANCE_BY_GRADE,
    plant_bad_clicks,
    propensities,
    simulate_day,
)
from visearch.demo.sink import DemoSink
from visearch.demo.streams import STREAM_BAD, STREAM_JUDGE, stream_rng
from visearch.demo.uploads import (
    BAD_MANIFEST_KINDS,
    DemoRun,
    PlannedImage,
    apply_actions,
    plan_images,
    render_all,
    write_manifests,
)

log = logging.getLogger(__name__)

TRUTH_VERSION = 1


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate_demo` wrote."""

    out: str
    images: int
    items: int
    compositions: int
    days: int
    per_day: dict[str, dict[str, int]]
    bad_manifest_records: int
    bad_click_records: int
    unusual_images: int
    sessions: int
    impressions: int
    clicks: int
    judgments: int
    labels: int
    seconds: float
    bad_kinds: dict[str, int] = field(default_factory=dict)  # "manifest:png_bomb" -> count

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able)."""
        return dict(self.__dict__)


def _write_csv(sink: DemoSink, key: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    sink.put(key, buf.getvalue().encode())


def generate_demo(
    out: str | Path,
    images: int,
    days: int,
    seed: int = 0,
    size: int = 64,
    start_ds: str = "2026-01-01",
    bad_share: float = 0.02,
    *,
    sessions_per_day: int | None = None,
    results_per_query: int = 10,
    eta: float = 1.0,
    progress: bool | None = None,
) -> DemoSummary:
    """Write the demo landing folder at ``out`` (a local path, ``file://`` or ``s3://`` URI).

    ``images`` good images over ``days`` days; ``sessions_per_day`` search sessions a day
    (default ``max(10, 2 * images // days)``); shown lists of ``results_per_query``; click
    examination ``(1/p) ** eta``; bad records: ``max(9, bad_share * images)`` manifest lines and
    ``max(5, bad_share * sessions)`` click lines (none when ``bad_share`` is 0). A previous demo at
    ``out`` is replaced; any other non-empty destination is refused. ``progress``: tqdm bar
    (``None``: only on a terminal).

    ``demo_truth.json`` holds::

        {"version": 1, "seed", "size", "start_ds", "days", "ds_list": [ds…],
         "images": {image_id: {"item": int|null, "category": str|null, "pattern": str|null,
                    "variant": int|null, "day": int, "ds": str, "format": "JPEG"|"PNG"|"WEBP"|"GIF",
                    "mode": Pillow mode as opened, "width", "height" (as displayed, after EXIF),
                    "unusual": kind|null, "composition": [{"item", "category", "box": [x, y, w, h]}]|null,
                    "private": bool, "deleted": bool (final state), "uploaded_private": bool,
                    "replaced_ds": ds|null, "path": key under out, "uri": final file URI,
                    "owner_id", "history": [{"ds", "action", "is_private"}]}},
         "items": {item: {"category", "pattern"}}, "groups": {item: [image_id…]},
         "categories": [...], "propensity": {"1": 1.0, "2": 0.5, …}, "eta": float,
         "click_model": {...}, "grades": {...},
         "bad_records": [{"source": "manifest"|"clicks", "ds", "line" (1-based), "record_id":
                          image_id|event_id|null, "kind", "expected_reason", "path": key|null}],
         "unusual_images": [{"image_id", "kind", "format", "mode"}],
         "counts": {ds: {...}}, "totals": {...}}

    Raises:
        ValueError: for a bad argument (the value is in the message) or a non-empty destination
            that holds no previous demo.
    """
    started = time.perf_counter()
    if images < 12:
        raise ValueError(f"images must be at least 12 (items need variants), got {images}")
    if days < 1 or days > images // 2:
        raise ValueError(f"days must be between 1 and images/2 ({images // 2}), got {days}")
    if not 16 <= size <= 1024:
        raise ValueError(f"size must be between 16 and 1024 pixels, got {size}")
    if not 0.0 <= bad_share < 0.5:
        raise ValueError(f"bad_share must be in [0, 0.5), got {bad_share}")
    if results_per_query < 2:
        raise ValueError(f"results_per_query must be at least 2, got {results_per_query}")
    if sessions_per_day is not None and sessions_per_day < 1:
        raise ValueError(f"sessions_per_day must be at least 1, got {sessions_per_day}")
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta}")
    try:
        start = dt.date.fromisoformat(check_ds(start_ds))
    except ValueError as exc:
        raise ValueError(f"start_ds must be a YYYY-MM-DD date, got {start_ds!r}") from exc
    dates = [start + dt.timedelta(days=d) for d in range(days)]
    n_sessions = sessions_per_day if sessions_per_day is not None else max(10, 2 * images // days)
    n_items = max(2, (images - max(2, round(0.08 * images))) // 5)
    sink = DemoSink(out)
    sink.prepare()
    specs = {i: make_item(seed, i) for i in range(n_items)}
    run = DemoRun(seed=seed, size=size, ds_list=[d.isoformat() for d in dates], dates=dates, specs=specs,
                  sink=sink, n_owners=max(3, images // 20))

    planned = plan_images(run, images)
    render_all(run, planned, progress)
    by_id = {p.image_id: p for p in planned}
    day_records, states = apply_actions(run, planned, images)
    n_bad = 0 if bad_share == 0 else max(len(BAD_MANIFEST_KINDS), round(bad_share * images))
    bad_records, manifest_lines = write_manifests(run, day_records, n_bad)

    prop = propensities(results_per_query, eta)
    n_bad_clicks = 0 if bad_share == 0 else max(len(BAD_CLICK_KINDS), round(bad_share * n_sessions * days))
    visible_by_day = [sorted((by_id[i] for i, (priv, dele) in states[day].items() if not priv and not dele),
                             key=lambda p: p.serial) for day in range(days)]
    click_days = [day for day in range(days) if len(visible_by_day[day]) >= 2]  # days with sessions
    bad_click_days: dict[int, list[int]] = defaultdict(list)
    for b in range(n_bad_clicks if click_days else 0):
        bad_click_days[click_days[int(stream_rng(seed, STREAM_BAD, 1, b).integers(0, len(click_days)))]].append(b)
    counts: dict[str, dict[str, int]] = {}
    for day, ds in enumerate(run.ds_list):
        records = simulate_day(run, day, visible_by_day[day], n_sessions, results_per_query, prop,
                               max(5, images // 10))
        lines = [json.dumps(r) for r in records]
        day_bad = plant_bad_clicks(run, day, records, lines, bad_click_days.get(day, []))
        bad_records += day_bad
        sink.put(f"clicks/ds={ds}/events.jsonl", "".join(t + "\n" for t in lines).encode())
        n_clicks = sum(1 for r in records if r["event_type"] == "click")
        uploads = sum(1 for p in planned if p.day == day)
        counts[ds] = {
            "uploads": uploads,
            "actions": len(day_records[day]) - uploads,
            "manifest_lines": manifest_lines[day],
            "bad_manifest_lines": sum(1 for r in bad_records if r["source"] == "manifest" and r["ds"] == ds),
            "sessions": n_sessions if len(visible_by_day[day]) >= 2 else 0,
            "impressions": len(records) - n_clicks,
            "clicks": n_clicks,
            "click_lines": len(lines),
            "bad_click_lines": len(day_bad),
            "visible_images": len(visible_by_day[day]),
        }

    final_visible = sorted((p for p in planned if not p.private and not p.deleted), key=lambda p: p.serial)
    judgments, labels = judgments_and_labels(final_visible, run.specs, stream_rng(seed, STREAM_JUDGE), images)
    _write_csv(sink, "judgments/judgments.csv", ("set", "query_image_id", "candidate_image_id", "relevance"),
               judgments)
    _write_csv(sink, "labels/labels.csv", ("query_image_id", "positive_image_id", "weight"), labels)

    bad_records.sort(key=lambda r: (r["source"], r["ds"], r["line"]))
    truth = _truth(planned, run.specs, sink, seed=seed, size=size, start_ds=start_ds, ds_list=run.ds_list,
                   eta=eta, prop=prop, results_per_query=results_per_query, bad_records=bad_records,
                   counts=counts, judgments=len(judgments), labels=len(labels))
    sink.put("demo_truth.json", (json.dumps(truth, indent=1) + "\n").encode())
    totals: Counter[str] = Counter()
    for row in counts.values():
        totals.update(row)
    summary = DemoSummary(
        out=sink.root, images=len(planned), items=n_items,
        compositions=sum(1 for p in planned if p.is_composition), days=days, per_day=counts,
        bad_manifest_records=sum(1 for r in bad_records if r["source"] == "manifest"),
        bad_click_records=sum(1 for r in bad_records if r["source"] == "clicks"),
        unusual_images=len(UNUSUAL_KINDS), sessions=totals["sessions"], impressions=totals["impressions"],
        clicks=totals["clicks"], judgments=len(judgments), labels=len(labels),
        seconds=round(time.perf_counter() - started, 3),
        bad_kinds=dict(sorted(Counter(f"{r['source']}:{r['kind']}" for r in bad_records).items())),
    )
    log.info("demo data: %d images of %d items over %d days, %d + %d bad manifest/click records, "
             "at %s in %.1f s", summary.images, summary.items, days, summary.bad_manifest_records,
             summary.bad_click_records, sink.root, summary.seconds)
    return summary


def _truth(planned: list[PlannedImage], specs: dict[int, ItemSpec], sink: DemoSink, *, seed: int, size: int,
           start_ds: str, ds_list: list[str], eta: float, prop: dict[int, float], results_per_query: int,
           bad_records: list[dict[str, Any]], counts: dict[str, dict[str, int]], judgments: int,
           labels: int) -> dict[str, Any]:
    """The ``demo_truth.json`` document (structure in :func:`generate_demo`)."""
    images: dict[str, Any] = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for p in planned:
        single = not p.is_composition
        spec = specs[p.items[0]]
        composition = None
        if not single:
            composition = [{"item": it, "category": specs[it].category, "box": [half * size, 0, size, size]}
                           for half, it in enumerate(p.items)]
        else:
            groups[str(p.items[0])].append(p.image_id)
        images[p.image_id] = {
            "item": p.items[0] if single else None,
            "category": spec.category if single else None,
            "pattern": spec.pattern if single else None,
            "variant": p.variant,
            "day": p.day,
            "ds": ds_list[p.day],
            "format": p.fmt,
            "mode": p.mode,
            "width": p.width,
            "height": p.height,
            "unusual": p.unusual,
            "composition": composition,
            "private": p.private,
            "deleted": p.deleted,
            "uploaded_private": p.uploaded_private,
            "replaced_ds": p.replaced_ds,
            "path": p.path,
            "uri": sink.uri(p.path),
            "owner_id": p.owner,
            "history": p.history,
        }
    unusual = [{"image_id": p.image_id, "kind": p.unusual, "format": p.fmt, "mode": UNUSUAL_MODE[p.unusual]}
               for p in planned if p.unusual is not None]
    totals: Counter[str] = Counter()
    for day_counts in counts.values():
        totals.update({k: v for k, v in day_counts.items() if k != "visible_images"})
    return {
        "version": TRUTH_VERSION,
        "seed": seed,
        "size": size,
        "start_ds": start_ds,
        "days": len(ds_list),
        "ds_list": ds_list,
        "images": images,
        "items": {str(i): {"category": s.category, "pattern": s.pattern} for i, s in specs.items()},
        "groups": dict(groups),
        "categories": list(CATEGORIES),
        "propensity": {str(p): v for p, v in prop.items()},
        "eta": eta,
        "click_model": {
            "examination": "(1/position) ** eta",
            "relevance_by_grade": {str(g): r for g, r in RELEVANCE_BY_GRADE.items()},
            "results_per_query": results_per_query,
            "ranking": "uniform random permutation of the shown results (independent of relevance)",
            "dwell_ms": "lognormal around 15000 for grade >= 4 clicks, around 3000 otherwise",
        },
        "grades": {
            "5": "same item (or the same pair)", "4": "composition holding the query's item",
            "3": "query composition vs one of its items, compositions sharing one item, "
                 "or same category and pattern",
            "2": "same category", "0": "other",
        },
        "bad_records": bad_records,
        "unusual_images": unusual,
        "counts": counts,
        "totals": {**dict(totals), "judgments": judgments, "labels": labels},
    }


# ----------------------------------------------------------------------------- CLI


def format_summary(summary: DemoSummary) -> str:
    """A small table of what was written, per day, and the bad records by kind."""
    lines = [f"demo data at {summary.out}: {summary.images} images of {summary.items} items "
             f"({summary.compositions} compositions, {summary.unusual_images} unusual files), "
             f"{summary.days} days, {summary.seconds:.1f} s"]
    header = ("ds", "uploads", "actions", "bad_manifest_lines", "sessions", "impressions", "clicks",
              "bad_click_lines")
    lines.append("  ".join(f"{h:>12}" for h in header))
    for ds, row in summary.per_day.items():
        lines.append("  ".join([f"{ds:>12}", *(f"{row[h]:>12}" for h in header[1:])]))
    lines.append(f"judgments: {summary.judgments}, labels: {summary.labels}")
    if summary.bad_kinds:
        lines.append("bad records: " + ", ".join(f"{k}={v}" for k, v in summary.bad_kinds.items()))
    return "\n".join(lines)


def _cli(args: argparse.Namespace) -> int:
    out = args.out or load_settings().landing
    summary = generate_demo(
        out, args.images, args.days, seed=args.seed, size=args.size, start_ds=args.start_ds,
        bad_share=args.bad_share, sessions_per_day=args.sessions_per_day,
        results_per_query=args.results_per_query, eta=args.eta,
    )
    print(format_summary(summary))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch demo-data``."""
    parser = subparsers.add_parser(
        "demo-data",
        help="generate the procedural demo corpus (images, manifests, clicks, judgments)",
        description="Render a demo landing folder with ground truth. Try: "
                    "visearch demo-data --images 500 --days 3 --out .visearch/landing",
    )
    parser.add_argument("--images", type=int, required=True, help="good images to render (at least 12)")
    parser.add_argument("--days", type=int, required=True, help="days to spread uploads and clicks over")
    parser.add_argument("--out", default=None,
                        help="landing folder or URI, file:// or s3:// (default: settings.landing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--bad-share", type=float, default=0.02,
                        help="share of deliberately bad records (0 for none; default 0.02)")
    parser.add_argument("--start-ds", default="2026-01-01", help="first day, YYYY-MM-DD")
    parser.add_argument("--sessions-per-day", type=int, default=None,
                        help="simulated search sessions a day (default max(10, 2*images/days))")
    parser.add_argument("--results-per-query", type=int, default=10, help="results shown per session")
    parser.add_argument("--eta", type=float, default=1.0,
                        help="position-bias exponent: examination (1/p)**eta (default 1)")
    parser.set_defaults(func=_cli)
