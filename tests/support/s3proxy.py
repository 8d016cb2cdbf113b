"""A real S3-compatible server on loopback for tests: S3Proxy (Java, Apache-2.0).

Why S3Proxy: it is a complete S3 HTTP server (SigV4, multipart uploads, listing) with a
filesystem backend, it comes from Maven Central like our Spark jars (no binary download, no
extra toolchain), and it starts in about a second. ``make setup`` records its classpath in
``.s3proxy.classpath``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "visearch"
SECRET_KEY = "visearch-secret"


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """A running S3Proxy process."""

    endpoint: str
    port: int
    basedir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def env(self) -> dict[str, str]:
        """Environment variables that point visearch and boto3 at this server."""
        return {
            "VISEARCH_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def create_bucket(self, name: str) -> None:
        """Create a bucket (idempotent)."""
        from visearch.core.config import S3Settings
        from visearch.core.storage import make_s3_client

        old = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        try:
            client = make_s3_client(S3Settings(endpoint=self.endpoint))
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if name not in existing:
                client.create_bucket(Bucket=name)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def stop(self) -> None:
        """Stop the server (data stays in ``basedir``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_s3proxy(basedir: Path, port: int | None = None, timeout: float = 60.0) -> S3Server:
    """Start S3Proxy with a filesystem backend in ``basedir`` and wait until it answers.

    Raises:
        FileNotFoundError: when ``make setup`` has not resolved S3Proxy's classpath.
        RuntimeError: when the server does not come up in time.
    """
    classpath_file = REPO / ".s3proxy.classpath"
    if not classpath_file.is_file():
        raise FileNotFoundError(f"{classpath_file} missing: run `make setup`")
    port = port or free_port()
    basedir.mkdir(parents=True, exist_ok=True)
    (basedir / "data").mkdir(exist_ok=True)
    props = basedir / "s3proxy.properties"
    props.write_text(
        "\n".join(
            [
                f"s3proxy.endpoint=http://127.0.0.1:{port}",
                "s3proxy.authorization=aws-v2-or-v4",
                f"s3proxy.identity={ACCESS_KEY}",
                f"s3proxy.credential={SECRET_KEY}",
                "jclouds.provider=filesystem",
                f"jclouds.filesystem.basedir={basedir / 'data'}",
            ]
        )
        + "\n"
    )
    log_path = basedir / "s3proxy.log"
    handle = open(log_path, "ab")  # noqa: SIM115 - the process owns it
    process = subprocess.Popen(
        ["java", "-Xmx512m", "-DLOG_LEVEL=warn", "-cp", classpath_file.read_text().strip(), "org.gaul.s3proxy.Main",
         "--properties", str(props)],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"S3Proxy exited with {process.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return S3Server(f"http://127.0.0.1:{port}", port, basedir, process, log_path)
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"S3Proxy did not listen on {port} within {timeout}s; see {log_path}")
