"""The ingest_images job (:mod:`visearch.ingest.images`) on a hand-built landing zone: every bad
input counted, reruns identical.

Day 1 holds every awkward-but-valid image of the issue (CMYK JPEG, 16-bit PNG, palette PNG with
transparency, animated GIF, EXIF-rotated JPEG, WebP), every bad one (truncated JPEG, zero-byte
file, text named .jpg, PNG declaring 100k×100k, BMP, missing file) and bad manifest lines
(malformed JSON, missing field, wrong type, duplicate image_id, delete of an unknown id).
Day 2 deletes, changes privacy, adds an image and replaces a good one with a broken file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobs import ingest_images as job
from tests.support import images as I
from visearch.core import tables as T
from visearch.core.config import Settings, load_settings
from visearch.core.storage import sha256_bytes
from visearch.ingest import images as ingest

DAY1, DAY2, DAY3, DAY4 = "2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"


def snapshot(spark: Any, settings: Settings, table: T.Table) -> list[str]:
    """The table's rows, JSON-encoded and sorted: equal lists mean equal contents."""
    rows = T.read(spark, settings, table).collect()
    return sorted(json.dumps(r.asDict(), default=str, sort_keys=True) for r in rows)


def silver_by_id(spark: Any, settings: Settings) -> dict[str, dict[str, Any]]:
    return {r["image_id"]: r.asDict() for r in T.read(spark, settings, T.SILVER_IMAGES).collect()}


def upsert(image_id: str, uri: str, **extra: Any) -> str:
    record = {"image_id": image_id, "uri": uri, "owner_id": "owner-1", "upload_ts": "2026-01-01T09:00:00Z",
              "tags": ["t"], "is_private": False, "action": "upsert", **extra}
    return json.dumps(record)


def action(image_id: str, name: str) -> str:
    return json.dumps({"image_id": image_id, "action": name})


@dataclass
class Landing:
    root: Path
    files: dict[str, bytes]

    def uri(self, name: str) -> str:
        return f"file://{self.root / 'images' / name}"

    def write_images(self) -> None:
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (self.root / "images" / name).write_bytes(data)

    def write_manifest(self, ds: str, name: str, lines: list[str]) -> None:
        folder = self.root / "manifests" / f"ds={ds}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("\n".join(lines) + "\n")


GOOD = {  # image_id -> file name
    "rgb": "rgb.jpg", "png": "plain.png", "webp": "pic.webp", "cmyk": "cmyk.jpg", "png16": "deep.png",
    "palette": "palette.png", "gif": "anim.gif", "rotated": "rotated.jpg", "extra": "extra.jpg",
}
BAD = {  # image_id -> (file name, reason)
    "truncated": ("cut.jpg", "truncated"),
    "empty": ("empty.jpg", "empty_file"),
    "text": ("notes.jpg", "not_an_image"),
    "bomb": ("huge.png", "decompression_bomb"),
    "bitmap": ("old.bmp", "format_not_allowed"),
    "missing": ("never-uploaded.jpg", "missing_file"),
}


def build_landing(root: Path) -> Landing:
    files = {
        "rgb.jpg": I.jpeg(1), "other.jpg": I.jpeg(2), "plain.png": I.png(3), "pic.webp": I.webp(4),
        "cmyk.jpg": I.cmyk_jpeg(5), "deep.png": I.png16(6), "palette.png": I.palette_png_transparent(7),
        "anim.gif": I.animated_gif(8), "rotated.jpg": I.exif_rotated_jpeg(9)[0], "extra.jpg": I.jpeg(10),
        "cut.jpg": I.truncated_jpeg(11), "empty.jpg": b"", "notes.jpg": I.text_as_jpg(),
        "huge.png": I.png_header_only(100_000, 100_000), "old.bmp": I.bmp(12),
        "new.jpg": I.jpeg(13), "broken-rgb.jpg": I.truncated_jpeg(14),
    }
    landing = Landing(root, files)
    landing.write_images()
    day1 = [
        upsert("rgb", landing.uri("other.jpg")),  # superseded by the later line for "rgb"
        *(upsert(i, landing.uri(f)) for i, f in GOOD.items() if i != "extra"),
        *(upsert(i, landing.uri(f)) for i, (f, _) in BAD.items()),
        '{"image_id": "broken", "uri": ',  # malformed JSON
        json.dumps({"image_id": "no-uri", "owner_id": "o", "upload_ts": "2026-01-01T00:00:00Z",
                    "action": "upsert"}),  # missing field
        upsert("typed", landing.uri("rgb.jpg"), is_private="yes"),  # wrong type
        action("ghost", "delete"),  # unknown id
        "",
        "   ",
    ]
    landing.write_manifest(DAY1, "uploads.jsonl", day1)
    landing.write_manifest(DAY1, "uploads-late.jsonl", [upsert("extra", landing.uri("extra.jpg"))])
    day2 = [
        action("png", "delete"),
        action("webp", "set_private"),
        action("nobody", "set_public"),
        upsert("new", landing.uri("new.jpg"), upload_ts="2026-01-02T09:00:00Z"),
        upsert("cmyk", landing.uri("broken-rgb.jpg"), upload_ts="2026-01-02T09:00:00Z"),
    ]
    landing.write_manifest(DAY2, "uploads.jsonl", day2)
    return landing


def land_day4(root: Path, settings: Settings) -> dict[str, bytes]:
    """Day 4, through ``visearch land``: two runs on the same day (folder B re-lands ``b.jpg`` with
    new bytes, so its line comes last and wins), and a hand-written manifest whose URIs lead out of
    the allowed prefixes: a file that was never landed, ``/etc/hostname``, and a link inside the
    landing root that points at that file. Returns the bytes of each landed file by id."""
    from visearch.ingest.landing import land_folder, stable_image_id

    files = {"A/cats/a.jpg": I.jpeg(20), "A/b.jpg": I.jpeg(21), "B/b.jpg": I.jpeg(22), "B/c.png": I.png(23),
             "outside/secret.jpg": I.jpeg(24)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    first = land_folder(root / "A", DAY4, settings=settings)
    second = land_folder(root / "B", DAY4, settings=settings)
    assert first.manifest_uri < second.manifest_uri  # names sort in run order
    link = root / "landing" / "images" / "link.jpg"
    link.symlink_to(root / "outside" / "secret.jpg")
    secret = f"file://{root / 'outside' / 'secret.jpg'}"
    lines = [upsert("leak-file", secret), upsert("leak-etc", "file:///etc/hostname"),
             upsert("leak-link", f"file://{link}"),
             upsert("leak-dotdot", f"file://{root / 'landing' / 'images' / '..' / '..' / 'outside' / 'secret.jpg'}")]
    folder = root / "landing" / "manifests" / f"ds={DAY4}"
    (folder / "uploads-0-by-hand.jsonl").write_text("\n".join(lines) + "\n")
    return {stable_image_id("cats/a.jpg"): files["A/cats/a.jpg"], stable_image_id("b.jpg"): files["B/b.jpg"],
            stable_image_id("c.png"): files["B/c.png"]}


@dataclass
class Runs:
    settings: Settings
    landing: Landing
    results: dict[str, dict[str, Any]]
    snapshots: dict[str, dict[str, list[str]]]
    silver: dict[str, dict[str, dict[str, Any]]]
    day4: dict[str, bytes]


TABLES = (T.BRONZE_IMAGES_RAW, T.SILVER_IMAGES, T.SILVER_QUARANTINE)


@pytest.fixture(scope="module")
def runs(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Day 1, day 1 again, day 2, day 2 again, day 1 again (a backfill after day 2)."""
    root = tmp_path_factory.mktemp("ingest_images")
    settings = load_settings(env={"VISEARCH_LANDING": str(root / "landing"),
                                  "VISEARCH_LAKE": str(root / "lake"),
                                  "VISEARCH_ARTIFACTS": str(root / "artifacts")})
    landing = build_landing(root / "landing")
    day4 = land_day4(root, settings)
    results: dict[str, dict[str, Any]] = {}
    snapshots: dict[str, dict[str, list[str]]] = {}
    silver: dict[str, dict[str, dict[str, Any]]] = {}
    for step, ds in (("day1", DAY1), ("day1_again", DAY1), ("day2", DAY2), ("day2_again", DAY2),
                     ("day1_backfill", DAY1), ("day4", DAY4), ("day4_again", DAY4)):
        results[step] = ingest.run(settings, ds, spark=spark, images_per_task=4)
        snapshots[step] = {t.name: snapshot(spark, settings, t) for t in TABLES}
        silver[step] = silver_by_id(spark, settings)
    return Runs(settings, landing, results, snapshots, silver, day4)


pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_ingest_images__day1_counts(runs: Runs) -> None:
    result = runs.results["day1"]
    assert result["manifest_files"] == 2
    assert result["manifest_lines"] == 1 + 8 + 6 + 4 + 1  # blank lines are not records
    assert result["ok"] == len(GOOD) == 9
    assert result["upserts"] == 9 + 6
    assert result["bronze_rows"] == 9 + 6 + 1  # kept lines: upserts plus the delete of "ghost"
    assert result["quarantined"] == {
        "malformed_json": 1, "missing_field:uri": 1, "wrong_type:is_private": 1, "duplicate_image_id": 1,
        "unknown_image_id": 1, "truncated": 1, "empty_file": 1, "not_an_image": 1, "decompression_bomb": 1,
        "format_not_allowed": 1, "missing_file": 1,
    }
    assert (result["deleted"], result["privacy_changes"]) == (0, 0)


def test_ingest_images__every_good_image_arrives_described(runs: Runs) -> None:
    silver = runs.silver["day1"]
    for image_id, name in GOOD.items():
        row = silver[image_id]
        assert row["status"] == "ok", row
        assert row["sha256"] == sha256_bytes(runs.landing.files[name])
        assert len(row["phash"]) == 16 and row["updated_ds"] == DAY1
    assert (silver["rotated"]["width"], silver["rotated"]["height"]) == (64, 40)  # EXIF applied
    assert {silver[i]["format"] for i in ("cmyk", "png16", "palette", "gif", "webp")} == {
        "JPEG", "PNG", "GIF", "WEBP"}


def test_ingest_images__last_manifest_line_wins(runs: Runs) -> None:
    # "rgb" first points at other.jpg, then at rgb.jpg; the later line wins.
    assert runs.silver["day1"]["rgb"]["sha256"] == sha256_bytes(runs.landing.files["rgb.jpg"])


def test_ingest_images__bad_images_quarantined_with_reason(runs: Runs) -> None:
    silver = runs.silver["day1"]
    quarantine = [json.loads(r) for r in runs.snapshots["day1"]["silver.quarantine"]]
    by_record = {(q["source"], q["record_id"]): q for q in quarantine}
    for image_id, (_, reason) in BAD.items():
        assert silver[image_id]["status"] == "quarantined"
        assert silver[image_id]["sha256"] is None
        assert by_record[("image", image_id)]["reason"] == reason
    assert {"malformed_json", "duplicate_image_id"} <= {
        q["reason"] for q in quarantine if q["source"] == "images_manifest"}
    assert by_record[("images_manifest", "line:uploads.jsonl:1")]["reason"] == "duplicate_image_id"
    assert len(by_record) == len(quarantine)  # (ds, source, record_id) is a key
    assert set(silver) == set(GOOD) | set(BAD)  # bad lines and unknown ids create no rows


def test_ingest_images__bronze_holds_kept_lines(runs: Runs) -> None:
    bronze = [json.loads(r) for r in runs.snapshots["day1"]["bronze.images_raw"]]
    assert len(bronze) == 16 and {b["ds"] for b in bronze} == {DAY1}
    rgb = next(b for b in bronze if b["image_id"] == "rgb")
    assert (rgb["manifest_file"], rgb["line_no"]) == ("uploads.jsonl", 2)
    assert rgb["source_uri"].endswith("/rgb.jpg")
    assert next(b for b in bronze if b["image_id"] == "extra")["manifest_file"] == "uploads-late.jsonl"


def test_ingest_images__rerun_same_day_is_identical(runs: Runs) -> None:
    assert runs.snapshots["day1_again"] == runs.snapshots["day1"]
    assert runs.snapshots["day2_again"] == runs.snapshots["day2"]
    assert runs.results["day1_again"]["quarantined"] == runs.results["day1"]["quarantined"]


def test_ingest_images__day2_delete_privacy_and_replacement(runs: Runs) -> None:
    before, after = runs.silver["day1"], runs.silver["day2"]
    result = runs.results["day2"]
    assert (result["deleted"], result["privacy_changes"], result["ok"]) == (1, 1, 1)
    assert result["quarantined"] == {"unknown_image_id": 1, "truncated": 1}
    assert after["png"]["status"] == "deleted" and after["png"]["sha256"] == before["png"]["sha256"]
    assert after["webp"]["is_private"] is True and after["webp"]["status"] == "ok"
    assert after["new"]["status"] == "ok" and after["new"]["updated_ds"] == DAY2
    assert after["cmyk"]["status"] == "quarantined"  # its new file is broken: stop serving it
    untouched = set(before) - {"png", "webp", "cmyk"}
    assert all(after[i] == before[i] for i in untouched)
    # Day 1's quarantine rows survive day 2's partition replacement.
    day1_rows = [r for r in runs.snapshots["day2"]["silver.quarantine"] if json.loads(r)["ds"] == DAY1]
    assert len(day1_rows) == sum(runs.results["day1"]["quarantined"].values())


def test_ingest_images__backfill_of_old_day_does_not_undo_later_days(runs: Runs) -> None:
    assert runs.snapshots["day1_backfill"]["silver.images"] == runs.snapshots["day2"]["silver.images"]
    assert runs.snapshots["day1_backfill"]["silver.quarantine"] == runs.snapshots["day2"]["silver.quarantine"]


def test_ingest_images__main_on_day_without_manifest(runs: Runs, spark: Any, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Through the command line (settings from the environment, JSON result as the last line) on a
    # day with no manifest folder at all: legal, zero rows, earlier days untouched.
    for key, value in (("VISEARCH_LANDING", runs.settings.landing), ("VISEARCH_LAKE", runs.settings.lake),
                       ("VISEARCH_ARTIFACTS", runs.settings.artifacts)):
        monkeypatch.setenv(key, value)
    assert job.main(["--ds", DAY3]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["job"] == "ingest_images" and "validate_images" in result["stage_seconds"]
    counts = (result["manifest_files"], result["manifest_lines"], result["bronze_rows"], result["ok"],
              result["quarantined_total"])
    assert counts == (0, 0, 0, 0, 0)
    assert snapshot(spark, runs.settings, T.SILVER_IMAGES) == runs.snapshots["day4_again"]["silver.images"]


def test_ingest_images__rejects_bad_ds(spark: Any, settings: Settings) -> None:
    with pytest.raises(ValueError, match="2026-1-1"):
        ingest.run(settings, "2026-1-1", spark=spark)


def test_ingest_images__two_land_runs_on_a_day_both_arrive_and_the_later_wins(runs: Runs) -> None:
    result = runs.results["day4"]
    assert result["manifest_files"] == 3 and result["ok"] == 3
    silver = runs.silver["day4"]
    for image_id, data in runs.day4.items():
        assert silver[image_id]["status"] == "ok" and silver[image_id]["sha256"] == sha256_bytes(data)
    assert runs.snapshots["day4_again"] == runs.snapshots["day4"]  # several manifests, rerun identical


def test_ingest_images__uris_outside_the_allowed_prefixes_are_never_read(runs: Runs) -> None:
    result = runs.results["day4"]
    assert result["quarantined"] == {"bad_value:uri": 4, "duplicate_image_id": 1}
    quarantine = [json.loads(r) for r in runs.snapshots["day4"]["silver.quarantine"]]
    leaks = [q for q in quarantine if q["reason"] == "bad_value:uri"]
    assert {q["record_id"] for q in leaks} == {f"line:uploads-0-by-hand.jsonl:{n}" for n in (1, 2, 3, 4)}
    assert all("outside the allowed prefixes" in q["detail"] for q in leaks)
    assert not {"leak-file", "leak-etc", "leak-link", "leak-dotdot"} & set(runs.silver["day4"])
