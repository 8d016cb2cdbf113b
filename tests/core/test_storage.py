from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from visearch.core.config import S3Settings
from visearch.core.storage import LocalStore, ObjectStore, open_store, read_uri, sha256_file, split_uri


def _exercise(store: ObjectStore, tmp_path: Path) -> None:
    data = b"hello visearch"
    assert store.put_bytes("a/b/x.bin", data) == hashlib.sha256(data).hexdigest()
    assert store.exists("a/b/x.bin") and not store.exists("a/b/missing")
    assert store.get_bytes("a/b/x.bin") == data
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    assert store.put_file("a/big.bin", big) == sha256_file(big)
    out = store.get_file("a/big.bin", tmp_path / "down" / "big.bin")
    assert sha256_file(out) == sha256_file(big)
    assert store.list("a/") == ["a/b/x.bin", "a/big.bin"]
    assert store.list("a/b/") == ["a/b/x.bin"]
    assert store.list("a/b") == ["a/b/x.bin", "a/big.bin"]  # S3 semantics: a string prefix
    assert store.read_pointer("CURRENT") is None
    store.write_pointer("CURRENT", "build-1")
    store.write_pointer("CURRENT", "build-2")
    assert store.read_pointer("CURRENT") == "build-2"
    with pytest.raises(ValueError):
        store.write_pointer("CURRENT", "two\nlines")
    with pytest.raises(FileNotFoundError):
        store.get_bytes("nope")
    assert store.delete_prefix("a/") == 2
    assert store.list("a/") == []
    store.delete("a/never-existed")


def test_local_store__put_get_list_pointer(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'root'}")
    assert isinstance(store, LocalStore)
    _exercise(store, tmp_path)


def test_local_store__no_temporary_files_left_behind(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'root'}")
    store.put_bytes("k", b"x")
    assert [p.name for p in (tmp_path / "root").iterdir()] == ["k"]


def test_local_store__key_cannot_escape_root(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'root'}")
    with pytest.raises(ValueError, match="escapes"):
        store.put_bytes("../outside", b"x")


def test_read_uri__file_uri_and_plain_path(tmp_path: Path) -> None:
    path = tmp_path / "img.jpg"
    path.write_bytes(b"abc")
    assert read_uri(f"file://{path}") == b"abc"
    assert read_uri(str(path)) == b"abc"
    assert split_uri("s3://bucket/a/b.jpg") == ("s3://bucket", "a/b.jpg")
    with pytest.raises(FileNotFoundError):
        read_uri(f"file://{tmp_path / 'missing.jpg'}")


def test_open_store__unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_store("ftp://x/y")


@pytest.mark.s3
def test_s3_store__against_s3proxy_multipart(s3_server: object, tmp_path: Path) -> None:
    server = s3_server
    server.create_bucket("visearch-storage")  # type: ignore[attr-defined]
    settings = S3Settings(endpoint=server.endpoint, multipart_threshold_mb=5)  # type: ignore[attr-defined]
    store = open_store("s3://visearch-storage/prefix", settings)
    _exercise(store, tmp_path)
    # The file uploaded above was 12 MiB with a 5 MiB threshold: a real multipart upload.
    assert read_uri("s3://visearch-storage/prefix/CURRENT", settings).strip() == b"build-2"
