"""Where the demo corpus's files go: a local folder written directly, or any object store (``s3://``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from visearch.core.storage import ObjectStore, open_store
from visearch.ingest.landing import file_uri


class DemoSink:
    """Where files go: a local folder written directly, or any object store (``s3://``)."""

    def __init__(self, out: str | Path) -> None:
        text = str(out)
        if text.startswith(("s3://", "s3a://")):
            self.store: ObjectStore | None = open_store(text)
            self.local: Path | None = None
            self.root = self.store.root
        else:
            local = unquote(urlparse(text).path) if text.startswith("file://") else text
            path = Path(local).expanduser().resolve()
            self.store, self.local, self.root = None, path, file_uri(path)

    def uri(self, key: str) -> str:
        """The URI of ``key`` (what manifests and the truth record)."""
        if self.local is not None:
            return file_uri(self.local / key)
        assert self.store is not None
        return self.store.uri(key)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` (parent folders made as needed)."""
        if self.local is not None:
            target = self.local / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            assert self.store is not None
            self.store.put_bytes(key, data)

    def prepare(self) -> None:
        """Clear a previous demo here; refuse a non-empty folder that is not one.

        Raises:
            ValueError: when the destination holds other files.
        """
        prefixes = ("images/", "manifests/", "clicks/", "judgments/", "labels/")
        if self.local is not None:
            if not self.local.exists():
                return
            if not any(self.local.iterdir()):
                return
            if not (self.local / "demo_truth.json").is_file():
                raise ValueError(f"refusing to write demo data into {self.local}: it is not empty and "
                                 "holds no demo_truth.json (not made by demo-data)")
            for prefix in prefixes:
                shutil.rmtree(self.local / prefix.rstrip("/"), ignore_errors=True)
            (self.local / "demo_truth.json").unlink()
            return
        assert self.store is not None
        keys = self.store.list("")
        if not keys:
            return
        if "demo_truth.json" not in keys:
            raise ValueError(f"refusing to write demo data into {self.root}: it is not empty and holds "
                             "no demo_truth.json (not made by demo-data)")
        for prefix in prefixes:
            self.store.delete_prefix(prefix)
        self.store.delete("demo_truth.json")

