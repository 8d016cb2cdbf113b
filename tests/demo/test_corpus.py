"""The procedural demo corpus end to end (generate_demo): determinism, layout, ground truth, planted bad
inputs, click model, judgments, the demo-data command.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from visearch.core.storage import read_uri
from visearch.demo.corpus import generate_demo
from visearch.demo.judgments import grade
from visearch.demo.rendering import UNUSUAL_KINDS, make_item
from visearch.demo.simulation import BAD_CLICK_KINDS, RELEVANCE_BY_GRADE, propensities
from visearch.demo.uploads import BAD_MANIFEST_KINDS

IMAGES, DAYS, SEED, SIZE = 60, 3, 7, 32


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo landing folder (60 images of 32 px over 3 days)."""
    out = tmp_path_factory.mktemp("demo") / "landing"
    generate_demo(out, IMAGES, DAYS, seed=SEED, size=SIZE, progress=False)
    return out


@pytest.fixture(scope="module")
def truth(demo: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((demo / "demo_truth.json").read_text())
    return loaded


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _parsed(path: Path) -> list[dict[str, Any] | None]:
    """Each line parsed, or None where it is not JSON."""
    out: list[dict[str, Any] | None] = []
    for line in _lines(path):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(None)
    return out


def _bad(truth: dict[str, Any], source: str) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["ds"], r["line"]): r for r in truth["bad_records"] if r["source"] == source}


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_demo__same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate_demo(a, 30, 2, seed=3, size=32, progress=False)
    generate_demo(b, 30, 2, seed=3, size=32, progress=False)
    files_a, files_b = _all_files(a), _all_files(b)
    assert files_a.keys() == files_b.keys()
    root_a, root_b = a.resolve().as_posix().encode(), b.resolve().as_posix().encode()
    for key, data in files_a.items():
        # Manifests and the truth hold absolute URIs; everything else must match byte for byte.
        assert data.replace(root_a, root_b) == files_b[key], key
    # Rerunning into the same folder replaces the previous demo with the same bytes.
    generate_demo(a, 30, 2, seed=3, size=32, progress=False)
    assert _all_files(a) == files_a


def test_generate_demo__another_seed_gives_other_images(tmp_path: Path) -> None:
    generate_demo(tmp_path / "a", 30, 2, seed=1, size=32, progress=False)
    generate_demo(tmp_path / "b", 30, 2, seed=2, size=32, progress=False)
    truth = json.loads((tmp_path / "a" / "demo_truth.json").read_text())
    a = _all_files(tmp_path / "a" / "images")
    b = _all_files(tmp_path / "b" / "images")
    good = [info["path"].removeprefix("images/") for info in truth["images"].values()]
    assert not any(a[k] == b.get(k) for k in good)


def test_generate_demo__refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        generate_demo(tmp_path, 20, 2, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": 5}, "images must be at least 12"),
        ({"days": 0}, "days must be"),
        ({"days": 40}, "days must be"),
        ({"size": 8}, "size must be"),
        ({"bad_share": 0.7}, "bad_share"),
        ({"start_ds": "2026-13-01"}, "2026-13-01"),
        ({"eta": 0.0}, "eta"),
    ],
)
def test_generate_demo__rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"images": 20, "days": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_demo(tmp_path / "x", progress=False, **args)


def test_demo__counts_per_day_match_the_truth(demo: Path, truth: dict[str, Any]) -> None:
    images = truth["images"]
    assert len(images) == IMAGES
    assert truth["ds_list"] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    per_day = Counter(v["ds"] for v in images.values())
    assert sorted(per_day.values()) == [20, 20, 20]
    bad = _bad(truth, "manifest")
    for ds in truth["ds_list"]:
        path = demo / f"manifests/ds={ds}/uploads.jsonl"
        parsed = _parsed(path)
        good = [r for n, r in enumerate(parsed, start=1) if (ds, n) not in bad]
        assert all(r is not None for r in good)
        uploads = {r["image_id"] for r in good if r and r["action"] == "upsert" and r["upload_ts"][:10] == ds
                   and images.get(r["image_id"], {}).get("ds") == ds}
        assert len(uploads) == per_day[ds] == truth["counts"][ds]["uploads"]
        assert len(parsed) == truth["counts"][ds]["manifest_lines"]
        events = _lines(demo / f"clicks/ds={ds}/events.jsonl")
        assert len(events) == truth["counts"][ds]["click_lines"]
    assert truth["totals"]["uploads"] == IMAGES


def test_demo__every_manifest_uri_exists_except_the_planted_missing_one(
    demo: Path, truth: dict[str, Any]
) -> None:
    missing = []
    for ds in truth["ds_list"]:
        for record in _parsed(demo / f"manifests/ds={ds}/uploads.jsonl"):
            if record and "uri" in record:
                try:
                    read_uri(record["uri"])
                except FileNotFoundError:
                    missing.append(record["image_id"])
    planted = [r["record_id"] for r in truth["bad_records"] if r["kind"] == "missing_file"]
    assert missing == planted
    assert len(planted) == 1
    for image_id, info in truth["images"].items():
        assert read_uri(info["uri"]), image_id


def test_demo__every_bad_kind_is_planted_where_the_truth_says(demo: Path, truth: dict[str, Any]) -> None:
    kinds = Counter((r["source"], r["kind"]) for r in truth["bad_records"])
    assert {k for s, k in kinds if s == "manifest"} == set(BAD_MANIFEST_KINDS)
    assert {k for s, k in kinds if s == "clicks"} == set(BAD_CLICK_KINDS)
    for record in truth["bad_records"]:
        folder = "manifests" if record["source"] == "manifest" else "clicks"
        name = "uploads.jsonl" if folder == "manifests" else "events.jsonl"
        lines = _lines(demo / f"{folder}/ds={record['ds']}/{name}")
        text = lines[record["line"] - 1]
        kind = record["kind"]
        if kind == "malformed_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            continue
        row = json.loads(text)
        earlier = [json.loads(t) for t in lines[: record["line"] - 1]
                   if t.startswith("{") and t.endswith("}")]
        if kind == "missing_field":
            assert ("uri" if folder == "manifests" else "event_type") not in row
        elif kind == "wrong_type":
            assert isinstance(row["is_private"], str)
        elif kind == "duplicate_image_id":
            assert row["image_id"] in {r["image_id"] for r in earlier}
            assert row["image_id"] in truth["images"]  # the image itself is good
        elif kind == "duplicate_event_id":
            assert row["event_id"] in {r["event_id"] for r in earlier}
        elif kind == "negative_position":
            assert row["position"] < 1
        elif kind == "unknown_image":
            assert row["image_id"] not in truth["images"]
        else:
            path = demo / record["path"]
            if kind == "missing_file":
                assert not path.exists()
            elif kind == "zero_byte":
                assert path.stat().st_size == 0
            elif kind == "text_as_jpg":
                with pytest.raises(UnidentifiedImageError):
                    Image.open(path)
            elif kind == "truncated_jpeg":
                with Image.open(path) as im, pytest.raises(OSError, match="truncated"):
                    im.load()
            elif kind == "png_bomb":
                assert path.stat().st_size < 2048
                with pytest.raises(Image.DecompressionBombError):
                    Image.open(path)
            else:
                pytest.fail(f"unexpected kind {kind}")


def test_demo__good_images_decode_as_recorded(demo: Path, truth: dict[str, Any]) -> None:
    formats: Counter[str] = Counter()
    for image_id, info in truth["images"].items():
        with Image.open(demo / info["path"]) as im:
            im.load()
            assert (im.format, im.mode) == (info["format"], info["mode"]), image_id
            upright = ImageOps.exif_transpose(im)
            assert upright.size == (info["width"], info["height"]), image_id
        formats[info["format"]] += 1
    assert formats["JPEG"] > IMAGES // 2
    assert set(formats) == {"JPEG", "PNG", "WEBP", "GIF"}


def test_demo__unusual_images_are_what_they_claim(demo: Path, truth: dict[str, Any]) -> None:
    unusual = {u["kind"]: u["image_id"] for u in truth["unusual_images"]}
    assert set(unusual) == set(UNUSUAL_KINDS)

    def open_(kind: str) -> Image.Image:
        return Image.open(demo / truth["images"][unusual[kind]]["path"])

    assert open_("cmyk_jpeg").mode == "CMYK"
    assert open_("png_16bit").mode == "I;16"
    palette = open_("palette_png_transparency")
    assert palette.mode == "P" and "transparency" in palette.info
    assert getattr(open_("animated_gif"), "n_frames", 1) == 3
    rotated = open_("exif_rotated_jpeg")
    assert rotated.getexif().get(0x0112) == 6
    stored, shown = rotated.size, ImageOps.exif_transpose(rotated).size
    assert stored == (shown[1], shown[0]) and shown[0] > shown[1]


def test_demo__compositions_hold_two_items_with_boxes_inside(demo: Path, truth: dict[str, Any]) -> None:
    comps = {k: v for k, v in truth["images"].items() if v["composition"]}
    assert len(comps) >= 2
    for image_id, info in comps.items():
        members = info["composition"]
        assert len(members) == 2 and members[0]["item"] != members[1]["item"]
        assert info["item"] is None
        with Image.open(demo / info["path"]) as im:
            width, height = im.size
        for m in members:
            x, y, w, h = m["box"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height, image_id
            assert m["category"] == truth["items"][str(m["item"])]["category"]
        (ax, _, aw, _), (bx, _, _, _) = members[0]["box"], members[1]["box"]
        assert ax + aw <= bx  # left and right halves do not overlap


def test_demo__groups_are_variants_of_one_item(demo: Path, truth: dict[str, Any]) -> None:
    for item, ids in truth["groups"].items():
        assert len(ids) >= 2
        assert {truth["images"][i]["item"] for i in ids} == {int(item)}
        variants = [truth["images"][i]["variant"] for i in ids]
        assert len(set(variants)) == len(variants)
        contents = {(demo / truth["images"][i]["path"]).read_bytes() for i in ids}
        assert len(contents) == len(ids)  # every variant is its own picture
    categories = Counter(v["category"] for v in truth["items"].values())
    assert len(categories) == len(truth["categories"])


def test_demo__actions_follow_the_history(demo: Path, truth: dict[str, Any]) -> None:
    actions: Counter[str] = Counter()
    for ds in truth["ds_list"][1:]:
        for record in _parsed(demo / f"manifests/ds={ds}/uploads.jsonl"):
            if record and record.get("image_id") in truth["images"]:
                info = truth["images"][record["image_id"]]
                if info["ds"] < ds:
                    actions[record["action"]] += 1
                    assert {"ds": ds, "action": record["action"], "is_private": record["is_private"]} \
                        in info["history"]
    assert actions["delete"] >= 1 and actions["set_private"] >= 1 and actions["upsert"] >= 1
    assert any(v["uploaded_private"] for v in truth["images"].values())
    replaced = [v for v in truth["images"].values() if v["replaced_ds"]]
    assert replaced and all(v["path"].startswith(f"images/ds={v['replaced_ds']}/") for v in replaced)
    deleted = [v for v in truth["images"].values() if v["deleted"]]
    assert deleted and all(v["history"][-1]["action"] == "delete" for v in deleted)


def _events(demo: Path, truth: dict[str, Any]) -> list[dict[str, Any]]:
    bad = _bad(truth, "clicks")
    events = []
    for ds in truth["ds_list"]:
        for n, line in enumerate(_lines(demo / f"clicks/ds={ds}/events.jsonl"), start=1):
            if (ds, n) not in bad:
                events.append({**json.loads(line), "ds": ds})
    return events


def test_demo__clicks_only_reference_images_visible_that_day(demo: Path, truth: dict[str, Any]) -> None:
    images = truth["images"]
    events = _events(demo, truth)
    assert len({e["event_id"] for e in events}) == len(events)
    for e in events:
        for key in ("query_image_id", "image_id"):
            info = images[e[key]]
            assert info["ds"] <= e["ds"] == e["ts"][:10]
            state = [h for h in info["history"] if h["ds"] <= e["ds"]][-1]
            assert state["action"] != "delete" and not state["is_private"], (e, info["history"])
        assert 1 <= e["position"] <= 10
        assert (e["dwell_ms"] > 0) == (e["event_type"] == "click")


def test_propensities__planted_values_decrease_with_position(truth: dict[str, Any]) -> None:
    planted = {int(p): v for p, v in truth["propensity"].items()}
    assert planted == propensities(10, 1.0)
    values = [planted[p] for p in sorted(planted)]
    assert values[0] == 1.0 and all(a > b for a, b in itertools.pairwise(values))
    assert planted[4] == pytest.approx(0.25)


def test_demo__click_through_rate_recovers_the_position_bias(tmp_path: Path) -> None:
    """Shown lists are randomly ordered, so CTR(p)/CTR(1) estimates the planted propensity."""
    out = tmp_path / "many"
    generate_demo(out, 40, 1, seed=5, size=16, sessions_per_day=3000, bad_share=0, progress=False)
    truth = json.loads((out / "demo_truth.json").read_text())
    events = [json.loads(line) for line in _lines(out / "clicks/ds=2026-01-01/events.jsonl")]
    shown: Counter[int] = Counter()
    clicked: Counter[int] = Counter()
    for e in events:
        (shown if e["event_type"] == "impression" else clicked)[e["position"]] += 1
    ctr = {p: clicked[p] / shown[p] for p in shown}
    for p in (2, 3, 5):
        assert ctr[p] / ctr[1] == pytest.approx(truth["propensity"][str(p)], rel=0.25), (p, ctr)
    assert ctr[1] > 2 * ctr[10]


def test_demo__clicks_rise_with_relevance_and_dwell_with_grade(demo: Path, truth: dict[str, Any]) -> None:
    specs = {int(i): make_item(SEED, int(i)) for i in truth["items"]}

    def items(image_id: str) -> tuple[int, ...]:
        info = truth["images"][image_id]
        if info["composition"] is None:
            return (info["item"],)
        return tuple(m["item"] for m in info["composition"])

    shown: Counter[int] = Counter()
    clicked: Counter[int] = Counter()
    dwell: dict[bool, list[int]] = defaultdict(list)
    for e in _events(demo, truth):
        g = grade(items(e["query_image_id"]), items(e["image_id"]), specs)
        if e["event_type"] == "impression":
            shown[g] += 1
        else:
            clicked[g] += 1
            dwell[g >= 4].append(e["dwell_ms"])
    assert shown[5] > 50 and shown[0] > 50
    assert clicked[5] / shown[5] > 4 * clicked[0] / shown[0]
    assert sum(dwell[True]) / len(dwell[True]) > 2 * sum(dwell[False]) / len(dwell[False])
    assert RELEVANCE_BY_GRADE[5] > RELEVANCE_BY_GRADE[0]


def test_demo__judgments_are_graded_like_the_truth(demo: Path, truth: dict[str, Any]) -> None:
    with open(demo / "judgments/judgments.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["set"] for r in rows} == {"demo"}
    images = truth["images"]
    by_query: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for r in rows:
        rel = int(r["relevance"])
        assert 0 <= rel <= 5
        q, c = images[r["query_image_id"]], images[r["candidate_image_id"]]
        assert r["query_image_id"] != r["candidate_image_id"]
        assert not (c["private"] or c["deleted"] or q["private"] or q["deleted"])
        if q["item"] is not None and q["item"] == c["item"]:
            assert rel == 5
        if q["item"] is not None and c["composition"] and q["item"] in {m["item"] for m in c["composition"]}:
            assert rel == 4
        if q["item"] is not None and c["item"] is not None and q["category"] != c["category"]:
            assert rel == 0
        by_query[r["query_image_id"]].append((r["candidate_image_id"], rel))
    assert any(images[q]["composition"] for q in by_query)
    for q, cands in by_query.items():
        grades = {g for _, g in cands}
        assert max(grades) >= 3 and 0 in grades, q  # a positive and a negative for every query


def test_demo__labels_pair_variants_of_one_item(demo: Path, truth: dict[str, Any]) -> None:
    with open(demo / "labels/labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for r in rows:
        assert truth["images"][r["query_image_id"]]["item"] == truth["images"][r["positive_image_id"]]["item"]
        assert float(r["weight"]) == 1.0


def test_generate_demo__without_bad_share_every_line_is_good(tmp_path: Path) -> None:
    generate_demo(tmp_path, 24, 2, size=16, bad_share=0, progress=False)
    truth = json.loads((tmp_path / "demo_truth.json").read_text())
    assert truth["bad_records"] == []
    for path in [*tmp_path.glob("manifests/*/uploads.jsonl"), *tmp_path.glob("clicks/*/events.jsonl")]:
        for record in _parsed(path):
            assert record is not None and all(v is not None for v in record.values())


def test_cli_demo_data__prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from visearch.cli import main

    args = ["demo-data", "--images", "20", "--days", "2", "--out", str(tmp_path / "l"), "--size", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "20 images" in out and "2026-01-02" in out and "manifest:png_bomb=1" in out


@pytest.mark.s3
def test_generate_demo__writes_to_s3(s3_server: Any) -> None:
    from visearch.core.storage import open_store

    s3_server.create_bucket("demo-landing")
    summary = generate_demo("s3://demo-landing/land", 20, 2, size=16, progress=False)
    store = open_store("s3://demo-landing/land")
    truth = json.loads(store.get_text("demo_truth.json"))
    assert summary.images == 20 and len(truth["images"]) == 20
    first = next(iter(truth["images"].values()))
    assert first["uri"].startswith("s3://demo-landing/land/images/")
    assert read_uri(first["uri"])[:2] in (b"\xff\xd8", b"\x89P", b"RI", b"GI")
    assert store.exists("manifests/ds=2026-01-02/uploads.jsonl")
