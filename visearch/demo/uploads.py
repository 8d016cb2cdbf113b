"""The users' uploads of a demo corpus: every good image planned, the actions on it day by day,
and each day's upload manifest with the planted bad lines.

:func:`plan_images` decides every good image (its item or pair of items, format, unusual kind,
day, id, owner, tags, privacy); :func:`render_all` draws and writes them; :func:`apply_actions`
adds, from the second day on, deletes, ``set_private``, ``set_public`` (of an image uploaded
private) and upserts that replace an image's file; :func:`write_manifests` writes
``manifests/ds=…/uploads.jsonl`` with the deliberately bad lines (:data:`BAD_MANIFEST_KINDS`)
planted among the good ones. :class:`DemoRun` is what every stage of one generation shares.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from visearch.demo.rendering import (
    EXTENSIONS,
    UNUSUAL_FORMAT,
    UNUSUAL_KINDS,
    UNUSUAL_MODE,
    ItemSpec,
    encode,
    encode_unusual,
    png_bomb,
    render_item,
)
from visearch.demo.sink import DemoSink
from visearch.demo.streams import STREAM_ACTIONS, STREAM_BAD, STREAM_PLAN, STREAM_RENDER, stream_rng

# The bad inputs planted in manifests and click logs, in the order they are cycled through,
# with the quarantine reason we expect ingestion to give (a suggestion; ``kind`` is the fact).
BAD_MANIFEST_KINDS: dict[str, str] = {
    "truncated_jpeg": "decode_error",
    "zero_byte": "empty_file",
    "text_as_jpg": "not_an_image",
    "png_bomb": "too_many_pixels",
    "missing_file": "missing_file",
    "duplicate_image_id": "duplicate_image_id",
    "malformed_json": "malformed_json",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
}


@dataclass
class PlannedImage:
    """One good image as planned: what it shows and when it lands."""

    serial: int  # render key
    items: tuple[int, ...]  # one item, or two for a composition (left, right)
    day: int
    second: int  # upload time, seconds after midnight
    fmt: str
    unusual: str | None = None
    image_id: str = ""
    variant: int | None = None
    private: bool = False
    uploaded_private: bool = False
    deleted: bool = False
    replaced_ds: str | None = None
    path: str = ""
    width: int = 0
    height: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    owner: str = ""
    mode: str = "RGB"  # Pillow mode of the file as opened

    @property
    def is_composition(self) -> bool:
        """Two items side by side (left and right halves)."""
        return len(self.items) == 2


@dataclass
class DemoRun:
    """What every stage of one demo generation shares."""

    seed: int
    size: int
    ds_list: list[str]
    dates: list[dt.date]
    specs: dict[int, ItemSpec]
    sink: DemoSink
    n_owners: int

    @property
    def days(self) -> int:
        """Number of days generated."""
        return len(self.ds_list)


def _iso(day: dt.date, second: float) -> str:
    stamp = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC) + dt.timedelta(seconds=int(second))
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _manifest_line(image_id: str, uri: str, owner: str, ts: str, tags: list[str], private: bool,
                   action: str) -> dict[str, Any]:
    return {"image_id": image_id, "uri": uri, "owner_id": owner, "upload_ts": ts, "tags": tags,
            "is_private": private, "action": action}


def _split_counts(total: int, parts: int) -> list[int]:
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def plan_images(run: DemoRun, images: int) -> list[PlannedImage]:
    """Decide every good image: items or composition pair, unusual kind, format, day, id, privacy."""
    plan = stream_rng(run.seed, STREAM_PLAN)
    n_items = len(run.specs)
    n_comp = max(2, round(0.08 * images))
    n_single = images - n_comp
    single_items = [i % n_items for i in range(2 * n_items)]  # every item at least twice
    single_items += [int(x) for x in plan.integers(0, n_items, size=max(0, n_single - len(single_items)))]
    single_items = single_items[:n_single]
    fmt_choices = plan.choice(4, size=n_single, p=[0.85, 0.09, 0.03, 0.03])
    formats = [("JPEG", "PNG", "WEBP", "GIF")[int(c)] for c in fmt_choices]
    formats[0], formats[1], formats[2] = "PNG", "WEBP", "GIF"  # each format at least once
    plan.shuffle(formats)  # type: ignore[arg-type]
    planned = [PlannedImage(serial=0, items=(item,), day=0, second=0, fmt=fmt)
               for item, fmt in zip(single_items, formats, strict=True)]
    for _ in range(n_comp):
        a, b = (int(x) for x in plan.choice(n_items, size=2, replace=False))
        planned.append(PlannedImage(serial=0, items=(a, b), day=0, second=0, fmt="JPEG"))
    singles_idx = [i for i, p in enumerate(planned) if not p.is_composition]
    chosen = plan.choice(singles_idx, size=len(UNUSUAL_KINDS), replace=False)
    for kind, idx in zip(UNUSUAL_KINDS, chosen, strict=True):
        planned[int(idx)].unusual = kind
        planned[int(idx)].fmt = UNUSUAL_FORMAT[kind]
    day_of = np.repeat(np.arange(run.days), _split_counts(images, run.days))
    plan.shuffle(day_of)
    for p, day in zip(planned, day_of, strict=True):
        p.day = int(day)
        p.second = int(plan.integers(0, 43_200))  # uploads land before noon, sessions after
    planned.sort(key=lambda p: (p.day, p.second, p.items))
    variants: Counter[int] = Counter()
    for serial, p in enumerate(planned):
        p.serial = serial
        p.image_id = f"demo-{serial:06d}"
        if not p.is_composition:
            p.variant = variants[p.items[0]]
            variants[p.items[0]] += 1
        p.path = f"images/ds={run.ds_list[p.day]}/{p.image_id}.{EXTENSIONS[p.fmt]}"
        p.owner = f"owner-{int(plan.integers(0, run.n_owners)):03d}"
        if plan.uniform() < 0.5:
            p.tags = sorted({run.specs[i].category for i in p.items})
    plain = [p for p in planned if not p.is_composition and p.unusual is None]
    for idx in plan.choice(len(plain), size=max(1, round(0.03 * images)), replace=False):
        plain[int(idx)].private = plain[int(idx)].uploaded_private = True
    return planned


DayRecords = list[list[tuple[int, dict[str, Any]]]]  # per day: (second of day, manifest record)


def render_all(run: DemoRun, planned: list[PlannedImage], progress: bool | None) -> None:
    """Render, encode and write every planned image; record its size and mode."""
    from tqdm import tqdm

    for p in tqdm(planned, desc="render", unit="img", disable=None if progress is None else not progress):
        data, p.mode, p.width, p.height = _render_planned(p, run.specs, stream_rng(run.seed, STREAM_RENDER, p.serial),
                                                          run.size)
        p.history.append({"ds": run.ds_list[p.day], "action": "upsert", "is_private": p.private})
        run.sink.put(p.path, data)


def _render_planned(p: PlannedImage, specs: dict[int, ItemSpec], rng: np.random.Generator,
                    size: int) -> tuple[bytes, str, int, int]:
    """Render and encode one planned image: (file bytes, Pillow mode when opened, width, height)."""
    if p.is_composition:
        canvas = Image.new("RGB", (2 * size, size))
        for half, item in enumerate(p.items):
            canvas.paste(render_item(specs[item], rng, size, size), (half * size, 0))
        return encode(canvas, p.fmt), "RGB", 2 * size, size
    spec = specs[p.items[0]]
    canonical = p.variant == 0 and p.unusual is None
    if p.unusual == "exif_rotated_jpeg":
        width = size * 3 // 2  # not square, so the rotation shows in the size
        image = render_item(spec, rng, width, size)
        return encode_unusual(p.unusual, image), UNUSUAL_MODE[p.unusual], width, size
    image = render_item(spec, rng, size, size, canonical=canonical)
    if p.unusual == "animated_gif":
        frames = [render_item(spec, rng, size, size) for _ in range(2)]
        return encode_unusual(p.unusual, image, frames), "P", size, size
    if p.unusual is not None:
        return encode_unusual(p.unusual, image), UNUSUAL_MODE[p.unusual], size, size
    mode = "P" if p.fmt == "GIF" else "RGB"
    return encode(image, p.fmt), mode, size, size


def apply_actions(
    run: DemoRun, planned: list[PlannedImage], images: int
) -> tuple[DayRecords, list[dict[str, tuple[bool, bool]]]]:
    """Uploads and, from the second day on, deletes, set_private, replacing upserts and set_public.

    Returns the good manifest records of each day as (second of day, record) and the state of
    every landed image after each day: image_id -> (private, deleted).
    """
    sink = run.sink
    records: DayRecords = [[] for _ in range(run.days)]
    for p in planned:
        records[p.day].append((p.second, _manifest_line(
            p.image_id, sink.uri(p.path), p.owner, _iso(run.dates[p.day], p.second), p.tags, p.private,
            "upsert")))
    variants = Counter(p.items[0] for p in planned if not p.is_composition)
    n_actions = max(1, images // 250)
    touched: set[str] = set()
    replacement_serial = len(planned)
    states: list[dict[str, tuple[bool, bool]]] = []
    for day in range(run.days):
        arng = stream_rng(run.seed, STREAM_ACTIONS, day)
        ds = run.ds_list[day]
        if day >= 1:
            pool = [p for p in planned if p.day < day and not p.deleted and not p.private
                    and not p.is_composition and p.unusual is None and p.image_id not in touched]
            chosen = [pool[int(i)] for i in arng.permutation(len(pool))[: 3 * n_actions]]
            for k, p in enumerate(chosen):
                second = int(arng.integers(0, 43_200))
                touched.add(p.image_id)
                action = ("delete", "set_private", "replace")[k % 3]
                if action == "delete":
                    p.deleted = True
                elif action == "set_private":
                    p.private = True
                else:  # a new variant of the same item in a new file, same id
                    item = p.items[0]
                    p.variant = variants[item]
                    variants[item] += 1
                    image = render_item(run.specs[item], stream_rng(run.seed, STREAM_RENDER, replacement_serial),
                                        run.size, run.size)
                    replacement_serial += 1
                    p.fmt, p.mode, p.width, p.height = "JPEG", "RGB", run.size, run.size
                    p.path = f"images/ds={ds}/{p.image_id}.r{day}.jpg"
                    p.replaced_ds = ds
                    sink.put(p.path, encode(image, "JPEG"))
                    action = "upsert"
                records[day].append((second, _manifest_line(
                    p.image_id, sink.uri(p.path), p.owner, _iso(run.dates[day], second), p.tags, p.private,
                    action)))
                p.history.append({"ds": ds, "action": action, "is_private": p.private})
            hidden = [p for p in planned if p.day < day and p.uploaded_private and p.private
                      and not p.deleted and p.image_id not in touched]
            if hidden:
                p = hidden[int(arng.integers(0, len(hidden)))]
                touched.add(p.image_id)
                p.private = False
                second = int(arng.integers(0, 43_200))
                records[day].append((second, _manifest_line(
                    p.image_id, sink.uri(p.path), p.owner, _iso(run.dates[day], second), p.tags, False,
                    "set_public")))
                p.history.append({"ds": ds, "action": "set_public", "is_private": False})
        states.append({p.image_id: (p.private, p.deleted) for p in planned if p.day <= day})
    return records, states


def _bad_manifest_line(run: DemoRun, b: int, kind: str,
                       day_records: DayRecords) -> tuple[int, str, dict[str, Any]]:
    """Plant bad manifest record number ``b`` of ``kind`` (writing its file, if it has one).

    Returns (day, line text, bad-record entry without its line number).
    """
    brng = stream_rng(run.seed, STREAM_BAD, 0, b)
    day = int(brng.integers(0, run.days))
    sink, size = run.sink, run.size
    bad_id = f"demo-bad-{b:03d}"
    key = f"images/ds={run.ds_list[day]}/{bad_id}.{'png' if kind == 'png_bomb' else 'jpg'}"
    ts = _iso(run.dates[day], int(brng.integers(0, 43_200)))
    owner = f"owner-{int(brng.integers(0, run.n_owners)):03d}"
    record = _manifest_line(bad_id, sink.uri(key), owner, ts, [], False, "upsert")
    record_id: str | None = bad_id
    path: str | None = key
    if kind == "truncated_jpeg":
        full = encode(render_item(run.specs[int(brng.integers(0, len(run.specs)))], brng, size, size), "JPEG")
        scan = full.index(b"\xff\xda")  # start of scan: keep the headers, cut the pixels in half
        sink.put(key, full[: scan + (len(full) - scan) // 2])
    elif kind == "zero_byte":
        sink.put(key, b"")
    elif kind == "text_as_jpg":
        sink.put(key, b"This is a text file with a .jpg name, not an image.\n")
    elif kind == "png_bomb":
        sink.put(key, png_bomb())
    elif kind == "wrong_type":  # a valid image; the line's is_private is a string
        sink.put(key, encode(render_item(run.specs[int(brng.integers(0, len(run.specs)))], brng, size, size),
                             "JPEG"))
        record["is_private"] = "yes"
    elif kind == "missing_field":
        del record["uri"]
        path = None
    elif kind == "malformed_json":
        record_id, path = None, None
    elif kind == "duplicate_image_id":  # the exact record of a good upload of that day, again
        ups = [r for _, r in sorted(day_records[day], key=lambda x: (x[0], x[1]["image_id"]))
               if r["action"] == "upsert"]
        record = ups[int(brng.integers(0, len(ups)))]
        record_id, path = record["image_id"], None
    elif kind != "missing_file":
        raise ValueError(f"unknown bad manifest kind {kind!r}")
    text = json.dumps(record)
    if kind == "malformed_json":
        text = text[:-25]  # cut mid-object
    return day, text, {"source": "manifest", "ds": run.ds_list[day], "record_id": record_id, "kind": kind,
                       "expected_reason": BAD_MANIFEST_KINDS[kind], "path": path}


def insert_bad(lines: list[str], text: str, lo: int, pick: int) -> int:
    """Insert ``text`` at a position in ``[lo, len(lines)]`` chosen by ``pick``; return the position."""
    pos = lo + pick % (len(lines) - lo + 1)
    lines.insert(pos, text)
    return pos


def write_manifests(run: DemoRun, day_records: DayRecords, n_bad: int
                    ) -> tuple[list[dict[str, Any]], list[int]]:
    """Write each day's ``uploads.jsonl`` with the bad lines planted; return the bad records
    (with 1-based line numbers) and the line count of each day."""
    kinds = list(BAD_MANIFEST_KINDS)
    planted: list[list[tuple[int, str, dict[str, Any]]]] = [[] for _ in range(run.days)]
    for b in range(n_bad):
        kind = kinds[b % len(kinds)]
        day, text, bad = _bad_manifest_line(run, b, kind, day_records)
        planted[day].append((int(stream_rng(run.seed, STREAM_BAD, 3, b).integers(0, 1 << 30)), text, bad))
    bad_records: list[dict[str, Any]] = []
    line_counts: list[int] = []
    for day in range(run.days):
        lines = [json.dumps(r) for _, r in sorted(day_records[day], key=lambda x: (x[0], x[1]["image_id"]))]
        markers: list[dict[str, Any] | None] = [None] * len(lines)
        for pick, text, bad in planted[day]:
            lo = lines.index(text) + 1 if bad["kind"] == "duplicate_image_id" else 0  # after the original
            markers.insert(insert_bad(lines, text, lo, pick), bad)
        bad_records += [{**m, "line": n} for n, m in enumerate(markers, start=1) if m is not None]
        line_counts.append(len(lines))
        key = f"manifests/ds={run.ds_list[day]}/uploads.jsonl"
        run.sink.put(key, "".join(t + "\n" for t in lines).encode())
    return bad_records, line_counts

