"""``visearch serve``: a small HTTP endpoint over :class:`visearch.serve.search.Searcher` (stdlib only).

Endpoints:

- ``POST /search``: the query image as the raw request body (any ``Content-Type`` but
  multipart), or as the ``image`` field of a ``multipart/form-data`` form. ``crop=x,y,w,h`` (pixels)
  and ``k`` come as query parameters or form fields. Answers ``200`` with the JSON of
  :meth:`visearch.serve.search.SearchResponse.to_dict`.
- ``GET /health``: ``200`` with the live build id, model version, vector count and reload status.

Bad input never gets a 500: every error is JSON ``{"error": message, "status": code}``:
``400`` (bad crop box, zero-area crop, crop outside the image, bad ``k``, malformed form,
empty body), ``404`` (unknown path), ``405`` (wrong method), ``411`` (no Content-Length),
``413`` (body over ``--max-bytes``, or an image over ``search.max_pixels``; an oversize body
announced with ``Expect: 100-continue`` is refused before it is sent), ``415`` (not an image).

The server is a ``ThreadingHTTPServer`` (one thread a connection, HTTP/1.1 keep-alive). A
daemon thread checks ``indexes/<name>/CURRENT`` every ``search.reload_interval_s`` seconds
and hot-swaps a newly published build; requests running at that moment finish on the old build.

Try: visearch serve --port 8080, then
``curl -s --data-binary @photo.jpg 'http://127.0.0.1:8080/search?k=10&crop=0,0,64,64'``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
import time
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from visearch.serve.search import ImageTooLargeError, Searcher, parse_crop
from visearch.train.preprocess import ImageDecodeError

log = logging.getLogger(__name__)

DRAIN_LIMIT = 64 * 1024 * 1024
"""An oversize body up to this size is read and discarded so the client sees the 413 cleanly;
beyond it the connection is closed without reading."""
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and a message for the client."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_size(text: str) -> int:
    """Bytes from ``"10MB"``, ``"512k"``, ``"1.5GiB"`` or a plain number (binary units: 1 MB = 2**20).

    Raises:
        ValueError: for anything else, or a size below one byte.
    """
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ValueError(f"size must look like 10MB, 512KB or 1048576, got {text!r}")
    value = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return value


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body: name -> raw bytes (files and plain fields).

    Raises:
        ValueError: without a boundary, or for a body that is not well-formed multipart.
    """
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart/form-data without a boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("malformed multipart body (missing boundary or closing delimiter)")
    fields: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or b"\r\n\r\n" not in chunk:
            raise ValueError("malformed multipart part (no header block)")
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        part = Message()
        for line in head.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                part[name.strip()] = value.strip()
        field_name = part.get_param("name", header="content-disposition")
        if isinstance(field_name, str) and field_name:
            fields.setdefault(field_name, payload)
    return fields


class SearchHTTPServer(ThreadingHTTPServer):
    """The HTTP server: holds the :class:`Searcher` and the request size limit."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], searcher: Searcher, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        super().__init__(address, SearchHandler)
        self.searcher = searcher
        self.max_bytes = max_bytes

    @property
    def url(self) -> str:
        """``http://host:port`` the server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class SearchHandler(BaseHTTPRequestHandler):
    """Routes ``POST /search`` and ``GET /health``; turns every refusal into a JSON error."""

    protocol_version = "HTTP/1.1"
    server_version = "visearch"
    server: SearchHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Access log through the module logger (debug level) instead of stderr."""
        log.debug("%s %s", self.address_string(), format % args)

    # -- responses ---------------------------------------------------------------------------

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any], *, close: bool = False) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _send_error_json(self, status: HTTPStatus, message: str, *, close: bool = False) -> None:
        self._send_json(status, {"error": message, "status": int(status)}, close=close)

    # -- methods -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        """``GET /health``."""
        path = urlsplit(self.path).path
        if path == "/health":
            self._send_json(HTTPStatus.OK, self.server.searcher.health())
        elif path == "/search":
            self._send_error_json(HTTPStatus.METHOD_NOT_ALLOWED, "use POST /search with an image body")
        else:
            self._send_error_json(HTTPStatus.NOT_FOUND,
                                  f"no such endpoint {path!r}; try POST /search, GET /health")

    def do_POST(self) -> None:
        """``POST /search``."""
        path = urlsplit(self.path).path
        if path != "/search":
            self._discard_body()
            self._send_error_json(HTTPStatus.NOT_FOUND, f"no such endpoint {path!r}; try POST /search")
            return
        started = time.perf_counter()
        try:
            body = self._read_body()
            image, crop, k = self._query(body)
            response = self.server.searcher.search(image, crop, k)
        except RequestError as exc:
            too_large = exc.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            self._send_error_json(exc.status, exc.message, close=too_large)
            return
        except ImageTooLargeError as exc:
            self._send_error_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))
            return
        except ImageDecodeError as exc:
            self._send_error_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"not a decodable image: {exc}")
            return
        except ValueError as exc:  # crop outside the image, zero area, bad k
            self._send_error_json(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except Exception:  # a bug or an unreadable index: logged, and a 500 without internals
            log.exception("search failed")
            self._send_error_json(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (logged on the server)")
            return
        log.info("search k=%d crop=%s -> %d results from %s in %.1fms", k or 0, crop, len(response.results),
                 response.build_id, (time.perf_counter() - started) * 1000.0)
        self._send_json(HTTPStatus.OK, response.to_dict())

    def _method_not_allowed(self) -> None:
        self._discard_body()
        self._send_error_json(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not supported; "
                              "use POST /search or GET /health")

    do_PUT = _method_not_allowed
    do_DELETE = _method_not_allowed
    do_PATCH = _method_not_allowed

    # -- request parsing ---------------------------------------------------------------------

    def handle_expect_100(self) -> bool:
        """Refuse an announced oversize body before the client sends it."""
        length = self.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.server.max_bytes:
            limit = self.server.max_bytes
            self._send_error_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  f"request body of {length} bytes is over the limit of {limit}", close=True)
            return False
        return super().handle_expect_100()

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise RequestError(HTTPStatus.LENGTH_REQUIRED,
                               "chunked uploads are not supported; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        if not length.strip().isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length!r}")
        return int(length)

    def _discard_body(self) -> None:
        try:
            length = self._content_length()
        except RequestError:
            self.close_connection = True
            return
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            got = self.rfile.read(min(length, 1 << 20))
            if not got:
                break
            length -= len(got)

    def _read_body(self) -> bytes:
        length = self._content_length()
        if length > self.server.max_bytes:
            self._discard_body()  # so the client reads the 413 instead of a reset connection
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request body of {length} bytes is over the limit of {self.server.max_bytes}")
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body ended after {len(body)} of {length} bytes")
        return body

    def _query(self, body: bytes) -> tuple[bytes, tuple[int, int, int, int] | None, int | None]:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}
        content_type = self.headers.get("Content-Type", "")
        image = body
        if content_type.lower().startswith("multipart/form-data"):
            try:
                fields = parse_multipart(body, content_type)
            except ValueError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
            if "image" not in fields:
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"the form has no 'image' field (fields: {sorted(fields)})")
            image = fields.pop("image")
            for name in ("crop", "k"):
                if name in fields:
                    params[name] = fields[name].decode("utf-8", "replace")
        if not image:
            raise RequestError(HTTPStatus.BAD_REQUEST, "no image in the request (empty body)")
        crop = parse_crop(params["crop"]) if params.get("crop") else None
        k: int | None = None
        if params.get("k"):
            try:
                k = int(params["k"])
            except ValueError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"k must be an integer, got {params['k']!r}") from exc
        return image, crop, k


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8080, *,
                max_bytes: int = 10 * 1024 * 1024) -> SearchHTTPServer:
    """A bound (not yet serving) server; port 0 picks a free port (see ``server.url``).

    Raises:
        OSError: when the address cannot be bound.
        ValueError: for ``max_bytes`` < 1.
    """
    return SearchHTTPServer((host, port), searcher, max_bytes=max_bytes)


def serve_in_thread(server: SearchHTTPServer) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread (stop with ``server.shutdown()``)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="visearch-http", daemon=True)
    thread.start()
    return thread


def _cmd(args: argparse.Namespace) -> int:
    from visearch.core.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    max_bytes = parse_size(args.max_bytes) if args.max_bytes else settings.search.max_bytes
    searcher = Searcher.from_settings(settings, args.index)
    searcher.start_watching()
    server = make_server(searcher, args.host, args.port, max_bytes=max_bytes)
    log.info("serving %s/%s on %s (max body %d bytes)", settings.index.name if not args.index else args.index,
             searcher.build_id, server.url, max_bytes)
    print(f"visearch serve: {server.url} (POST /search, GET /health); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        server.server_close()
        searcher.close()
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch serve``."""
    parser = subparsers.add_parser(
        "serve", help="serve the published index over HTTP",
        description="HTTP endpoint over the live index build: POST /search (image body or multipart "
                    "form, crop and k as parameters), GET /health. Hot-reloads when CURRENT changes.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--max-bytes", default=None,
                        help="largest accepted request body, e.g. 10MB (default: settings search.max_bytes)")
    parser.add_argument("--index", default=None, help="index name (default: settings index.name)")
    parser.set_defaults(func=_cmd)
