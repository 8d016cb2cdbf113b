"""Validation of what users upload: image bytes, and the upload-manifest records that point at them.

Pure functions (no Spark): the ingest job calls them on executors, tests call them directly.

Images — :func:`validate_image` returns :class:`ImageInfo` or a :class:`Rejection` with a reason
code; it never raises on bad bytes. In order:

1. ``empty_file`` (0 bytes), ``too_large_bytes`` (over ``max_bytes``);
2. ``not_an_image`` (no Pillow plugin recognises the header), ``format_not_allowed``;
3. ``decompression_bomb``: the pixel count *declared in the header* is checked before anything
   is decoded (Pillow's own ``MAX_IMAGE_PIXELS`` guard is raised to ``max_pixels`` for the call
   so that ours is the limit that applies, and its warning is silenced since we reject anyway);
4. ``truncated`` / ``corrupt``: the image (the first frame of an animation) is decoded in full
   with ``ImageFile.LOAD_TRUNCATED_IMAGES`` forced off for the call, so a cut-off file is caught;
5. sha256 of the bytes, width and height *after* EXIF orientation, format, mode, and the pHash.

Any colour mode and bit depth is accepted (1, L, LA, P with transparency, RGB(A), CMYK, I;16, I,
F). MPO (the multi-picture JPEG of phone cameras) is a JPEG whose first picture is the photo;
it is reported and allowed as ``JPEG``.

The fast path (default) decodes a JPEG in Pillow's draft mode: libjpeg scales by 1/2..1/8
inside the IDCT, so every entropy-coded byte is still read and checked (truncation is still
caught: the file must be consumed to the end) while the pixel work drops by up to 64×. The
hash is then taken from that small image. Other formats are decoded in full and shrunk with
``Image.reduce`` before hashing. ``fast=False`` is the baseline ``visearch bench ingest``
compares against: full-resolution decode, hash from the full image. The test suite checks that
both give the same verdict on damaged files and hashes within a few bits.

:func:`validate_uri` asks the storage for the object's size (a stat, or an S3 HEAD) before reading
anything: a missing object (or bucket) is ``missing_file``, an empty one ``empty_file``, one over
``max_bytes`` ``too_large_bytes`` without a byte read; then it reads at most ``max_bytes + 1``
bytes. Any other storage failure (AccessDenied, a bad bucket name, a directory, no permission,
a network error after the retries) is ``unreadable`` with the storage's error code in the
detail: one image's problem never stops the day.

Manifest URIs must lie under an allowed prefix (:func:`uri_allowed`, given to
:func:`parse_upload` by the ingest), else the line is ``bad_value:uri``. Rejection details
never echo the bytes of a file.

Records — :class:`Fields` reads typed fields out of one JSON line and raises
:class:`RecordRejected` with reasons ``malformed_json``, ``missing_field:<name>``,
``wrong_type:<name>``, ``bad_value:<name>`` and ``bad_timestamp`` (field named in the detail);
:func:`parse_upload` uses it for the upload manifest (``visearch.ingest.interactions`` for click events).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlparse

from PIL import Image, ImageFile, UnidentifiedImageError

from visearch.core.config import S3Settings
from visearch.core.storage import ObjectStore, StorageError, open_store, read_uri, sha256_bytes, split_uri
from visearch.ingest.phash import EXIF_TRANSPOSE, MIN_PRESHRINK_SIDE, phash

log = logging.getLogger(__name__)

# Reason codes (the ``reason`` column of silver.quarantine).
EMPTY_FILE = "empty_file"
TOO_LARGE_BYTES = "too_large_bytes"
NOT_AN_IMAGE = "not_an_image"
FORMAT_NOT_ALLOWED = "format_not_allowed"
DECOMPRESSION_BOMB = "decompression_bomb"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
MISSING_FILE = "missing_file"
UNREADABLE = "unreadable"
MALFORMED_JSON = "malformed_json"
BAD_TIMESTAMP = "bad_timestamp"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
UNKNOWN_IMAGE_ID = "unknown_image_id"

IMAGE_REASONS = (
    EMPTY_FILE, TOO_LARGE_BYTES, NOT_AN_IMAGE, FORMAT_NOT_ALLOWED, DECOMPRESSION_BOMB,
    TRUNCATED, CORRUPT, MISSING_FILE, UNREADABLE,
)

ACTIONS = ("upsert", "delete", "set_private", "set_public")
URI_PREFIXES = ("file://", "s3://", "s3a://", "/")
MAX_ID_LENGTH = 512
EXIF_ORIENTATION_TAG = 0x0112
# Formats Pillow reports under another name for what users upload as one of ours.
_FORMAT_ALIASES = {"MPO": "JPEG"}


@dataclass(frozen=True)
class ImageInfo:
    """What ingestion records about a valid image (width and height as displayed, EXIF applied)."""

    sha256: str
    width: int
    height: int
    format: str
    mode: str
    phash: str
    orientation: int = 1


@dataclass(frozen=True)
class Rejection:
    """Why a record or an image was refused: a stable reason code and a human-readable detail."""

    reason: str
    detail: str


class RecordRejected(Exception):
    """Raised inside record parsing; carries the :class:`Rejection` to quarantine."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.detail}")
        self.rejection = rejection


# --------------------------------------------------------------------------------------------
# images


@contextmanager
def _strict_pillow(max_pixels: int) -> Iterator[None]:
    """Pillow's process-wide decoding guards, set for one validation and restored after.

    ``LOAD_TRUNCATED_IMAGES`` off (a truncated file must fail to load, whoever set it) and
    ``MAX_IMAGE_PIXELS`` at least ``max_pixels`` (Pillow refuses at twice its limit at open;
    our header check must be the one that decides).
    """
    old_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    old_limit = Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if old_limit is not None and old_limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated
        Image.MAX_IMAGE_PIXELS = old_limit


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 when absent or unreadable."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception as exc:  # a damaged EXIF block must not sink a decodable photo
        log.debug("unreadable EXIF ignored: %s", exc)
        return 1
    return value if isinstance(value, int) and (value == 1 or value in EXIF_TRANSPOSE) else 1


def _decode_failure(exc: Exception) -> Rejection:
    """Classify an exception raised while decoding pixels."""
    if isinstance(exc, Image.DecompressionBombError):
        return Rejection(DECOMPRESSION_BOMB, str(exc))
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, EOFError) or "truncat" in str(exc).lower():
        return Rejection(TRUNCATED, text)
    return Rejection(CORRUPT, text)


def validate_image(
    data: bytes,
    *,
    max_pixels: int,
    allowed_formats: Collection[str],
    max_bytes: int,
    fast: bool = True,
) -> ImageInfo | Rejection:
    """Check that ``data`` is a complete, allowed, reasonably sized image and describe it.

    Bad bytes never raise: they return a :class:`Rejection` (reasons in the module docstring).
    ``fast`` picks the draft-mode JPEG decode and pre-shrunk hash (see the module docstring).

    Raises:
        ValueError: when a limit is not positive or ``allowed_formats`` is empty (a caller bug).
        MemoryError: when the process runs out of memory decoding an image within the limits.
    """
    if max_pixels <= 0 or max_bytes <= 0:
        raise ValueError(f"limits must be positive, got max_pixels={max_pixels}, max_bytes={max_bytes}")
    allowed = {f.upper() for f in allowed_formats}
    if not allowed:
        raise ValueError("allowed_formats is empty: no image could ever be accepted")
    if not data:
        return Rejection(EMPTY_FILE, "0 bytes")
    if len(data) > max_bytes:
        return Rejection(TOO_LARGE_BYTES, f"{len(data)} bytes > max_bytes={max_bytes}")

    with _strict_pillow(max_pixels):
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            return Rejection(DECOMPRESSION_BOMB, f"declared size refused at open: {exc}")
        except UnidentifiedImageError:
            return Rejection(NOT_AN_IMAGE, f"no image format recognised in {len(data)} bytes")
        except MemoryError:
            raise
        except Exception as exc:  # untrusted bytes meet a parser: any failure means a bad header
            return Rejection(CORRUPT, f"header unreadable: {type(exc).__name__}: {exc}")
        with im:
            fmt = _FORMAT_ALIASES.get(im.format or "", im.format or "")
            if fmt not in allowed:
                return Rejection(FORMAT_NOT_ALLOWED, f"format {im.format or '?'} not in {sorted(allowed)}")
            width, height = im.size
            if width <= 0 or height <= 0:
                return Rejection(CORRUPT, f"declared size {width}x{height}")
            if width * height > max_pixels:
                return Rejection(
                    DECOMPRESSION_BOMB,
                    f"declared {width}x{height} = {width * height} pixels > max_pixels={max_pixels}",
                )
            mode = im.mode
            try:
                if fast and fmt == "JPEG":
                    # DCT-domain downscale (1/2..1/8) so the decoded image keeps >= 64 px a side.
                    im.draft("L", (MIN_PRESHRINK_SIDE, MIN_PRESHRINK_SIDE))
                im.load()  # decodes every byte of the first frame; raises when the file is cut
                orientation = _orientation(im)
                digest = phash(im, orientation, preshrink=fast)
            except MemoryError:
                raise
            except Exception as exc:  # decoder errors come as OSError, ValueError, SyntaxError...
                return _decode_failure(exc)
    if orientation in (5, 6, 7, 8):  # a quarter turn: displayed width is the stored height
        width, height = height, width
    return ImageInfo(
        sha256=sha256_bytes(data),
        width=width,
        height=height,
        format=fmt,
        mode=mode,
        phash=digest,
        orientation=orientation,
    )


@lru_cache(maxsize=16)
def _store(root: str, s3: S3Settings | None) -> ObjectStore:
    """One store (one boto3 client) per bucket root and process, reused across images."""
    return open_store(root, s3)


def read_image_bytes(uri: str, s3: S3Settings | None = None) -> bytes:
    """The bytes of an uploaded image by URI (``file://``, ``s3://`` or an absolute path).

    Raises:
        FileNotFoundError: when the object does not exist.
        ValueError: for an unsupported URI.
    """
    root, key = split_uri(uri)
    if root.startswith("file://"):
        return read_uri(uri, s3)
    return _store(root, s3).get_bytes(key)


def validate_uri(
    uri: str,
    *,
    max_pixels: int,
    allowed_formats: Collection[str],
    max_bytes: int,
    s3: S3Settings | None = None,
    fast: bool = True,
) -> ImageInfo | Rejection:
    """Size, read and :func:`validate_image` an image by URI; never raises for a storage failure.

    The size is asked first (stat or HEAD): ``missing_file`` (no such object or bucket),
    ``empty_file``, ``too_large_bytes`` come without reading; then at most ``max_bytes + 1``
    bytes are read (a file that grew in between is still caught). Every other storage error is
    ``unreadable`` with its code (see the module docstring).

    Raises:
        ValueError: for bad limits (see :func:`validate_image`).
    """
    if max_bytes <= 0:
        raise ValueError(f"limits must be positive, got max_bytes={max_bytes}")
    try:
        root, key = split_uri(uri)
        store = _store(root, s3)
        size = store.size(key)
        if size == 0:
            return Rejection(EMPTY_FILE, "0 bytes")
        if size > max_bytes:
            return Rejection(TOO_LARGE_BYTES, f"{size} bytes > max_bytes={max_bytes} (not read)")
        data = store.get_head(key, max_bytes + 1)
    except FileNotFoundError as exc:
        return Rejection(MISSING_FILE, f"no object at {uri}: {exc}"[:400])
    except StorageError as exc:
        return Rejection(UNREADABLE, f"{exc.code}: {exc}"[:400])
    except (OSError, ValueError) as exc:  # a directory, no permission, a key escaping its root...
        return Rejection(UNREADABLE, f"{type(exc).__name__}: {exc}"[:400])
    except MemoryError:
        raise
    except Exception as exc:  # e.g. a client that cannot be built: still this row's problem only
        return Rejection(UNREADABLE, f"{type(exc).__name__}: {exc}"[:400])
    return validate_image(data, max_pixels=max_pixels, allowed_formats=allowed_formats,
                          max_bytes=max_bytes, fast=fast)


def canonical_uri(uri: str) -> str | None:
    """The form an object URI is compared in against allowed prefixes; None when it has none.

    ``s3a://`` becomes ``s3://``; a ``file://`` URI (no host, or ``localhost``) or an absolute path
    becomes ``file://`` + its real path, with ``..`` and every symbolic link resolved, so that
    neither can lead out of an allowed folder. An S3 key with a ``.`` or ``..`` segment has none.
    """
    if uri.startswith(("s3://", "s3a://")):
        parsed = urlparse("s3://" + uri.split("://", 1)[1])
        if not parsed.netloc or any(part in (".", "..") for part in parsed.path.split("/")):
            return None
        return f"s3://{parsed.netloc}{parsed.path}"
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            return None
        path = unquote(parsed.path)
    elif uri.startswith("/"):
        path = uri
    else:
        return None
    if "\x00" in path or not path.startswith("/"):
        return None
    return "file://" + os.path.realpath(path)


def uri_allowed(uri: str, prefixes: Collection[str]) -> bool:
    """Whether ``uri`` lies under one of ``prefixes`` (whole path segments; see :func:`canonical_uri`)."""
    target = canonical_uri(uri)
    if target is None:
        return False
    for prefix in prefixes:
        base = canonical_uri(prefix)
        if base is not None and target.startswith(base.rstrip("/") + "/"):
            return True
    return False


# --------------------------------------------------------------------------------------------
# JSON records


def missing_field(name: str) -> str:
    """Reason code for a required field that is absent or null."""
    return f"missing_field:{name}"


def wrong_type(name: str) -> str:
    """Reason code for a field of the wrong JSON type."""
    return f"wrong_type:{name}"


def bad_value(name: str) -> str:
    """Reason code for a field of the right type but an impossible value."""
    return f"bad_value:{name}"


def parse_timestamp(value: str) -> dt.datetime:
    """An ISO-8601 timestamp as an aware UTC datetime; a naive one is taken as UTC.

    Raises:
        ValueError: when ``value`` is not ISO-8601.
    """
    parsed = dt.datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def load_json_object(line: str) -> dict[str, Any]:
    """Parse one JSONL line that must hold a JSON object.

    Raises:
        RecordRejected: ``malformed_json`` for invalid JSON or a non-object.
    """
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise RecordRejected(Rejection(MALFORMED_JSON, str(exc)[:200])) from exc
    if not isinstance(obj, dict):
        raise RecordRejected(Rejection(MALFORMED_JSON, f"expected a JSON object, got {type(obj).__name__}"))
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class Fields:
    """Typed, validating access to the fields of one JSON object.

    Every accessor raises :class:`RecordRejected` with the reason for the first problem met;
    a JSON ``null`` counts as absent.
    """

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def has(self, name: str) -> bool:
        """Whether the field is present and not null."""
        return self.obj.get(name) is not None

    def _get(self, name: str) -> Any:
        if not self.has(name):
            raise RecordRejected(Rejection(missing_field(name), f"{name} is required"))
        return self.obj[name]

    def string(self, name: str, *, max_length: int = MAX_ID_LENGTH) -> str:
        """A non-blank string of at most ``max_length`` characters."""
        value = self._get(name)
        if not isinstance(value, str):
            raise RecordRejected(Rejection(wrong_type(name), f"{name} must be a string, got {value!r:.80}"))
        if not value.strip() or len(value) > max_length:
            raise RecordRejected(
                Rejection(bad_value(name),
                          f"{name} must be 1..{max_length} non-blank chars, got {value!r:.80}")
            )
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int:
        """An integer in ``[minimum, maximum]`` (JSON booleans and floats are the wrong type)."""
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordRejected(Rejection(wrong_type(name), f"{name} must be an integer, got {value!r:.80}"))
        if not minimum <= value <= maximum:
            raise RecordRejected(
                Rejection(bad_value(name), f"{name} must be in [{minimum}, {maximum}], got {value}")
            )
        return value

    def boolean(self, name: str) -> bool:
        """A JSON boolean."""
        value = self._get(name)
        if not isinstance(value, bool):
            raise RecordRejected(Rejection(wrong_type(name), f"{name} must be a boolean, got {value!r:.80}"))
        return value

    def choice(self, name: str, options: Collection[str]) -> str:
        """A string out of ``options``."""
        value = self._get(name)
        if not isinstance(value, str):
            raise RecordRejected(Rejection(wrong_type(name), f"{name} must be a string, got {value!r:.80}"))
        if value not in options:
            raise RecordRejected(
                Rejection(bad_value(name), f"{name} must be one of {sorted(options)}, got {value!r:.80}")
            )
        return value

    def timestamp(self, name: str) -> dt.datetime:
        """An ISO-8601 timestamp string, as an aware UTC datetime."""
        value = self._get(name)
        if not isinstance(value, str):
            raise RecordRejected(
                Rejection(wrong_type(name), f"{name} must be an ISO-8601 string, got {value!r:.80}")
            )
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise RecordRejected(Rejection(BAD_TIMESTAMP, f"{name}={value!r:.80}: {exc}")) from exc

    def string_list(self, name: str, *, max_items: int = 256) -> list[str]:
        """A JSON array of strings (at most ``max_items``)."""
        value = self._get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecordRejected(
                Rejection(wrong_type(name), f"{name} must be an array of strings, got {value!r:.80}")
            )
        if len(value) > max_items:
            raise RecordRejected(
                Rejection(bad_value(name), f"{name} has {len(value)} items > {max_items}")
            )
        return value


@dataclass(frozen=True)
class UploadRecord:
    """One valid line of an upload manifest.

    ``uri``, ``owner_id`` and ``upload_ts`` are set for upserts (optional otherwise);
    ``is_private`` is the flag the line sets (None for a delete: unchanged).
    """

    image_id: str
    action: str
    uri: str | None
    owner_id: str | None
    upload_ts: dt.datetime | None
    tags: tuple[str, ...]
    is_private: bool | None


def parse_upload(line: str, allowed_uri_prefixes: Collection[str] | None = None) -> UploadRecord | Rejection:
    """Validate one upload-manifest line.

    Fields: ``image_id`` and ``action`` (upsert | delete | set_private | set_public) always;
    ``uri`` (``file://``, ``s3://`` or an absolute path), ``owner_id`` and ``upload_ts`` for an
    upsert; ``tags`` (array of strings, default empty) and ``is_private`` (default false) optional.
    Fields present on other actions are type-checked too. When ``allowed_uri_prefixes`` is given
    (the ingest always gives it), a ``uri`` outside them is ``bad_value:uri`` (:func:`uri_allowed`).
    """
    try:
        fields = Fields(load_json_object(line))
        image_id = fields.string("image_id")
        action = fields.choice("action", ACTIONS)
        upsert = action == "upsert"
        uri = fields.string("uri", max_length=4096) if upsert or fields.has("uri") else None
        if uri is not None and not uri.startswith(URI_PREFIXES):
            raise RecordRejected(
                Rejection(bad_value("uri"),
                          f"uri must be file://, s3:// or an absolute path, got {uri!r:.80}")
            )
        if uri is not None and allowed_uri_prefixes is not None and not uri_allowed(uri, allowed_uri_prefixes):
            raise RecordRejected(
                Rejection(bad_value("uri"),
                          f"uri {uri!r:.120} is outside the allowed prefixes (ingest.allowed_uri_prefixes: "
                          "by default the landing root and the folders landed)")
            )
        owner_id = fields.string("owner_id") if upsert or fields.has("owner_id") else None
        upload_ts = fields.timestamp("upload_ts") if upsert or fields.has("upload_ts") else None
        tags = tuple(fields.string_list("tags")) if fields.has("tags") else ()
        flag = fields.boolean("is_private") if fields.has("is_private") else None
    except RecordRejected as exc:
        return exc.rejection
    if action in ("set_private", "set_public"):
        flag = action == "set_private"
    elif upsert and flag is None:
        flag = False
    return UploadRecord(image_id=image_id, action=action, uri=uri, owner_id=owner_id,
                        upload_ts=upload_ts, tags=tags, is_private=flag)
