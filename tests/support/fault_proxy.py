"""A fault-injecting HTTP proxy on loopback, in front of the S3 server of the tests.

Clients (boto3, Spark's S3A) talk to the proxy as if it were the S3 endpoint; the proxy forwards
each request unchanged (same Host header, so SigV4 signatures still verify) unless its
:class:`FaultPlan` says otherwise:

- ``error_share``: answer that share of requests itself with a 503 ``SlowDown`` or 500
  ``InternalError`` (S3's XML error body), without forwarding them;
- ``drop_share``: read the request, then close the connection without any answer;
- ``truncate_share``: forward the headers and half the body of an upload, then cut both
  connections (the server sees a client that went away mid-upload);
- ``fail_paths``: answer 503 to every request whose ``"<METHOD> <path>"`` matches this regex
  (a key that stays unwritable: ``^PUT .*/CURRENT$``), until the plan changes;
- :meth:`FaultProxy.outage`: for a while, reset every connection at once (the server "went away"),
  or after ``outage_after`` requests, for ``outage_seconds``.

Faults are drawn from a seeded generator, one draw a request in arrival order (so the n-th request
meets the same fault in every run). Injected errors and drops happen before forwarding, so
a retried request is never applied twice; a truncated upload reaches the server in part only.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "expect", "content-length"}


@dataclass
class FaultPlan:
    """What the proxy does to requests (shares are probabilities per request)."""

    error_share: float = 0.0
    drop_share: float = 0.0
    truncate_share: float = 0.0
    fail_paths: str = ""
    outage_after: int = 0
    outage_seconds: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        total = self.error_share + self.drop_share + self.truncate_share
        if not 0.0 <= total <= 1.0 or min(self.error_share, self.drop_share, self.truncate_share) < 0:
            raise ValueError(f"fault shares must be >= 0 and sum to <= 1, got {self}")


@dataclass
class _State:
    plan: FaultPlan
    rng: random.Random
    outage_until: float = 0.0
    outage_done: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', as when a server dies."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _error_body(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>fault-proxy</RequestId></Error>").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        super().finish()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _decide(self) -> str:
        state = self.server.state
        with state.lock:
            state.counts["requests"] += 1
            plan, now = state.plan, time.monotonic()
            if plan.outage_after and not state.outage_done and state.counts["requests"] > plan.outage_after:
                state.outage_done = True
                state.outage_until = now + plan.outage_seconds
                log.warning("fault proxy: outage of %.1fs after %d requests", plan.outage_seconds, plan.outage_after)
            if now < state.outage_until:
                state.counts["reset"] += 1
                return "reset"
            if plan.fail_paths and re.search(plan.fail_paths, f"{self.command} {self.path}"):
                state.counts["error"] += 1
                return "error503"
            draw = state.rng.random()
            if draw < plan.error_share:
                state.counts["error"] += 1
                return "error503" if draw < plan.error_share / 2 else "error500"
            if draw < plan.error_share + plan.drop_share:
                state.counts["drop"] += 1
                return "drop"
            if draw < plan.error_share + plan.drop_share + plan.truncate_share and self.command in ("PUT", "POST") \
                    and int(self.headers.get("Content-Length") or 0) > 1:
                state.counts["truncate"] += 1
                return "truncate"
            state.counts["forwarded"] += 1
            return "forward"

    def _connect(self) -> http.client.HTTPConnection:
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=120)
        return self.upstream

    def _headers(self, length: int) -> dict[str, str]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(length)
        return headers

    def _proxy(self) -> None:
        decision = self._decide()
        if decision == "reset":
            self.close_connection = True
            _reset(self.connection)
            return
        if decision == "truncate":
            length = int(self.headers.get("Content-Length") or 0)
            part = self.rfile.read(length // 2)
            upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port), timeout=30)
            head = f"{self.command} {self.path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in self._headers(length).items()) + "\r\n"
            upstream.sendall(head.encode("latin-1") + part)
            time.sleep(0.05)
            _reset(upstream)
            self.close_connection = True
            _reset(self.connection)
            return
        body = self._read_body()
        if decision == "drop":
            self.close_connection = True
            _reset(self.connection)
            return
        if decision.startswith("error"):
            status, code = (503, "SlowDown") if decision == "error503" else (500, "InternalError")
            payload = _error_body(code, "injected by the fault proxy")
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        for attempt in range(2):  # the server may have closed an idle keep-alive connection
            conn = self._connect()
            try:
                conn.request(self.command, self.path, body=body, headers=self._headers(len(body)))
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self.upstream = None
                if attempt:
                    raise
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        declared = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", declared if declared is not None else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port: int, plan: FaultPlan) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream_port = upstream_port
        self.state = _State(plan, random.Random(plan.seed))


class FaultProxy:
    """The running proxy: its endpoint, its plan (changeable while it runs) and what it did."""

    def __init__(self, upstream_port: int, plan: FaultPlan | None = None) -> None:
        self._server = _Server(upstream_port, plan or FaultPlan())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """The URL clients use instead of the S3 server's."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def counts(self) -> Counter[str]:
        """Requests seen and what was done to them: forwarded, error, drop, truncate, reset."""
        with self._server.state.lock:
            return Counter(self._server.state.counts)

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan (and reseed); counts are kept."""
        state = self._server.state
        with state.lock:
            state.plan, state.rng, state.outage_done = plan, random.Random(plan.seed), False

    def outage(self, seconds: float) -> None:
        """Reset every connection for the next ``seconds``."""
        with self._server.state.lock:
            self._server.state.outage_until = time.monotonic() + seconds

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
