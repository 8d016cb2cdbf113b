"""Turn a folder of the user's own images into a day's landing manifest.

``visearch land --images DIR --ds YYYY-MM-DD`` walks ``DIR`` recursively for ``.jpg``, ``.jpeg``,
``.png``, ``.webp`` and ``.gif`` files (any letter case; names starting with ``.`` — hidden files
and folders, macOS ``._`` shadows — are skipped) and writes
``<landing>/manifests/ds=YYYY-MM-DD/uploads-<run>.jsonl`` with one ``upsert`` line per image:

- ``image_id``: the first 16 hex digits of the SHA-1 of the file's path relative to ``DIR``
  (POSIX separators, Unicode NFC), prefixed by ``--namespace/`` when one is given. It is stable:
  landing the same folder again, from anywhere, gives the same ids, so a re-landed image is
  an update of the same image rather than a new one.
- ``uri``: the ``file://`` URI of the file where it lies (images are not copied), or with
  ``--copy`` the URI of a copy at ``<landing>/images/<namespace or folder name>/<image_id>.<ext>``.
- ``tags``: the names of the folders between ``DIR`` and the file
  (``cats/2024/x.jpg`` → ``["cats", "2024"]``).
- ``upload_ts``: the ``ds`` at 00:00 UTC; ``owner_id``: ``--owner``; ``is_private``: a stable
  pseudo-random ``--private-share`` of the images (chosen from the id, so reruns agree).

Each run writes its own manifest, so a second ``land`` on the same day adds its images to the
first's. ``<run>`` is the UTC time of the run (to the microsecond) and 12 hex digits of the
SHA-256 of the manifest's content: names sort in run order, which the ingest's "the last line
wins" follows, and a run whose manifest would be identical to one the day already holds keeps
that one (``manifest_reused``) instead of adding a copy. The ingest reads the files as they are,
so rerunning it for a day gives the same tables.

Symbolic links are skipped (counted as ``skipped_links``) unless ``--follow-links``, which
follows a link only when its real target lies inside ``DIR``; names that are not valid UTF-8 are
skipped with a warning (``skipped_names``). See :func:`scan_folder`.

Where the ingest may read: every manifest ``uri`` must lie under an allowed prefix
(:func:`allowed_uri_prefixes`): ``ingest.allowed_uri_prefixes`` when configured, else the landing
root and the folders landed in place. ``land`` records such a folder as a small object
``<landing>/landed/folders/<hash>.json`` holding its ``file://`` URI; the ingest reads these
records, not the manifests, so a manifest line cannot widen what may be read.

The manifest is written through :mod:`visearch.core.storage`, so an ``s3://`` landing works too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from visearch.core.config import Settings, load_settings, to_uri
from visearch.core.jobrun import check_ds, parse_ds
from visearch.core.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif"})
LANDED_FOLDERS = "landed/folders"  # one small record per folder landed in place
_URI_SAFE = "/=:@-._~!$&'()*+,;"  # RFC 3986 path characters left as they are


def file_uri(path: str | Path) -> str:
    """The ``file://`` URI of an absolute local path, percent-encoding only what must be.

    Unlike ``Path.as_uri`` it keeps ``=`` (as in ``ds=2026-01-01``) and other legal path characters;
    spaces, ``#``, ``%``, ``?`` and non-ASCII characters are encoded (UTF-8). ``storage.read_uri``
    decodes them.

    Raises:
        ValueError: for a relative path.
    """
    p = Path(path)
    if not p.is_absolute():
        raise ValueError(f"file_uri needs an absolute path, got {str(path)!r}")
    return "file://" + quote(p.as_posix(), safe=_URI_SAFE)


def stable_image_id(relative: str, namespace: str = "") -> str:
    """The image id of a file at ``relative`` (POSIX) path: 16 hex digits of SHA-1 of the NFC path."""
    text = unicodedata.normalize("NFC", f"{namespace}/{relative}" if namespace else relative)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _is_private(image_id: str, share: float) -> bool:
    """A stable pseudo-random choice of ``share`` of the ids."""
    return int(image_id[:8], 16) / 0x1_0000_0000 < share


@dataclass
class FolderScan:
    """What :func:`scan_folder` found: ``(relative POSIX path, file to read)`` pairs and what it skipped."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    skipped_names: list[str] = field(default_factory=list)


def _utf8(name: str) -> bool:
    """Whether a name from ``os.walk`` was valid UTF-8 (undecodable bytes come as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _real(path: Path) -> Path | None:
    """The real path (every link resolved); None for a link loop."""
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):
        return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def scan_folder(root: Path, *, follow_links: bool = False) -> FolderScan:
    """Image files under ``root`` (recursive, sorted by relative path); what was skipped, and why.

    - Hidden names (starting with ``.``) and other suffixes are left out silently.
    - Symbolic links (to files or folders) are skipped and listed in ``skipped_links``. With
      ``follow_links`` a link is followed only when its real target lies inside ``root`` (after
      resolving every link on the way); a link leading out of it, a broken link, a loop and a
      second way to a file or folder already found are skipped and listed. The file to read is
      the real target, so nothing outside ``root`` is ever read.
    - A file or folder name that is not valid UTF-8 is skipped (with the folder's content) and
      listed in ``skipped_names`` (with its undecodable bytes escaped).
    """
    real_root = root.resolve()
    scan = FolderScan()
    seen_dirs = {real_root}
    seen_files: set[Path] = set()

    def shown(path: Path) -> str:
        return os.fsencode(path).decode("utf-8", "backslashreplace")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_links):
        here = Path(dirpath)
        kept: list[str] = []
        for name in sorted(dirnames):
            full = here / name
            if name.startswith("."):
                continue
            if not _utf8(name):
                scan.skipped_names.append(shown(full))
                continue
            real = _real(full)
            if real is None or (full.is_symlink() and not (follow_links and _inside(real, real_root))):
                scan.skipped_links.append(shown(full))
                continue
            if real in seen_dirs:  # a loop, or a second way into a folder already walked
                scan.skipped_links.append(shown(full))
                continue
            seen_dirs.add(real)
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            full = here / name
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not _utf8(name):
                scan.skipped_names.append(shown(full))
                continue
            real = _real(full)
            if real is None or (full.is_symlink() and not (follow_links and _inside(real, real_root)
                                                          and real.is_file())):
                scan.skipped_links.append(shown(full))
                continue
            if real in seen_files:
                scan.skipped_links.append(shown(full))
                continue
            seen_files.add(real)
            scan.files.append((full.relative_to(root).as_posix(), real if follow_links else full))
    scan.files.sort(key=lambda item: item[0])
    scan.skipped_links.sort()
    scan.skipped_names.sort()
    return scan


def find_images(root: Path, *, follow_links: bool = False) -> list[Path]:
    """Image files under ``root`` (recursive, sorted by relative POSIX path); see :func:`scan_folder`."""
    return [root / relative for relative, _ in scan_folder(root, follow_links=follow_links).files]


def landed_folders(settings: Settings) -> list[str]:
    """The folders ``land`` recorded under ``<landing>/landed/folders/`` (``file://`` URIs, sorted)."""
    store = open_store(settings.landing, settings.s3)
    folders: set[str] = set()
    for key in store.list(f"{LANDED_FOLDERS}/"):
        if not key.endswith(".json"):
            continue
        try:
            uri = json.loads(store.get_text(key)).get("uri")
        except (ValueError, AttributeError) as exc:
            log.warning("ignored unreadable landed-folder record %s: %s", store.uri(key), exc)
            continue
        if isinstance(uri, str) and uri.startswith("file:///"):
            folders.add(uri)
    return sorted(folders)


def allowed_uri_prefixes(settings: Settings) -> list[str]:
    """Where manifest URIs may point: ``ingest.allowed_uri_prefixes`` when set, else the landing root
    and the folders ``land`` recorded (:func:`landed_folders`)."""
    configured = [p.strip() for p in settings.ingest.allowed_uri_prefixes if p.strip()]
    if configured:
        return sorted({p if p.startswith(("s3://", "s3a://", "file://")) else to_uri(p) for p in configured})
    return sorted({settings.landing, *landed_folders(settings)})


@dataclass(frozen=True)
class LandSummary:
    """What :func:`land_folder` wrote (``manifest_reused``: an identical manifest of the day was kept)."""

    manifest_uri: str
    ds: str
    images: int
    private: int
    copied: int
    manifest_reused: bool = False
    skipped_links: int = 0
    skipped_names: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able)."""
        return dict(self.__dict__)


def land_folder(
    images: str | Path,
    ds: str,
    *,
    landing: str | None = None,
    owner: str = "local",
    private_share: float = 0.0,
    namespace: str = "",
    copy: bool = False,
    follow_links: bool = False,
    settings: Settings | None = None,
) -> LandSummary:
    """Write a landing manifest of ``ds`` for every image under the folder ``images``.

    ``landing`` is a root URI or path (default ``settings.landing``). See the module docstring
    for the fields, the manifest name, links and skipped names.

    Raises:
        ValueError: for a bad ``ds``, ``private_share`` outside [0, 1], an empty owner, or a
            folder with no images.
        FileNotFoundError: when ``images`` is not a folder.
    """
    day = dt.date.fromisoformat(check_ds(ds))
    if not 0.0 <= private_share <= 1.0:
        raise ValueError(f"private_share must be in [0, 1], got {private_share}")
    if not owner:
        raise ValueError(f"owner must be non-empty, got {owner!r}")
    root = Path(images).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    settings = settings or load_settings()
    landing_uri = to_uri(landing) if landing else settings.landing
    store = open_store(landing_uri, settings.s3)
    scan = scan_folder(root, follow_links=follow_links)
    for what, names in (("symbolic link", scan.skipped_links), ("name that is not UTF-8", scan.skipped_names)):
        for name in names:
            log.warning("skipped %s: %s", what, name)
    if not scan.files:
        raise ValueError(f"no images (.jpg .jpeg .png .webp .gif) under {root}")
    upload_ts = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    copy_prefix = f"images/{namespace or root.name}"
    lines: list[str] = []
    private = 0
    seen: dict[str, str] = {}
    for relative, path in scan.files:
        image_id = stable_image_id(relative, namespace)
        if image_id in seen:  # a SHA-1 prefix collision: fail rather than merge two images
            raise ValueError(f"image id {image_id} of {relative!r} collides with {seen[image_id]!r}")
        seen[image_id] = relative
        if copy:  # keyed by id: odd characters in names stay out of object keys and URIs
            key = f"{copy_prefix}/{image_id}{path.suffix.lower()}"
            store.put_file(key, path)
            local = store.local_path(key)
            uri = file_uri(local) if local is not None else store.uri(key)
        else:
            uri = file_uri(path)
        is_private = _is_private(image_id, private_share)
        private += is_private
        record = {
            "image_id": image_id,
            "uri": uri,
            "owner_id": owner,
            "upload_ts": upload_ts,
            "tags": list(Path(relative).parent.parts),
            "is_private": is_private,
            "action": "upsert",
        }
        lines.append(json.dumps(record))
    if not copy:  # the images stay where they are: the ingest must be allowed to read them there
        folder_uri = file_uri(root)
        registry_key = f"{LANDED_FOLDERS}/{hashlib.sha1(folder_uri.encode()).hexdigest()[:16]}.json"
        if not store.exists(registry_key):
            store.put_text(registry_key, json.dumps({"uri": folder_uri}) + "\n")
    text = "".join(line + "\n" for line in lines)
    key, reused = _manifest_key(store, ds, text)
    if not reused:
        store.put_text(key, text)
    summary = LandSummary(manifest_uri=store.uri(key), ds=ds, images=len(lines), private=private,
                          copied=len(lines) if copy else 0, manifest_reused=reused,
                          skipped_links=len(scan.skipped_links), skipped_names=len(scan.skipped_names))
    log.info("landed %d images from %s as %s (%d private%s)", len(lines), root, summary.manifest_uri, private,
             ", identical to an earlier run's manifest" if reused else "")
    return summary


def _manifest_key(store: ObjectStore, ds: str, text: str) -> tuple[str, bool]:
    """The key of this run's manifest, and whether a manifest with the same content already exists.

    ``uploads-<UTC time to the microsecond>-<12 hex of the content's SHA-256>.jsonl``: names sort
    in the order the runs happened (the ingest's "last line wins" follows it), and landing the same
    content again keeps the earlier manifest instead of adding a copy.
    """
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = f"manifests/ds={ds}/"
    for existing in store.list(folder):
        name = existing[len(folder):]
        if name.startswith("uploads-") and name.endswith(f"-{digest}.jsonl") and "/" not in name:
            return existing, True
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{folder}uploads-{stamp}-{digest}.jsonl", False


def _cli(args: argparse.Namespace) -> int:
    try:
        summary = land_folder(args.images, args.ds, landing=args.landing, owner=args.owner,
                              private_share=args.private_share, namespace=args.namespace, copy=args.copy,
                              follow_links=args.follow_links)
    except (ValueError, OSError) as exc:
        print(f"visearch land: error: {exc}", file=sys.stderr)
        return 2
    for count, what in ((summary.skipped_links, "symbolic links (see --follow-links)"),
                        (summary.skipped_names, "files or folders whose names are not UTF-8")):
        if count:
            print(f"visearch land: skipped {count} {what}; the log lists them", file=sys.stderr)
    print(json.dumps(summary.to_dict()))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch land``."""
    parser = subparsers.add_parser(
        "land",
        help="turn a folder of images into a day's landing manifest",
        description="Write <landing>/manifests/ds=DS/uploads-<run>.jsonl for every image under a folder. "
                    "Try: visearch land --images ~/Pictures --ds 2026-01-01",
    )
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--ds", required=True, type=parse_ds, help="the day to land them on, YYYY-MM-DD")
    parser.add_argument("--landing", default=None,
                        help="landing root URI or path (default: settings.landing / $VISEARCH_LANDING)")
    parser.add_argument("--owner", default="local", help="owner_id of every image (default: local)")
    parser.add_argument("--private-share", type=float, default=0.0,
                        help="share of images marked private, chosen stably from their ids (default 0)")
    parser.add_argument("--namespace", default="",
                        help="prefix hashed into the ids, to land two folders with the same layout")
    parser.add_argument("--copy", action="store_true",
                        help="copy the images into <landing>/images/ (e.g. to an s3:// landing)")
    parser.add_argument("--follow-links", action="store_true",
                        help="follow symbolic links whose target lies inside --images (default: skip links)")
    parser.set_defaults(func=_cli)
