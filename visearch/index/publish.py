"""Publishing index builds: validate, flip ``CURRENT``, keep history, roll back, prune.

``indexes/<name>/CURRENT`` names the live build and is the last thing written. Before it, one
object under ``indexes/<name>/history/`` records the event (publish or rollback), so a rollback
knows the order in which builds went live. One object per event (named by time and a random
suffix) means two writers never overwrite each other's events; ``HISTORY.json``, the single
read-modify-write file of older builds, is still read (its events first). ``CURRENT`` moves by
compare-and-swap (:meth:`ObjectStore.swap_pointer`): a publish or rollback whose ``CURRENT`` changed
since it was read fails with :class:`~visearch.core.storage.PointerConflictError` and moves
nothing; a publish that lost records an ``abandoned`` event, and :func:`read_history` leaves both
out. A crash before ``CURRENT`` is written leaves the old build live; HISTORY may then name a build
that never went live, which is harmless: readers follow ``CURRENT`` only, and rollback starts from
what ``CURRENT`` names.

:func:`run` is the nightly publish (``python -m jobs.publish_index --ds 2026-01-01``): it validates
a build against the lake and only then makes it live. Validation: every object present with its
sha256; the build's live vectors are exactly the eligible embeddings (gold.embeddings of the
build's model version joined with silver.images, status ok and not private), counted both ways;
recall@10 of the build's default search against exact search on a fresh sample of queries
reaches ``index.min_publish_recall``. Any failure raises and leaves ``CURRENT`` as it was. After
publishing, builds beyond ``index.keep_builds`` are pruned (never the live one nor any object a
kept build references).

Command line: ``visearch index list`` and ``visearch index rollback [--to BUILD_ID]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from visearch.core import faults
from visearch.core.config import Settings, load_settings
from visearch.core.spark import get_spark
from visearch.core.storage import ObjectStore, PointerConflictError, open_store
from visearch.core.timing import StageTimer
from visearch.index.faiss_index import recall_at_k
from visearch.index.lake import collect_vectors, eligible_embeddings, exact_topk_spark, live_rows_spark, sample_rows
from visearch.index.manifest import (
    CURRENT_FILE,
    HISTORY_DIR,
    HISTORY_FILE,
    BuildNotFoundError,
    IndexManifest,
    current_build_id,
    index_prefix,
    list_build_ids,
    load_build,
    read_manifest,
    verify_build,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

VALIDATION_QUERIES = 200
K = 10


class ValidationError(ValueError):
    """A build failed validation and must not be published."""


@dataclass(frozen=True)
class ValidationReport:
    """What validation measured on a build."""

    build_id: str
    vector_count: int
    expected_count: int
    missing: int
    unexpected: int
    recall: float
    min_recall: float
    k: int
    queries: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def validate_build(
    store: ObjectStore,
    name: str,
    build_id: str,
    *,
    expected_count: int,
    queries: np.ndarray,
    exact_image_ids: np.ndarray,
    min_recall: float,
    k: int = 10,
    missing: int = 0,
    unexpected: int = 0,
) -> ValidationReport:
    """Check a build before it goes live.

    Every object must exist with its recorded sha256, the live vector count must equal
    ``expected_count`` (and no image may be ``missing`` or ``unexpected``), and recall@k of the
    build's default search against ``exact_image_ids`` (nq, k) must reach ``min_recall``.

    Raises:
        ValidationError: naming every failed check.
        BuildNotFoundError: when the build or one of its objects is missing.
        ChecksumError: when an object does not match its checksum.
    """
    manifest = read_manifest(store, name, build_id)
    verify_build(store, manifest)
    with load_build(store, name, build_id, verify=False) as build:  # just verified
        _, ids = build.search(queries, k)
        found = build.image_ids(ids)
    recall = recall_at_k(found, exact_image_ids, k)
    report = ValidationReport(build_id=build_id, vector_count=manifest.vector_count,
                              expected_count=expected_count, missing=missing, unexpected=unexpected,
                              recall=recall, min_recall=min_recall, k=k, queries=len(queries))
    problems = []
    if manifest.vector_count != expected_count:
        problems.append(f"build holds {manifest.vector_count} live vectors, embeddings say {expected_count}")
    if missing or unexpected:
        problems.append(f"{missing} eligible images missing from the build, "
                        f"{unexpected} that should not be in it")
    if recall < min_recall:
        problems.append(f"recall@{k} {recall:.4f} < required {min_recall:.4f}")
    if problems:
        raise ValidationError(f"build {build_id} failed validation: " + "; ".join(problems))
    log.info("build %s valid: %d vectors, recall@%d %.4f", build_id, manifest.vector_count, k, recall)
    return report


def read_history(store: ObjectStore, name: str, *, raw: bool = False) -> list[dict[str, Any]]:
    """The publish/rollback events of an index, oldest first (legacy ``HISTORY.json`` events, then
    one object per event under ``history/``, in the order of their names).

    A publish that lost a race for ``CURRENT`` is followed by an ``abandoned`` event naming it;
    both are left out unless ``raw``: its build never went live, so rollback must not return to it.
    """
    prefix = index_prefix(name)
    events: list[dict[str, Any]] = []
    legacy = f"{prefix}/{HISTORY_FILE}"
    if store.exists(legacy):
        events.extend(json.loads(store.get_text(legacy))["events"])
    for key in store.list(f"{prefix}/{HISTORY_DIR}/"):
        if key.endswith(".json"):
            events.append(json.loads(store.get_text(key)))
    if raw:
        return events
    abandoned = {e.get("publish_id") for e in events if e["event"] == "abandoned"}
    return [e for e in events if e["event"] != "abandoned" and
            (e.get("event_id") is None or e["event_id"] not in abandoned)]


def _append_history(store: ObjectStore, name: str, event: dict[str, Any]) -> None:
    """Record one event as its own object: concurrent writers add objects, never rewrite one."""
    key = f"{index_prefix(name)}/{HISTORY_DIR}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"
    store.put_text(key, json.dumps(event, indent=2, sort_keys=True) + "\n")


_UNREAD: Any = object()


def publish_build(
    store: ObjectStore, name: str, build_id: str, *, ds: str, report: ValidationReport | None = None,
    expected: str | None = _UNREAD,
) -> None:
    """Make ``build_id`` live: record it in HISTORY, then move ``CURRENT`` (last) from ``expected``,
    the build the caller saw live when it started (default: what ``CURRENT`` names now).

    Raises:
        BuildNotFoundError: when the build has no manifest.
        PointerConflictError: when ``CURRENT`` no longer names ``expected`` (another publish or a
            rollback moved it meanwhile); ``CURRENT`` is left as the other writer set it.
    """
    manifest = read_manifest(store, name, build_id)
    pointer = f"{index_prefix(name)}/{CURRENT_FILE}"
    previous = current_build_id(store, name)
    if expected is not _UNREAD and previous != expected:
        raise PointerConflictError(store.uri(pointer), expected, previous)
    event_id = uuid.uuid4().hex
    _append_history(store, name, {"event": "publish", "event_id": event_id, "build_id": build_id, "ds": ds,
                                  "at": _now(), "previous": previous, "created_ds": manifest.created_ds,
                                  "recall": report.recall if report else None})
    faults.point(faults.BEFORE_CURRENT_POINT, build_id)  # tests: killed between HISTORY and CURRENT
    try:
        store.swap_pointer(pointer, build_id, expected=previous)
    except PointerConflictError as exc:
        _append_history(store, name, {"event": "abandoned", "publish_id": event_id, "build_id": build_id,
                                      "at": _now(), "reason": str(exc)})
        log.error("publish of %s/%s abandoned: %s", name, build_id, exc)
        raise
    log.info("published %s/%s (was %s)", name, build_id, previous)


def rollback(store: ObjectStore, name: str, to: str | None = None) -> str:
    """Point ``CURRENT`` back at ``to``, or at the build published before the live one.

    The target's objects are checked (existence and sha256) before the pointer moves.

    Raises:
        BuildNotFoundError: when nothing is live, or there is no earlier published build.
        ChecksumError: when the target build is damaged.
        PointerConflictError: when ``CURRENT`` moved while the rollback ran.
    """
    live = current_build_id(store, name)
    if live is None:
        raise BuildNotFoundError(f"index {name!r} has no CURRENT build to roll back from")
    if to is None:
        published = [e["build_id"] for e in read_history(store, name) if e["event"] == "publish"]
        if live not in published:
            raise BuildNotFoundError(f"live build {live} is not in HISTORY; name a build with --to")
        last = len(published) - 1 - published[::-1].index(live)
        earlier = [b for b in published[:last] if b != live]
        candidates = [b for b in reversed(earlier) if b in set(list_build_ids(store, name))]
        if not candidates:
            raise BuildNotFoundError(f"no build was published before {live} (or it was pruned)")
        to = candidates[0]
    manifest = read_manifest(store, name, to)
    verify_build(store, manifest)
    _append_history(store, name, {"event": "rollback", "build_id": to, "at": _now(), "previous": live,
                                  "created_ds": manifest.created_ds})
    store.swap_pointer(f"{index_prefix(name)}/{CURRENT_FILE}", to, expected=live)
    log.info("rolled %s back from %s to %s", name, live, to)
    return to


def newest_build_for(store: ObjectStore, name: str, ds: str) -> str | None:
    """The most recently created build whose ``created_ds`` is ``ds`` (None when there is none)."""
    best: tuple[str, str] | None = None
    for build_id in list_build_ids(store, name):
        manifest = read_manifest(store, name, build_id)
        if manifest.created_ds == ds and (best is None or (manifest.created_at, build_id) > best):
            best = (manifest.created_at, build_id)
    return best[1] if best else None


def prune_builds(store: ObjectStore, name: str, keep: int) -> list[str]:
    """Delete old builds, keeping the live one, the last ``keep`` published, newer unpublished ones,
    and every object a kept manifest references (an incremental build's parent shards and
    trained index live in older folders). Returns the builds whose folders were emptied.

    Raises:
        ValueError: when ``keep`` < 1.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    builds = list_build_ids(store, name)
    manifests = {b: read_manifest(store, name, b) for b in builds}
    live = current_build_id(store, name)
    published: list[str] = []
    for event in reversed(read_history(store, name)):
        if event["build_id"] not in published and event["build_id"] in manifests:
            published.append(event["build_id"])
    kept = set(published[:keep])
    if live:
        kept.add(live)
    live_ds = manifests[live].created_ds if live in manifests else ""
    kept |= {b for b, m in manifests.items() if b not in published and m.created_ds >= live_ds}
    referenced = {key for b in kept for key in manifests[b].object_keys()}
    prefix = index_prefix(name)
    dropped = []
    for build_id in builds:
        if build_id in kept:
            continue
        for key in store.list(f"{prefix}/{build_id}/"):
            if key not in referenced:
                store.delete(key)
        dropped.append(build_id)
    if dropped:
        log.info("pruned %d builds of %s: %s", len(dropped), name, dropped)
    return dropped


def run(
    settings: Settings,
    ds: str,
    *,
    spark: SparkSession | None = None,
    timer: StageTimer | None = None,
    build_id: str | None = None,
) -> dict[str, Any]:
    """Validate ``build_id`` (default: the newest build created for ``ds``) against the lake, make it
    live and prune old builds; return the build id, counts, recall and the ``CURRENT`` URI.

    Raises:
        BuildNotFoundError: when there is no build for ``ds`` (or the named one does not exist).
        ValidationError: when validation fails (``CURRENT`` unchanged).
        PointerConflictError: when ``CURRENT`` changed since this run read it (another publish or a
            rollback ran meanwhile; ``CURRENT`` unchanged by this run).
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
    current_uri = store.uri(f"{index_prefix(name)}/{CURRENT_FILE}")
    if live == build_id:
        log.info("%s is already live; nothing to publish", build_id)
        return {"build_id": build_id, "published": False, "already_live": True, "current_uri": current_uri}
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
        publish_build(store, name, build_id, ds=ds, report=report, expected=live)
        pruned = prune_builds(store, name, settings.index.keep_builds)
    return {
        "build_id": build_id,
        "published": True,
        "previous": live,
        "vectors": report.vector_count,
        "recall": report.recall,
        "pruned": pruned,
        "current_uri": current_uri,
    }


@dataclass(frozen=True)
class BuildSummary:
    """One line of ``visearch index list``."""

    build_id: str
    created_ds: str
    build_kind: str
    vectors: int
    tombstones: int
    shards: int
    factory: str
    recall: float
    live: bool
    published: bool


def list_builds(store: ObjectStore, name: str) -> list[BuildSummary]:
    """Every finished build of an index, oldest first."""
    live = current_build_id(store, name)
    published = {e["build_id"] for e in read_history(store, name)}
    out = []
    for build_id in list_build_ids(store, name):
        m: IndexManifest = read_manifest(store, name, build_id)
        out.append(BuildSummary(build_id, m.created_ds, m.build_kind, m.vector_count, m.tombstone_count,
                                len(m.shards), m.factory, m.validation_recall, build_id == live,
                                build_id in published))
    return sorted(out, key=lambda b: (b.created_ds, b.build_id))


def _store_and_name(args: argparse.Namespace) -> tuple[ObjectStore, str]:
    settings = load_settings(getattr(args, "config", None))
    return open_store(settings.artifacts, settings.s3), args.name or settings.index.name


def _cmd_list(args: argparse.Namespace) -> int:
    store, name = _store_and_name(args)
    builds = list_builds(store, name)
    if not builds:
        print(f"no builds of index {name!r} under {store.uri(index_prefix(name))}")
        return 0
    header = f"{'':2}{'build_id':<24}{'ds':<12}{'kind':<12}{'vectors':>10}{'tomb':>7}{'shards':>7}  " \
             f"{'recall':>7}  factory"
    print(header)
    for b in builds:
        mark = "* " if b.live else ("p " if b.published else "  ")
        print(f"{mark}{b.build_id:<24}{b.created_ds:<12}{b.build_kind:<12}{b.vectors:>10}{b.tombstones:>7}"
              f"{b.shards:>7}  {b.recall:>7.4f}  {b.factory}")
    print("* live, p published before")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    store, name = _store_and_name(args)
    target = rollback(store, name, args.to)
    print(f"{name}: CURRENT -> {target}")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch index {list,rollback}``."""
    parser = subparsers.add_parser("index", help="index operations: list builds, rollback",
                                   description="Inspect and operate the published index builds.")
    parser.add_argument("--name", default=None, help="index name (default: settings index.name)")
    sub = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list builds (live one marked *)")
    ls.set_defaults(func=_cmd_list)
    rb = sub.add_parser("rollback", help="point CURRENT back at the previously published build")
    rb.add_argument("--to", default=None, metavar="BUILD_ID", help="roll back to this build instead")
    rb.set_defaults(func=_cmd_rollback)
