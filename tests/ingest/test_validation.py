"""Image validation (every bad input of the issue, every awkward mode) and upload-record parsing."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.support import images as I
from visearch.ingest.phash import hamming_distance, phash
from visearch.ingest.validation import (
    ImageInfo,
    Rejection,
    UploadRecord,
    parse_upload,
    uri_allowed,
    validate_image,
    validate_uri,
)

LIMITS: dict[str, Any] = {"max_pixels": 50_000_000, "allowed_formats": ("JPEG", "PNG", "WEBP", "GIF"),
                          "max_bytes": 1 << 20}


def check(data: bytes, *, fast: bool = True, **overrides: Any) -> ImageInfo | Rejection:
    return validate_image(data, **{**LIMITS, **overrides}, fast=fast)


def ok(data: bytes, **overrides: Any) -> ImageInfo:
    result = check(data, **overrides)
    assert isinstance(result, ImageInfo), result
    return result


def reason(data: bytes, **overrides: Any) -> str:
    result = check(data, **overrides)
    assert isinstance(result, Rejection), result
    return result.reason


def hash_of(im: Image.Image) -> str:
    return phash(im, preshrink=False)


# ---------------------------------------------------------------------------- good images


def test_validate_image__rgb_jpeg_described() -> None:
    data = I.jpeg(1, 64, 48)
    info = ok(data)
    assert (info.width, info.height, info.format, info.mode, info.orientation) == (64, 48, "JPEG", "RGB", 1)
    assert len(info.sha256) == 64 and len(info.phash) == 16
    assert info.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_validate_image__other_allowed_formats(fmt: str) -> None:
    info = ok(getattr(I, fmt)(2))
    assert info.format == fmt.upper() and (info.width, info.height) == (64, 48)


def test_validate_image__cmyk_jpeg_accepted_and_hashed_like_its_rgb_source() -> None:
    info = ok(I.cmyk_jpeg(3))
    assert (info.mode, info.format) == ("CMYK", "JPEG")
    assert hamming_distance(info.phash, hash_of(I.photo(3))) <= 8


def test_validate_image__16bit_png_keeps_its_range() -> None:
    info = ok(I.png16(4))
    assert info.mode.startswith("I;16")
    # Pillow's convert("L") clips I;16 at 255 (an all-white picture); the hash must see the picture.
    assert hamming_distance(info.phash, hash_of(I.photo(4).convert("L"))) <= 2
    assert info.phash != hash_of(Image.new("L", (64, 48), 255))


def test_validate_image__palette_png_with_transparency() -> None:
    info = ok(I.palette_png_transparent(5))
    assert (info.mode, info.format) == ("P", "PNG")


def test_validate_image__animated_gif_hashes_first_frame() -> None:
    info = ok(I.animated_gif(6, frames=3))
    assert info.format == "GIF"
    first, second = hash_of(I.photo(6)), hash_of(I.photo(7))
    assert hamming_distance(info.phash, first) < hamming_distance(info.phash, second)
    assert hamming_distance(info.phash, first) <= 8


def test_validate_image__exif_rotation_applied_to_size_and_hash() -> None:
    data, upright = I.exif_rotated_jpeg(8, orientation=6)
    info = ok(data)
    assert info.orientation == 6
    assert (info.width, info.height) == upright.size == (64, 40)  # stored pixels are 40 wide, 64 high
    assert hamming_distance(info.phash, hash_of(upright)) <= 4
    stored_hash = hash_of(Image.open(io.BytesIO(data)))
    assert hamming_distance(info.phash, stored_hash) > 12  # sideways, it is another picture


def test_validate_image__mpo_is_reported_as_jpeg() -> None:
    data = I.encode(I.photo(9), "MPO", save_all=True, append_images=[I.photo(10)])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert ok(data).format == "JPEG"


# ---------------------------------------------------------------------------- bad inputs


def test_validate_image__zero_byte_file() -> None:
    assert reason(b"") == "empty_file"


def test_validate_image__text_with_jpg_name() -> None:
    assert reason(I.text_as_jpg()) == "not_an_image"


def test_validate_image__too_many_bytes() -> None:
    assert reason(I.jpeg(11), max_bytes=100) == "too_large_bytes"


@pytest.mark.parametrize("fast", [True, False])
def test_validate_image__truncated_jpeg(fast: bool) -> None:
    result = check(I.truncated_jpeg(12), fast=fast)
    assert isinstance(result, Rejection) and result.reason == "truncated", result


def test_validate_image__truncated_png() -> None:
    data = I.png(13, 96, 64)
    assert reason(data[: len(data) // 2]) == "truncated"


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (10_000, 10_000), (8_000, 8_000)])
def test_validate_image__pixel_bomb_refused_from_header(width: int, height: int) -> None:
    # 100k² is past Pillow's own hard limit, 10k² only past its warning, 8k² past ours alone;
    # the file has no pixel data to speak of, so a decode attempt would say "truncated" instead.
    result = check(I.png_header_only(width, height))
    assert isinstance(result, Rejection) and result.reason == "decompression_bomb", result
    assert str(width) in result.detail or str(width * height) in result.detail


def test_validate_image__max_pixels_is_our_limit_not_pillows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x48 is over twice that
    assert ok(I.jpeg(14), max_pixels=10_000).width == 64
    assert Image.MAX_IMAGE_PIXELS == 100  # restored after the call
    assert reason(I.jpeg(14), max_pixels=1_000) == "decompression_bomb"


def test_validate_image__truncation_caught_even_when_pillow_lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert reason(I.truncated_jpeg(15)) == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored after the call


def test_validate_image__format_not_allowed() -> None:
    assert reason(I.bmp(16)) == "format_not_allowed"
    assert reason(I.png(16), allowed_formats=("JPEG",)) == "format_not_allowed"


def test_validate_image__bad_limits_raise() -> None:
    with pytest.raises(ValueError, match="max_pixels=0"):
        check(I.jpeg(17), max_pixels=0)
    with pytest.raises(ValueError, match="allowed_formats"):
        check(I.jpeg(17), allowed_formats=())


def test_validate_image__fast_and_baseline_agree_on_damaged_files() -> None:
    rng = np.random.default_rng(0)
    good = I.jpeg(18, 320, 240)
    progressive = I.encode(I.photo(19, 320, 240), "JPEG", quality=90, progressive=True)
    truncated = [good[:cut] for cut in np.linspace(200, len(good) - 1, 12).astype(int)]
    truncated += [progressive[:cut] for cut in np.linspace(200, len(progressive) - 1, 6).astype(int)]
    variants = list(truncated)
    for _ in range(12):  # random byte flips in the entropy-coded data
        damaged = bytearray(good)
        for pos in rng.integers(len(good) // 3, len(good) - 4, size=3):
            damaged[pos] ^= 0xFF
        variants.append(bytes(damaged))
    for data in variants:
        fast, base = check(data, fast=True), check(data, fast=False)
        assert type(fast) is type(base), (len(data), fast, base)
        if isinstance(fast, Rejection) and isinstance(base, Rejection):
            assert fast.reason == base.reason
    # Every cut is refused, even one byte short of the end: the first 200 bytes end inside the
    # headers (corrupt), every longer cut inside the entropy-coded data (truncated).
    for data in truncated:
        for fast in (True, False):
            result = check(data, fast=fast)
            assert isinstance(result, Rejection), (len(data), fast, result)
            assert result.reason == ("corrupt" if len(data) == 200 else "truncated"), (len(data), fast, result)


def test_validate_image__fast_hash_close_to_full_resolution_hash() -> None:
    for seed in range(5):
        data = I.jpeg(20 + seed, 640, 480)
        fast, base = check(data, fast=True), check(data, fast=False)
        assert isinstance(fast, ImageInfo) and isinstance(base, ImageInfo)
        assert (fast.width, fast.height, fast.sha256) == (base.width, base.height, base.sha256)
        assert hamming_distance(fast.phash, base.phash) <= 6


def test_validate_image__bad_bytes_never_raise() -> None:
    rng = np.random.default_rng(1)
    samples = [I.jpeg(30), I.png(30), I.animated_gif(30), I.webp(30)]
    for sample in samples:
        for _ in range(15):
            cut = int(rng.integers(1, len(sample)))
            noisy = bytearray(sample[:cut])
            noisy[int(rng.integers(0, cut))] ^= 0x5A
            assert isinstance(check(bytes(noisy)), ImageInfo | Rejection)


# ---------------------------------------------------------------------------- by URI


def test_validate_uri__missing_file(tmp_path: Path) -> None:
    result = validate_uri(f"file://{tmp_path}/nope.jpg", **LIMITS)
    assert isinstance(result, Rejection) and result.reason == "missing_file"


def test_validate_uri__directory_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    result = validate_uri(str(tmp_path / "dir.jpg"), **LIMITS)
    assert isinstance(result, Rejection) and result.reason in ("unreadable", "missing_file")


def test_validate_uri__reads_file_uri_and_plain_path(tmp_path: Path) -> None:
    path = tmp_path / "a photo.jpg"
    path.write_bytes(I.jpeg(31))
    assert isinstance(validate_uri(f"file://{path}", **LIMITS), ImageInfo)
    assert isinstance(validate_uri(str(path), **LIMITS), ImageInfo)


def test_validate_image__not_an_image_echoes_no_bytes() -> None:
    result = check(b"SECRET-TOKEN-1234\n" * 8)
    assert isinstance(result, Rejection) and result.reason == "not_an_image"
    assert "SECRET" not in result.detail and "TOKEN" not in result.detail


def _refuse_reads(monkeypatch: pytest.MonkeyPatch, store: type) -> None:
    """Make reading an object's bytes fail the test: only its size may be asked."""
    def refuse(*_: Any, **__: Any) -> bytes:
        raise AssertionError("the object was read before its size was checked")

    monkeypatch.setattr(store, "get_head", refuse)
    monkeypatch.setattr(store, "get_bytes", refuse)


def test_validate_uri__size_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visearch.core.storage import LocalStore

    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(3 << 30)  # 3 GiB, sparse: reading it whole would need 3 GiB of memory
    _refuse_reads(monkeypatch, LocalStore)
    result = validate_uri(str(huge), **LIMITS)
    assert isinstance(result, Rejection) and result.reason == "too_large_bytes", result
    assert "not read" in result.detail
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert validate_uri(str(empty), **LIMITS) == Rejection("empty_file", "0 bytes")


def test_validate_uri__a_file_that_grows_after_the_stat_is_still_refused(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from visearch.core.storage import LocalStore

    path = tmp_path / "growing.jpg"
    path.write_bytes(I.jpeg(1))
    monkeypatch.setattr(LocalStore, "size", lambda self, key: 10)  # as if stat ran before it grew
    path.write_bytes(b"\xff" * (LIMITS["max_bytes"] + 100))
    result = validate_uri(str(path), **LIMITS)
    assert isinstance(result, Rejection) and result.reason == "too_large_bytes"


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("file:///land/images/a.jpg", True),
        ("/land/images/a.jpg", True),
        ("file://localhost/land/a.jpg", True),
        ("file:///land", False),  # the prefix itself is a folder, not an object under it
        ("file:///landing-evil/a.jpg", False),  # a sibling sharing the prefix's letters
        ("file:///land/../etc/passwd", False),
        ("/land/../etc/passwd", False),
        ("/land/%2E%2E/x.jpg", True),  # a bare path is not percent-decoded: a folder named %2E%2E
        ("file:///land/%2e%2e/etc/passwd", False),
        ("file://evil.example/land/a.jpg", False),
        ("file:///etc/hostname", False),
        ("s3://photos/2026/a.jpg", True),
        ("s3a://photos/2026/a.jpg", True),
        ("s3://photos/2026-evil/a.jpg", False),
        ("s3://photos/2026/../2025/a.jpg", False),
        ("s3://other-bucket/2026/a.jpg", False),
        ("relative/a.jpg", False),
    ],
)
def test_uri_allowed__only_under_a_prefix(uri: str, allowed: bool) -> None:
    assert uri_allowed(uri, ["file:///land/", "s3://photos/2026"]) is allowed


def test_parse_upload__uri_outside_the_allowed_prefixes_is_bad_value(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"SECRET")
    (allowed / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (allowed / "photo.jpg").write_bytes(I.jpeg(3))
    prefixes = [f"file://{allowed}"]
    assert isinstance(parse_upload(upload(uri=f"file://{allowed}/photo.jpg"), prefixes), UploadRecord)
    for uri in (f"file://{allowed}/link.jpg", f"file://{tmp_path}/secret.jpg", "s3://any/x.jpg"):
        result = parse_upload(upload(uri=uri), prefixes)
        assert isinstance(result, Rejection) and result.reason == "bad_value:uri", (uri, result)
        assert "outside the allowed prefixes" in result.detail and "SECRET" not in result.detail
    assert isinstance(parse_upload(upload(uri="file:///etc/hostname")), UploadRecord)  # no prefixes: no check


# ---------------------------------------------------------------------------- upload records


def upload(**fields: Any) -> str:
    base = {"image_id": "img-1", "uri": "file:///x/1.jpg", "owner_id": "u1",
            "upload_ts": "2026-01-01T10:00:00Z", "tags": ["cat"], "is_private": False, "action": "upsert"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_parse_upload__good_upsert() -> None:
    record = parse_upload(upload())
    assert record == UploadRecord(image_id="img-1", action="upsert", uri="file:///x/1.jpg", owner_id="u1",
                                  upload_ts=dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC), tags=("cat",),
                                  is_private=False)


def test_parse_upload__defaults_and_offsets() -> None:
    record = parse_upload(upload(tags=..., is_private=..., upload_ts="2026-01-01T12:00:00+02:00"))
    assert isinstance(record, UploadRecord)
    assert (record.tags, record.is_private) == ((), False)
    assert record.upload_ts == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)


@pytest.mark.parametrize(("action", "flag"), [("set_private", True), ("set_public", False), ("delete", None)])
def test_parse_upload__actions_need_only_the_id(action: str, flag: bool | None) -> None:
    record = parse_upload(json.dumps({"image_id": "img-9", "action": action}))
    assert isinstance(record, UploadRecord)
    assert (record.action, record.is_private, record.uri) == (action, flag, None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "malformed_json"),
        ("[1, 2]", "malformed_json"),
        ('{"image_id": NaN}', "malformed_json"),
        (upload(image_id=...), "missing_field:image_id"),
        (upload(image_id=None), "missing_field:image_id"),
        (upload(image_id=7), "wrong_type:image_id"),
        (upload(image_id="  "), "bad_value:image_id"),
        (upload(action="rename"), "bad_value:action"),
        (upload(action=...), "missing_field:action"),
        (upload(uri=...), "missing_field:uri"),
        (upload(uri="http://example.com/a.jpg"), "bad_value:uri"),
        (upload(owner_id=...), "missing_field:owner_id"),
        (upload(upload_ts="yesterday"), "bad_timestamp"),
        (upload(upload_ts=1767225600), "wrong_type:upload_ts"),
        (upload(tags="cat"), "wrong_type:tags"),
        (upload(tags=["cat", 3]), "wrong_type:tags"),
        (upload(is_private="no"), "wrong_type:is_private"),
    ],
)
def test_parse_upload__rejections(line: str, expected: str) -> None:
    result = parse_upload(line)
    assert isinstance(result, Rejection), result
    assert result.reason == expected


@pytest.mark.s3
def test_validate_uri__reads_from_s3(s3_server: Any) -> None:
    from visearch.core.config import S3Settings
    from visearch.core.storage import open_store

    s3_server.create_bucket("uploads-test")
    s3 = S3Settings(endpoint=s3_server.endpoint)
    store = open_store("s3://uploads-test/images", s3)
    data = I.jpeg(32)
    store.put_bytes("a/1.jpg", data)
    info = validate_uri("s3://uploads-test/images/a/1.jpg", **LIMITS, s3=s3)
    assert isinstance(info, ImageInfo) and info.sha256 == hashlib.sha256(data).hexdigest()
    missing = validate_uri("s3://uploads-test/images/a/nope.jpg", **LIMITS, s3=s3)
    assert isinstance(missing, Rejection) and missing.reason == "missing_file"


@pytest.mark.s3
def test_validate_uri__s3_size_checked_before_reading(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from visearch.core.config import S3Settings
    from visearch.core.storage import S3Store, open_store

    s3_server.create_bucket("uploads-size")
    s3 = S3Settings(endpoint=s3_server.endpoint)
    open_store("s3://uploads-size", s3).put_bytes("big.jpg", b"\xff" * 5000)
    _refuse_reads(monkeypatch, S3Store)
    result = validate_uri("s3://uploads-size/big.jpg", **{**LIMITS, "max_bytes": 4000}, s3=s3)
    assert isinstance(result, Rejection) and result.reason == "too_large_bytes" and "not read" in result.detail


@pytest.mark.s3
def test_validate_uri__every_s3_error_is_a_rejection_with_its_reason(s3_server: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from visearch.core.config import S3Settings
    from visearch.ingest import validation

    s3_server.create_bucket("uploads-errors")
    s3 = S3Settings(endpoint=s3_server.endpoint)
    cases = {
        "s3://uploads-errors/nope.jpg": "missing_file",  # NoSuchKey
        "s3://no-such-bucket-here/a.jpg": "missing_file",  # NoSuchBucket
        "s3://bad%bucket/a.jpg": "unreadable",  # refused by the client: not a bucket name
        "s3://Bad_Bucket_Name/a.jpg": "missing_file",  # S3Proxy answers 404 (AWS: 400, unreadable)
    }
    for uri, expected in cases.items():
        result = validate_uri(uri, **LIMITS, s3=s3)
        assert isinstance(result, Rejection) and result.reason == expected, (uri, result)
    # Refused credentials (AccessDenied / SignatureDoesNotMatch) and an endpoint that does not answer.
    import boto3

    validation._store.cache_clear()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a new session reads the wrong secret
    try:
        denied = validate_uri("s3://uploads-errors/nope.jpg", **LIMITS, s3=S3Settings(endpoint=s3_server.endpoint,
                                                                                      max_attempts=1))
        down = validate_uri("s3://uploads-errors/a.jpg", **LIMITS,
                            s3=S3Settings(endpoint="http://127.0.0.1:9", max_attempts=1))
    finally:
        validation._store.cache_clear()
    assert isinstance(denied, Rejection) and denied.reason == "unreadable" and "403" in denied.detail, denied
    assert isinstance(down, Rejection) and down.reason == "unreadable", down
