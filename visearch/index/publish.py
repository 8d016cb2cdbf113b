"""Publishing index builds: validate, flip ``CURRENT``, keep history, roll back, prune.

``indexes/<name>/CURRENT`` names the live build and is the last thing written. Before it,
``indexes/<name>/HISTORY.json`` records the event (publish or rollback), so a rollback knows
the order in which builds went live. A crash before ``CURRENT`` is written leaves the old build
live; HISTORY may then name a build that never went live, which is harmless: readers follow
``CURRENT`` only, and rollback starts from what ``CURRENT`` names.

Command line: ``visearch index list`` and ``visearch index rollback [--to BUILD_ID]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from visearch.core import faults
from visearch.core.storage import ObjectStore
from visearch.index.faiss_index import recall_at_k
from visearch.index.manifest import (
    CURRENT_FILE,
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

log = logging.getLogger(__name__)


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


def read_history(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    """The publish/rollback events of an index, oldest first."""
    key = f"{index_prefix(name)}/{HISTORY_FILE}"
    if not store.exists(key):
        return []
    data = json.loads(store.get_text(key))
    events: list[dict[str, Any]] = data["events"]
    return events


def _append_history(store: ObjectStore, name: str, event: dict[str, Any]) -> None:
    events = [*read_history(store, name), event]
    store.put_text(f"{index_prefix(name)}/{HISTORY_FILE}",
                   json.dumps({"events": events}, indent=2, sort_keys=True) + "\n")


def publish_build(
    store: ObjectStore, name: str, build_id: str, *, ds: str, report: ValidationReport | None = None
) -> None:
    """Make ``build_id`` live: record it in HISTORY, then write ``CURRENT`` (last).

    Raises:
        BuildNotFoundError: when the build has no manifest.
    """
    manifest = read_manifest(store, name, build_id)
    previous = current_build_id(store, name)
    _append_history(store, name, {"event": "publish", "build_id": build_id, "ds": ds, "at": _now(),
                                  "previous": previous, "created_ds": manifest.created_ds,
                                  "recall": report.recall if report else None})
    faults.point(faults.BEFORE_CURRENT_POINT, build_id)  # tests: killed between HISTORY and CURRENT
    store.write_pointer(f"{index_prefix(name)}/{CURRENT_FILE}", build_id)
    log.info("published %s/%s (was %s)", name, build_id, previous)


def rollback(store: ObjectStore, name: str, to: str | None = None) -> str:
    """Point ``CURRENT`` back at ``to``, or at the build published before the live one.

    The target's objects are checked (existence and sha256) before the pointer moves.

    Raises:
        BuildNotFoundError: when nothing is live, or there is no earlier published build.
        ChecksumError: when the target build is damaged.
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
    store.write_pointer(f"{index_prefix(name)}/{CURRENT_FILE}", to)
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
    from visearch.core.config import load_settings
    from visearch.core.storage import open_store

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
