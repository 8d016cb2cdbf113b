"""Turn a folder of the user's own images into a day's landing manifest.

``visearch land --images DIR --ds YYYY-MM-DD`` walks ``DIR`` recursively for ``.jpg``, ``.jpeg``,
``.png``, ``.webp`` and ``.gif`` files (any letter case; names starting with ``.`` — hidden files
and folders, macOS ``._`` shadows — are skipped) and writes
``<landing>/manifests/ds=YYYY-MM-DD/uploads.jsonl`` with one ``upsert`` line per image:

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

The manifest is written through :mod:`visearch.core.storage`, so an ``s3://`` landing works too, and
rerunning writes the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from visearch.core.config import Settings, load_settings, to_uri
from visearch.core.jobrun import check_ds, parse_ds
from visearch.core.storage import open_store

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif"})
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


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted by relative POSIX path), hidden names skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@dataclass(frozen=True)
class LandSummary:
    """What :func:`land_folder` wrote."""

    manifest_uri: str
    ds: str
    images: int
    private: int
    copied: int

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
    settings: Settings | None = None,
) -> LandSummary:
    """Write the landing manifest of ``ds`` for every image under the folder ``images``.

    ``landing`` is a root URI or path (default ``settings.landing``). See the module docstring
    for the fields.

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
    files = find_images(root)
    if not files:
        raise ValueError(f"no images (.jpg .jpeg .png .webp .gif) under {root}")
    upload_ts = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    copy_prefix = f"images/{namespace or root.name}"
    lines: list[str] = []
    private = 0
    seen: dict[str, str] = {}
    for path in files:
        relative = path.relative_to(root).as_posix()
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
    key = f"manifests/ds={ds}/uploads.jsonl"
    store.put_text(key, "".join(line + "\n" for line in lines))
    summary = LandSummary(manifest_uri=store.uri(key), ds=ds, images=len(lines), private=private,
                          copied=len(lines) if copy else 0)
    log.info("landed %d images from %s as %s (%d private)", len(lines), root, summary.manifest_uri, private)
    return summary


def _cli(args: argparse.Namespace) -> int:
    summary = land_folder(args.images, args.ds, landing=args.landing, owner=args.owner,
                          private_share=args.private_share, namespace=args.namespace, copy=args.copy)
    print(json.dumps(summary.to_dict()))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch land``."""
    parser = subparsers.add_parser(
        "land",
        help="turn a folder of images into a day's landing manifest",
        description="Write <landing>/manifests/ds=DS/uploads.jsonl for every image under a folder. "
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
    parser.set_defaults(func=_cli)
