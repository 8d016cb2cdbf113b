"""``visearch serve`` over a real loopback socket: results, input validation, hot reload under load."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import pytest
import torch

from tests.serve.test_search import PHASH_ONLY, DemoIndex, build_demo_index, copy_of, second_build
from visearch.core.config import SearchSettings
from visearch.demo.rendering import png_bomb
from visearch.index.publish import publish_build
from visearch.serve.search import Searcher
from visearch.serve.server import SearchHTTPServer, make_server, parse_multipart, parse_size, serve_in_thread

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)

MAX_BYTES = 64 * 1024


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def request(url: str, method: str = "POST", path: str = "/search", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    """One HTTP request with http.client (so 4xx bodies are readable); JSON body decoded."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return Reply(resp.status, json.loads(raw) if raw else {}, headers)
    finally:
        conn.close()


def multipart(fields: dict[str, bytes | str], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body (files for bytes, plain fields for str) and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
            parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode() + value + b"\r\n")
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode() + value.encode() + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return build_demo_index(tmp_path_factory.mktemp("server-demo"))


@pytest.fixture(scope="module")
def server(demo: DemoIndex) -> Iterator[SearchHTTPServer]:
    searcher = Searcher(demo.store, "main", settings=PHASH_ONLY)
    srv = make_server(searcher, "127.0.0.1", 0, max_bytes=MAX_BYTES)
    thread = serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)
    searcher.close()


def test_health__reports_the_live_build_and_model(server: SearchHTTPServer, demo: DemoIndex) -> None:
    reply = request(server.url, "GET", "/health")
    assert reply.status == 200
    assert reply.body["status"] == "ok"
    assert reply.body["build_id"] == demo.build_id
    assert reply.body["model_version"] == demo.model_version
    assert reply.body["vectors"] == len(demo.ids)


def test_search__raw_body_with_query_parameters(server: SearchHTTPServer, demo: DemoIndex) -> None:
    reply = request(server.url, path="/search?k=7", body=demo.datas[3],
                    headers={"Content-Type": "image/jpeg"})
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    results = reply.body["results"]
    assert len(results) == 7
    assert [r["rank"] for r in results] == list(range(1, 8))
    assert demo.ids[3] not in {r["image_id"] for r in results}
    assert all(r["uri"] == demo.uris[demo.ids.index(r["image_id"])] for r in results)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert reply.body["build_id"] == demo.build_id
    assert set(reply.body["timings_ms"]) == {"decode", "embed", "search", "rerank", "total"}


def test_search__multipart_form_gives_the_same_answer_as_raw_body(server: SearchHTTPServer,
                                                                  demo: DemoIndex) -> None:
    composition = next(i for i in demo.ids if (demo.truth["images"].get(i) or {}).get("composition"))
    data = demo.data(composition)
    body, content_type = multipart({"image": data, "crop": "0,0,48,48", "k": "6"})
    by_form = request(server.url, body=body, headers={"Content-Type": content_type})
    by_raw = request(server.url, path="/search?crop=0,0,48,48&k=6", body=data)
    assert by_form.status == by_raw.status == 200
    assert [r["image_id"] for r in by_form.body["results"]] == [r["image_id"] for r in by_raw.body["results"]]
    assert len(by_form.body["results"]) == 6
    whole = request(server.url, path="/search?k=6", body=data)
    assert [r["image_id"] for r in whole.body["results"]] != [r["image_id"] for r in by_form.body["results"]]


FORM_NO_IMAGE, FORM_TYPE = multipart({"crop": "0,0,4,4"}, boundary="b0undary")
BAD_FORM_TYPE = "multipart/form-data; boundary=xyz"
Body = Any  # bytes, None, or a function of the demo JPEG


BAD_REQUESTS: list[tuple[str, str, str, Body, dict[str, str], int, str]] = [
    ("not-an-image", "POST", "/search", b"hello, I am text", {"Content-Type": "image/jpeg"}, 415, "not"),
    ("empty-body", "POST", "/search", b"", {}, 400, "empty"),
    ("zero-area-crop", "POST", "/search?crop=0,0,0,10", "jpeg", {}, 400, "zero or negative area"),
    ("crop-outside", "POST", "/search?crop=30,30,40,40", "jpeg", {}, 400, "outside"),
    ("crop-not-four-ints", "POST", "/search?crop=1,2,3", "jpeg", {}, 400, "x,y,w,h"),
    ("k-zero", "POST", "/search?k=0", "jpeg", {}, 400, "k must be"),
    ("k-not-int", "POST", "/search?k=ten", "jpeg", {}, 400, "k must be an integer"),
    ("form-without-image", "POST", "/search", FORM_NO_IMAGE, {"Content-Type": FORM_TYPE}, 400, "image"),
    ("malformed-form", "POST", "/search", b"garbage", {"Content-Type": BAD_FORM_TYPE}, 400, "multipart"),
    ("oversize-body", "POST", "/search", b"\xff" * (MAX_BYTES + 1), {}, 413, "over the limit"),
    ("pixel-bomb", "POST", "/search", png_bomb(), {}, 413, "pixels"),
    ("unknown-path", "POST", "/nope", "jpeg", {}, 404, "no such endpoint"),
    ("get-unknown", "GET", "/nope", None, {}, 404, "no such endpoint"),
    ("get-search", "GET", "/search", None, {}, 405, "POST"),
    ("put-search", "PUT", "/search", "jpeg", {}, 405, "not supported"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "message"),
                         [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_search__bad_requests_get_a_4xx_json_error(
    server: SearchHTTPServer, demo: DemoIndex, method: str, path: str, body: Body, headers: dict[str, str],
    status: int, message: str
) -> None:
    data = demo.data(demo.original) if body == "jpeg" else body
    reply = request(server.url, method, path, data, headers)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert reply.body["status"] == status
    assert message in reply.body["error"], reply.body["error"]


def test_search__missing_content_length_gets_411(server: SearchHTTPServer) -> None:
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=30) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = sock.makefile("rb").read()
    assert data.startswith(b"HTTP/1.1 411")
    assert b'"error"' in data


def test_search__oversize_upload_refused_before_it_is_sent_with_expect_100(server: SearchHTTPServer) -> None:
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=30) as sock:
        sock.sendall(f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: {50 * MAX_BYTES}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        data = sock.makefile("rb").read()  # the server answers and closes without reading a body
    assert data.startswith(b"HTTP/1.1 413")
    assert b"over the limit" in data


def test_search__connection_stays_usable_after_a_client_error(
    server: SearchHTTPServer, demo: DemoIndex
) -> None:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=60)
    try:
        conn.request("POST", "/search?crop=0,0,0,0", body=demo.datas[0])
        first = conn.getresponse()
        assert first.status == 400
        first.read()
        conn.request("POST", "/search?k=3", body=demo.datas[0])
        second = conn.getresponse()
        assert second.status == 200
        assert len(json.loads(second.read())["results"]) == 3
    finally:
        conn.close()


def test_search__urllib_client_round_trip(server: SearchHTTPServer, demo: DemoIndex) -> None:
    req = urllib.request.Request(server.url + "/search?k=4", data=demo.datas[1], method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
        assert len(json.loads(resp.read())["results"]) == 4
    bad = urllib.request.Request(server.url + "/search", data=b"not an image", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=60)
    assert info.value.code == 415
    assert "error" in json.loads(info.value.read())


def test_hot_reload__publishing_under_load_drops_no_request(demo: DemoIndex, tmp_path: Path) -> None:
    store = copy_of(demo, tmp_path / "artifacts")
    build2, version2, _ = second_build(demo, store, drop=5, seed=11)
    searcher = Searcher(store, "main", settings=SearchSettings(reload_interval_s=0.1, dup_cosine=2.0))
    searcher.start_watching()
    srv = make_server(searcher, "127.0.0.1", 0, max_bytes=MAX_BYTES)
    thread = serve_in_thread(srv)
    statuses: list[int] = []
    builds: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            try:
                reply = request(srv.url, path="/search?k=5", body=demo.datas[i % len(demo.datas)])
                statuses.append(reply.status)
                builds.append(reply.body.get("build_id", ""))
            except Exception as exc:  # a dropped connection fails the test
                failures.append(repr(exc))
            i += 4

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 120
        while len(statuses) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        publish_build(store, "main", build2, ds="2026-01-02")
        while request(srv.url, "GET", "/health").body["build_id"] != build2 and time.monotonic() < deadline:
            time.sleep(0.1)
        seen_new = len(builds)
        while len(builds) < seen_new + 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for c in clients:
            c.join()
        health = request(srv.url, "GET", "/health").body
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)
        searcher.close()
    assert not failures, failures[:3]
    assert set(statuses) == {200}
    assert health["build_id"] == build2 and health["model_version"] == version2
    assert builds[0] == demo.build_id and builds[-1] == build2
    assert set(builds) == {demo.build_id, build2}


def test_parse_size__units_and_errors() -> None:
    assert parse_size("10MB") == 10 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("2048") == 2048
    for bad in ("", "ten", "-5MB", "0", "5 parsecs"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def test_parse_multipart__binary_payload_survives_byte_for_byte() -> None:
    payload = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n" + b"\r\n"
    body, content_type = multipart({"image": payload, "k": "3"}, boundary="b0undary")
    fields = parse_multipart(body, content_type)
    assert fields == {"image": payload, "k": b"3"}
    with pytest.raises(ValueError, match="boundary"):
        parse_multipart(body, "multipart/form-data")
