"""Publishing, history, rollback, pruning and the ``visearch index`` command."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.support.index_builds import clustered, make_build
from visearch import cli
from visearch.core.config import S3Settings
from visearch.core.storage import LocalStore, ObjectStore, PointerConflictError, open_store
from visearch.index.faiss_index import exact_search
from visearch.index.manifest import BuildNotFoundError, ChecksumError, current_build_id, list_build_ids, load_build
from visearch.index.publish import (
    ValidationError,
    _append_history,
    list_builds,
    newest_build_for,
    prune_builds,
    publish_build,
    read_history,
    rollback,
    validate_build,
)

IDS = [f"img-{i:04d}" for i in range(400)]
DIM = 8


@pytest.fixture
def vectors() -> np.ndarray:
    return clustered(len(IDS), DIM, seed=0)


def publish_days(store: ObjectStore, vectors: np.ndarray, days: int) -> list[str]:
    builds = []
    for day in range(1, days + 1):
        build_id = f"b-2026-01-{day:02d}-x"
        make_build(store, "main", build_id, IDS, vectors, ds=f"2026-01-{day:02d}")
        publish_build(store, "main", build_id, ds=f"2026-01-{day:02d}")
        builds.append(build_id)
    return builds


def test_validate_build__passes_on_a_correct_build(store: ObjectStore, vectors: np.ndarray) -> None:
    make_build(store, "main", "b-1", IDS, vectors)
    queries = clustered(30, DIM, seed=1)
    _, rows = exact_search(vectors, queries, 10)
    report = validate_build(store, "main", "b-1", expected_count=len(IDS), queries=queries,
                            exact_image_ids=np.array(IDS, dtype=object)[rows], min_recall=0.99)
    assert report.recall == pytest.approx(1.0)


def test_validate_build__count_mismatch_and_low_recall_are_both_reported(store: ObjectStore,
                                                                         vectors: np.ndarray) -> None:
    make_build(store, "main", "b-1", IDS, vectors)
    queries = clustered(10, DIM, seed=1)
    wrong = np.array([[f"other-{i}" for i in range(10)]] * 10, dtype=object)
    with pytest.raises(ValidationError, match=r"401.*recall@10 0.0000 < required 0.8000"):
        validate_build(store, "main", "b-1", expected_count=401, queries=queries, exact_image_ids=wrong,
                       min_recall=0.8)


def test_publish__history_is_written_before_current(store: ObjectStore, vectors: np.ndarray,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = publish_days(store, vectors, 1)[0]
    make_build(store, "main", "b-2", IDS, vectors, ds="2026-01-02")

    def crash(self: LocalStore, key: str, value: str, expected: str | None) -> None:
        raise RuntimeError("crash before the pointer")

    monkeypatch.setattr(LocalStore, "swap_pointer", crash)
    with pytest.raises(RuntimeError):
        publish_build(store, "main", "b-2", ds="2026-01-02")
    monkeypatch.undo()
    assert current_build_id(store, "main") == first
    assert [e["build_id"] for e in read_history(store, "main")] == [first, "b-2"]
    with load_build(store, "main") as build:
        assert build.build_id == first
    # A rollback from the live build ignores the never-live entry after it.
    with pytest.raises(BuildNotFoundError, match="no build was published before"):
        rollback(store, "main")


def test_rollback__previous_then_the_one_before(store: ObjectStore, vectors: np.ndarray) -> None:
    b1, b2, b3 = publish_days(store, vectors, 3)
    assert rollback(store, "main") == b2
    assert current_build_id(store, "main") == b2
    assert rollback(store, "main") == b1
    assert rollback(store, "main", to=b3) == b3
    assert [e["event"] for e in read_history(store, "main")] == ["publish"] * 3 + ["rollback"] * 3


def test_rollback__damaged_target_is_refused_and_current_kept(store: ObjectStore,
                                                              vectors: np.ndarray) -> None:
    b1, b2 = publish_days(store, vectors, 2)
    key = f"indexes/main/{b1}/shard-00000.faiss"
    store.put_bytes(key, b"garbage")
    with pytest.raises(ChecksumError, match=r"shard-00000\.faiss"):
        rollback(store, "main")
    assert current_build_id(store, "main") == b2


def test_rollback__nothing_live_is_an_error(store: ObjectStore) -> None:
    with pytest.raises(BuildNotFoundError, match="no CURRENT"):
        rollback(store, "main")


def test_prune__keeps_live_last_n_newer_unpublished_and_referenced_objects(store: ObjectStore,
                                                                          vectors: np.ndarray) -> None:
    builds = publish_days(store, vectors, 4)
    # An unpublished build newer than the live one (e.g. tonight's, awaiting publish) stays.
    make_build(store, "main", "b-2026-01-05-x", IDS, vectors, ds="2026-01-05")
    # The live build shares a shard object with the oldest build (as an incremental build does).
    live = builds[-1]
    shared = f"indexes/main/{builds[0]}/shard-00000.faiss"
    manifest_key = f"indexes/main/{live}/manifest.json"
    data = json.loads(store.get_text(manifest_key))
    data["shards"][0]["key"] = shared
    data["shards"][0]["sha256"] = json.loads(store.get_text(f"indexes/main/{builds[0]}/manifest.json"))[
        "shards"][0]["sha256"]
    store.put_text(manifest_key, json.dumps(data))
    dropped = prune_builds(store, "main", keep=2)
    assert dropped == builds[:2]
    assert list_build_ids(store, "main") == [*builds[2:], "b-2026-01-05-x"]
    assert store.exists(shared)
    assert not store.list(f"indexes/main/{builds[1]}/")
    with load_build(store, "main") as build:
        assert build.build_id == live


def test_newest_build_for__picks_the_latest_created_that_day(store: ObjectStore, vectors: np.ndarray) -> None:
    make_build(store, "main", "b-a", IDS, vectors, ds="2026-01-01")
    assert newest_build_for(store, "main", "2026-01-01") == "b-a"
    assert newest_build_for(store, "main", "2026-01-02") is None


def test_cli__index_list_and_rollback(store: ObjectStore, vectors: np.ndarray,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    b1, b2 = publish_days(store, vectors, 2)
    monkeypatch.setenv("VISEARCH_ARTIFACTS", store.root)
    assert cli.main(["index", "list"]) == 0
    out = capsys.readouterr().out
    assert f"* {b2}" in out and f"p {b1}" in out
    assert cli.main(["index", "rollback"]) == 0
    assert f"CURRENT -> {b1}" in capsys.readouterr().out
    assert [b.build_id for b in list_builds(store, "main") if b.live] == [b1]


# ------------------------------------------------------------------- one writer at a time


def test_swap_pointer__moves_only_from_the_expected_value(store: ObjectStore) -> None:
    store.swap_pointer("p/CURRENT", "a", expected=None)
    with pytest.raises(PointerConflictError, match=r"expected \(absent\), found a"):
        store.swap_pointer("p/CURRENT", "b", expected=None)
    store.swap_pointer("p/CURRENT", "b", expected="a")
    with pytest.raises(PointerConflictError, match="expected a, found b"):
        store.swap_pointer("p/CURRENT", "c", expected="a")
    assert store.read_pointer("p/CURRENT") == "b"
    assert store.list("p/") == ["p/CURRENT"], "the lock file is not an object"


def test_publish__refuses_to_move_current_that_changed_since_it_was_read(store: ObjectStore,
                                                                         vectors: np.ndarray) -> None:
    (b1,) = publish_days(store, vectors, 1)
    seen = current_build_id(store, "main")  # what a publish job read when it started
    for build_id in ("b-other", "b-mine"):
        make_build(store, "main", build_id, IDS, vectors, ds="2026-01-02")
    publish_build(store, "main", "b-other", ds="2026-01-02")  # another run published meanwhile
    with pytest.raises(PointerConflictError, match=f"expected {b1}, found b-other"):
        publish_build(store, "main", "b-mine", ds="2026-01-02", expected=seen)
    assert current_build_id(store, "main") == "b-other"
    assert [e["build_id"] for e in read_history(store, "main")] == [b1, "b-other"]


def test_history__concurrent_appends_keep_every_event(store: ObjectStore) -> None:
    def append(writer: int) -> None:
        for n in range(5):
            _append_history(store, "main", {"event": "publish", "build_id": f"w{writer}-{n}"})

    threads = [threading.Thread(target=append, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = read_history(store, "main")
    assert sorted(e["build_id"] for e in events) == sorted(f"w{w}-{n}" for w in range(8) for n in range(5))
    for w in range(8):  # each writer's own events stay in its order
        assert [e["build_id"] for e in events if e["build_id"].startswith(f"w{w}-")] == [
            f"w{w}-{n}" for n in range(5)]


def test_history__legacy_history_json_is_read_first(store: ObjectStore, vectors: np.ndarray) -> None:
    store.put_text("indexes/main/HISTORY.json", json.dumps({"events": [{"event": "publish", "build_id": "old"}]}))
    publish_days(store, vectors, 1)
    assert [e["build_id"] for e in read_history(store, "main")] == ["old", "b-2026-01-01-x"]


def race_two_publishers(store: ObjectStore, vectors: np.ndarray) -> tuple[list[str], dict[str, Any]]:
    """Two publishers that both read CURRENT and record their event, then move CURRENT at the same
    moment (a barrier at the pointer write). Returns the builds and each one's result."""
    builds = ["b-race-a", "b-race-b"]
    for build_id in builds:
        make_build(store, "main", build_id, IDS, vectors, ds="2026-01-02", num_shards=1)
    barrier = threading.Barrier(len(builds))
    swap: Callable[..., None] = store.swap_pointer

    def swap_together(key: str, value: str, expected: str | None) -> None:
        barrier.wait(timeout=60)
        swap(key, value, expected)

    store.swap_pointer = swap_together  # type: ignore[method-assign]
    results: dict[str, Any] = {}

    def publish(build_id: str) -> None:
        try:
            publish_build(store, "main", build_id, ds="2026-01-02")
            results[build_id] = "won"
        except PointerConflictError as exc:
            results[build_id] = exc

    threads = [threading.Thread(target=publish, args=(b,)) for b in builds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    del store.swap_pointer
    return builds, results


def check_race(store: ObjectStore, builds: list[str], results: dict[str, Any], *, exactly_one: bool) -> None:
    assert set(results) == set(builds)
    winners = [b for b, r in results.items() if r == "won"]
    losers = [r for r in results.values() if r != "won"]
    assert winners, results
    assert all(isinstance(r, PointerConflictError) for r in losers), results
    if exactly_one:
        assert len(winners) == 1, results
    live = current_build_id(store, "main")
    assert live in winners, (live, results)
    raw = read_history(store, "main", raw=True)
    published = sorted(e["build_id"] for e in raw if e["event"] == "publish")
    assert published == ["b-2026-01-01-x", *builds], "both racing events are kept"
    assert sorted(e["build_id"] for e in raw if e["event"] == "abandoned") == sorted(
        b for b in builds if b not in winners)
    # The loser's build never went live: history and rollback skip it.
    assert sorted(e["build_id"] for e in read_history(store, "main")) == sorted(["b-2026-01-01-x", *winners])
    if len(winners) == 1:
        assert rollback(store, "main") == "b-2026-01-01-x"


def test_race__two_publishers_on_local_files(store: ObjectStore, vectors: np.ndarray) -> None:
    publish_days(store, vectors, 1)
    builds, results = race_two_publishers(store, vectors)
    check_race(store, builds, results, exactly_one=True)
    (loser,) = [r for r in results.values() if r != "won"]
    assert "changed since it was read" in str(loser) and "b-2026-01-01-x" in str(loser)


def conditional_puts_honoured(store: Any) -> bool:
    """Whether the S3 server refuses a PUT whose ``If-None-Match: *`` fails (AWS S3 does; S3Proxy
    2.6.0 ignores the header)."""
    from botocore.exceptions import ClientError

    key = store._key(f"probe-{uuid.uuid4().hex}")
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"1")
    try:
        store.client.put_object(Bucket=store.bucket, Key=key, Body=b"2", IfNoneMatch="*")
    except ClientError:
        return True
    return False


def test_race__two_publishers_on_s3(s3_server: Any, vectors: np.ndarray) -> None:
    s3_server.create_bucket("publish-race")
    store = open_store(f"s3://publish-race/{uuid.uuid4().hex}", S3Settings(endpoint=s3_server.endpoint))
    honoured = conditional_puts_honoured(store)
    publish_days(store, vectors, 1)
    store.swap_pointer("probe/CURRENT", "a", expected=None)
    with pytest.raises(PointerConflictError, match="expected b, found a"):
        store.swap_pointer("probe/CURRENT", "c", expected="b")
    # Another writer's PUT lands right after ours (a server that ignores If-Match lets it): the
    # read-back sees it, and this swap fails instead of reporting a move that did not stick.
    put = store.client.put_object  # type: ignore[attr-defined]

    def put_then_other_writer(**kwargs: Any) -> Any:
        answer = put(**kwargs)
        put(Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=b"other\n")
        return answer

    store.client.put_object = put_then_other_writer  # type: ignore[attr-defined]
    if not honoured:
        with pytest.raises(PointerConflictError, match=r"found other.*overwritten right after"):
            store.swap_pointer("probe/CURRENT", "d", expected="a")
    store.client.put_object = put  # type: ignore[attr-defined]
    builds, results = race_two_publishers(store, vectors)
    # Without server-side conditions the read-back check still makes the last writer the only one
    # whose value stays, so CURRENT names a winner; exactly one winner needs If-None-Match/If-Match.
    check_race(store, builds, results, exactly_one=honoured)
