"""Object storage: the local filesystem for ``file://`` roots, boto3 for ``s3://`` roots.

Every write goes to a temporary name first and becomes visible whole (a rename on disk; a single
PUT or a completed multipart upload on S3), so a reader never sees half an object. Pointers
(``CURRENT``, ``CHAMPION``) are small objects written last by the caller. :meth:`ObjectStore.swap_pointer`
moves a pointer only if it still names what the caller read (compare-and-swap): a lock file around
read-compare-write on disk, a conditional PUT (``If-Match`` / ``If-None-Match``) on S3.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from visearch.core import faults
from visearch.core.config import S3Settings

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024
# S3 error codes that mean "there is no such object" (the key, or the bucket holding it).
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


class StorageError(OSError):
    """A storage request that failed for a reason other than a missing object.

    ``code`` is the storage's own name for it (``AccessDenied``, ``InvalidBucketName``,
    ``ParamValidationError``, ``EndpointConnectionError``...), for the quarantine's detail.
    """

    def __init__(self, uri: str, code: str, message: str) -> None:
        super().__init__(f"{code} on {uri}: {message}")
        self.uri = uri
        self.code = code


def _s3_failure(uri: str, exc: Exception) -> OSError:
    """A botocore error as FileNotFoundError (missing key or bucket) or :class:`StorageError`."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        if code in _MISSING_CODES:
            return FileNotFoundError(f"{uri} ({code})")
        return StorageError(uri, code, str(error.get("Message") or exc)[:300])
    return StorageError(uri, type(exc).__name__, str(exc)[:300])


_LOCK_SUFFIX = ".lock"


class PointerConflictError(RuntimeError):
    """A pointer changed between the caller's read and its write (another writer moved it)."""

    def __init__(self, uri: str, expected: str | None, found: str | None, detail: str = "") -> None:
        self.uri, self.expected, self.found = uri, expected, found
        super().__init__(f"{uri} changed since it was read: expected {expected or '(absent)'}, found "
                         f"{found or '(absent)'}{detail}; another writer moved it, so this one is not "
                         "applied (re-run to retry against the new value)")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def join(root: str, *parts: str) -> str:
    """Join URI or key parts with single slashes."""
    pieces = [root.rstrip("/")] + [p.strip("/") for p in parts if p]
    return "/".join(pieces)


class ObjectStore(ABC):
    """A bucket-like view of one root URI; keys are relative, slash-separated."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def uri(self, key: str) -> str:
        """The full URI of ``key``."""
        return join(self.root, key)

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key`` atomically; return its sha256."""

    @abstractmethod
    def put_file(self, key: str, path: str | Path) -> str:
        """Upload a local file (multipart when large) atomically; return its sha256."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the whole object.

        Raises:
            FileNotFoundError: when the key does not exist.
        """

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> Path:
        """Download the object to a local path and return it.

        Raises:
            FileNotFoundError: when the key does not exist.
        """

    @abstractmethod
    def size(self, key: str) -> int:
        """The size in bytes of an object, without reading it (a stat, or an S3 HEAD).

        Raises:
            FileNotFoundError: when the key does not exist.
            StorageError: for any other failure of the storage.
        """

    @abstractmethod
    def get_head(self, key: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of an object (a ranged GET on S3).

        Raises:
            FileNotFoundError: when the key does not exist.
            StorageError: for any other failure of the storage.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many."""
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def write_pointer(self, key: str, value: str) -> None:
        """Atomically point ``key`` at ``value`` (e.g. a build id); callers write it last."""
        self.put_bytes(key, self._check_pointer_value(value))

    @staticmethod
    def _check_pointer_value(value: str) -> bytes:
        if not value or "\n" in value:
            raise ValueError(f"pointer value must be one non-empty line, got {value!r}")
        return (value + "\n").encode()

    @abstractmethod
    def swap_pointer(self, key: str, value: str, expected: str | None) -> None:
        """Point ``key`` at ``value`` only if it still names ``expected`` (``None``: not written yet).

        Raises:
            PointerConflictError: when the pointer names something else; it is left as it is.
            ValueError: for an empty or multi-line value.
        """

    def read_pointer(self, key: str) -> str | None:
        """The value a pointer names, or ``None`` when it was never written."""
        if not self.exists(key):
            return None
        return self.get_bytes(key).decode().strip() or None

    def put_text(self, key: str, text: str) -> str:
        """Write UTF-8 text; return its sha256."""
        return self.put_bytes(key, text.encode())

    def get_text(self, key: str) -> str:
        """Read an object as UTF-8 text."""
        return self.get_bytes(key).decode()

    def local_path(self, key: str) -> Path | None:
        """A local path for ``key`` when the store is on this filesystem (for memory-mapping)."""
        return None


class LocalStore(ObjectStore):
    """A ``file://`` root on the local (or a shared) filesystem."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.base = Path(unquote(urlparse(self.root).path))

    def _path(self, key: str) -> Path:
        path = (self.base / key.lstrip("/")).resolve()
        if self.base.resolve() not in (path, *path.parents):
            raise ValueError(f"key {key!r} escapes the store root {self.root}")
        return path

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def _atomic_write(self, key: str, writer: Any) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle:
                writer(handle, digest)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def put_bytes(self, key: str, data: bytes) -> str:
        def writer(handle: BinaryIO, digest: Any) -> None:
            handle.write(data)
            digest.update(data)
            if faults.armed(faults.PARTIAL_WRITE_POINT, key):
                handle.flush()
                faults.point(faults.PARTIAL_WRITE_POINT, key)

        return self._atomic_write(key, writer)

    def put_file(self, key: str, path: str | Path) -> str:
        def writer(handle: BinaryIO, digest: Any) -> None:
            with open(path, "rb") as src:
                for number, chunk in enumerate(iter(lambda: src.read(_CHUNK), b"")):
                    handle.write(chunk)
                    digest.update(chunk)
                    if number == 0 and faults.armed(faults.PARTIAL_WRITE_POINT, key):
                        handle.flush()  # a torn temporary file: the first chunk only
                        faults.point(faults.PARTIAL_WRITE_POINT, key)

        return self._atomic_write(key, writer)

    def swap_pointer(self, key: str, value: str, expected: str | None) -> None:
        """Compare-and-swap under an exclusive ``flock`` on ``.<name>.lock`` next to the pointer: every
        swapper of the same pointer (threads or processes on this host or a filesystem with working
        ``flock``) reads, compares and writes in turn. The lock is released when the process dies."""
        data = self._check_pointer_value(value)
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = target.with_name(f".{target.name}{_LOCK_SUFFIX}")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            found = self.read_pointer(key)
            if found != expected:
                raise PointerConflictError(self.uri(key), expected, found)
            self.put_bytes(key, data)
        finally:
            os.close(fd)  # closing the last descriptor releases the lock

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(self.uri(key))
        return path.read_bytes()

    def get_file(self, key: str, path: str | Path) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(self.uri(key))
        dst = Path(path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(self.uri(key))
        return path.stat().st_size

    def get_head(self, key: str, limit: int) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(self.uri(key))
        with open(path, "rb") as handle:
            return handle.read(limit)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        # S3 semantics: a plain string prefix ("a/b" matches "a/b/x" and "a/big").
        prefix = prefix.lstrip("/")
        folder = prefix if prefix.endswith("/") or not prefix else prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(folder) if folder else self.base
        if not start.is_dir():
            return []
        keys = (str(p.relative_to(self.base)).replace(os.sep, "/") for p in start.rglob("*")
                if p.is_file() and not p.name.endswith(".tmp")
                and not (p.name.startswith(".") and p.name.endswith(_LOCK_SUFFIX)))
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store(ObjectStore):
    """An ``s3://bucket/prefix`` root through boto3 (any S3-compatible endpoint)."""

    def __init__(self, root: str, settings: S3Settings | None = None) -> None:
        super().__init__(root)
        parsed = urlparse(self.root)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.settings = settings or s3_settings_from_env()
        self.client = make_s3_client(self.settings)

    def _key(self, key: str) -> str:
        return join(self.prefix, key) if self.prefix else key.strip("/")

    def put_bytes(self, key: str, data: bytes) -> str:
        faults.point(faults.PARTIAL_WRITE_POINT, key)
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return sha256_bytes(data)

    def swap_pointer(self, key: str, value: str, expected: str | None) -> None:
        """Compare-and-swap with a conditional PUT: ``If-Match: <ETag read>`` (or ``If-None-Match: *``
        when the pointer is absent), which AWS S3 honours (412 ``PreconditionFailed`` or 409
        ``ConditionalRequestConflict`` for the loser). The value is read back afterwards: on a server
        that ignores the conditions (S3Proxy 2.6.0 does), a writer that was overwritten still fails,
        so the last writer is the only one that reports success, but a writer that read back before
        another's PUT may also report success; the Airflow pool ``visearch_writers`` is what keeps
        publishers apart there (see infra/README.md)."""
        from botocore.exceptions import ClientError

        data = self._check_pointer_value(value)
        uri = self.uri(key)
        condition: dict[str, str]
        try:
            head = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            found: str | None = head["Body"].read().decode().strip() or None
            condition = {"IfMatch": head["ETag"]}
        except self.client.exceptions.NoSuchKey:
            found, condition = None, {"IfNoneMatch": "*"}
        if found != expected:
            raise PointerConflictError(uri, expected, found)
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise
            now = self.read_pointer(key)
            if now != value:  # equal: our PUT landed and only its answer was lost (boto3 retried it)
                raise PointerConflictError(uri, expected, now, f" (conditional PUT refused: {code})") from exc
        after = self.read_pointer(key)
        if after != value:
            raise PointerConflictError(uri, expected, after, " (overwritten right after this write)")

    def put_file(self, key: str, path: str | Path) -> str:
        from boto3.s3.transfer import TransferConfig

        threshold = self.settings.multipart_threshold_mb * 1024 * 1024
        config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=max(threshold, 5 << 20))
        callback = faults.progress_point(faults.PARTIAL_WRITE_POINT, key)  # None unless a test armed it
        self.client.upload_file(str(path), self.bucket, self._key(key), Config=config, Callback=callback)
        return sha256_file(path)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(self.uri(key)) from exc
        body: bytes = response["Body"].read()
        return body

    def size(self, key: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(self.uri(key), exc) from exc
        return int(response["ContentLength"])

    def get_head(self, key: str, limit: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if limit <= 0:
            return b""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{limit - 1}")
            body: bytes = response["Body"].read(limit)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(self.uri(key), exc) from exc
        return body

    def get_file(self, key: str, path: str | Path) -> Path:
        dst = Path(path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not self.exists(key):
            raise FileNotFoundError(self.uri(key))
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
        self.client.download_file(self.bucket, self._key(key), str(tmp))
        os.replace(tmp, dst)
        return dst

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for item in page.get("Contents", []):
                # Skip directory markers, and re-check the prefix (some servers match loosely).
                if not item["Key"].endswith("/") and item["Key"].startswith(full):
                    keys.append(item["Key"][strip:])
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def s3_settings_from_env() -> S3Settings:
    """S3 settings from ``VISEARCH_S3_ENDPOINT`` / ``VISEARCH_S3_REGION`` (used by executors)."""
    return S3Settings(
        endpoint=os.environ.get("VISEARCH_S3_ENDPOINT", ""),
        region=os.environ.get("VISEARCH_S3_REGION", "us-east-1"),
    )


def make_s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for the endpoint, path-style where configured, with retries.

    Throttling, 5xx answers and dropped or refused connections are retried with exponential
    backoff and jitter, ``settings.max_attempts`` attempts in all (``settings.retry_mode``:
    ``standard``, or ``adaptive`` to also rate-limit the client when throttled).
    """
    import boto3
    from botocore.config import Config

    retries: Any = {"total_max_attempts": settings.max_attempts, "mode": settings.retry_mode}
    config = Config(
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        retries=retries,
        connect_timeout=10,
        read_timeout=60,
        # Plain checksums only: S3-compatible servers often lack the newer aws-chunked trailers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint or None,
        region_name=settings.region,
        config=config,
    )


def open_store(root: str, s3: S3Settings | None = None) -> ObjectStore:
    """The store for a root URI.

    Raises:
        ValueError: for a scheme other than ``file://`` or ``s3://``.
    """
    if root.startswith("file://"):
        return LocalStore(root)
    if root.startswith(("s3://", "s3a://")):
        return S3Store(root.replace("s3a://", "s3://", 1), s3)
    raise ValueError(f"unsupported storage URI {root!r}: use file:// or s3://")


def split_uri(uri: str) -> tuple[str, str]:
    """Split an object URI into (root, key) so that ``open_store(root)`` can read ``key``.

    Raises:
        ValueError: for an unsupported scheme or a URI without a key.
    """
    if uri.startswith("file://"):
        path = Path(unquote(urlparse(uri).path))
        return "file://" + str(path.parent), path.name
    if uri.startswith(("s3://", "s3a://")):
        parsed = urlparse(uri)
        key = parsed.path.lstrip("/")
        if not key:
            raise ValueError(f"object URI has no key: {uri!r}")
        return f"s3://{parsed.netloc}", key
    if "://" not in uri:
        path = Path(uri).resolve()
        return "file://" + str(path.parent), path.name
    raise ValueError(f"unsupported object URI {uri!r}")


def read_uri(uri: str, s3: S3Settings | None = None) -> bytes:
    """Read one object given its full URI (``file://``, ``s3://`` or a local path).

    Raises:
        FileNotFoundError: when it does not exist.
    """
    root, key = split_uri(uri)
    if root.startswith("file://"):
        path = Path(unquote(urlparse(root).path)) / key
        if not path.is_file():
            raise FileNotFoundError(uri)
        return path.read_bytes()
    return open_store(root, s3).get_bytes(key)


def open_uri_stream(uri: str, s3: S3Settings | None = None) -> io.BytesIO:
    """A seekable in-memory stream of an object (for Pillow)."""
    return io.BytesIO(read_uri(uri, s3))
