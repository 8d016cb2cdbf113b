"""``visearch land``: a folder of the user's images becomes a day's landing manifest."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from visearch.core.config import Settings, load_settings
from visearch.core.storage import read_uri
from visearch.ingest.landing import allowed_uri_prefixes, file_uri, find_images, land_folder, stable_image_id

DS = "2026-02-03"
IMAGE_FILES = (
    "My Photos/2024 trip/IMG 001.JPG",
    "cats/naïve café #1.jpeg",
    "odd/100% [final]?.png",
    "a/b/c/deep.webp",
    "top.GIF",
)
SKIPPED_FILES = (".hidden/secret.jpg", "cats/._shadow.jpg", "notes.txt", "cats/readme.md")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Nested folders with odd names: five images, a hidden folder, a macOS shadow file, text files."""
    root = tmp_path / "pictures"
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF"}
    for i, name in enumerate(IMAGE_FILES + SKIPPED_FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = formats.get(path.suffix.lower())
        if fmt:
            Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(path, fmt)
        else:
            path.write_text("not an image")
    return root


def _manifests(landing: Path, ds: str = DS) -> list[Path]:
    return sorted((landing / f"manifests/ds={ds}").glob("*.jsonl"))


def _manifest(landing: Path, ds: str = DS) -> list[dict[str, Any]]:
    """The lines of the day's newest manifest."""
    text = _manifests(landing, ds)[-1].read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_land_folder__one_line_per_image_with_stable_ids_and_readable_uris(
    folder: Path, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    summary = land_folder(folder, DS, landing=str(landing))
    rows = _manifest(landing)
    assert summary.images == len(rows) == len(IMAGE_FILES)
    assert [r["image_id"] for r in rows] == [stable_image_id(n) for n in sorted(IMAGE_FILES)]
    for row, name in zip(rows, sorted(IMAGE_FILES), strict=True):
        assert len(row["image_id"]) == 16 and int(row["image_id"], 16) >= 0
        assert read_uri(row["uri"]) == (folder / name).read_bytes()  # percent-encoding round-trips
        assert row["tags"] == list(Path(name).parent.parts)
        assert row["upload_ts"] == f"{DS}T00:00:00Z"
        assert (row["owner_id"], row["is_private"], row["action"]) == ("local", False, "upsert")
    (manifest,) = _manifests(landing)
    assert summary.manifest_uri == file_uri(manifest.resolve())
    assert re.fullmatch(r"uploads-\d{8}T\d{12}Z-[0-9a-f]{12}\.jsonl", manifest.name)


def test_land_folder__rerun_keeps_the_same_manifest_and_a_moved_folder_keeps_its_ids(
    folder: Path, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    summary = land_folder(folder, DS, landing=str(landing))
    (key,) = _manifests(landing)
    first = key.read_bytes()
    again = land_folder(folder, DS, landing=str(landing))
    assert (again.manifest_uri, again.manifest_reused, summary.manifest_reused) == (summary.manifest_uri, True, False)
    assert _manifests(landing) == [key] and key.read_bytes() == first
    moved = shutil.move(folder, tmp_path / "elsewhere" / "renamed")
    land_folder(moved, DS, landing=str(landing))
    assert len(_manifests(landing)) == 2  # new URIs: a new manifest, named after the first
    ids = [json.loads(x)["image_id"] for x in first.splitlines()]
    assert [r["image_id"] for r in _manifest(landing)] == ids
    assert all("/elsewhere/renamed/" in r["uri"] for r in _manifest(landing))


def test_land_folder__skips_hidden_and_non_image_files(folder: Path) -> None:
    found = [p.relative_to(folder).as_posix() for p in find_images(folder)]
    assert found == sorted(IMAGE_FILES)


def test_land_folder__private_share_is_stable_and_all_or_nothing_at_the_ends(
    folder: Path, tmp_path: Path
) -> None:
    none = land_folder(folder, DS, landing=str(tmp_path / "a"), private_share=0.0)
    every = land_folder(folder, DS, landing=str(tmp_path / "b"), private_share=1.0)
    assert (none.private, every.private) == (0, len(IMAGE_FILES))
    half = land_folder(folder, DS, landing=str(tmp_path / "c"), private_share=0.5)
    flags = [r["is_private"] for r in _manifest(tmp_path / "c")]
    assert sum(flags) == half.private
    land_folder(folder, DS, landing=str(tmp_path / "c"), private_share=0.5)
    assert [r["is_private"] for r in _manifest(tmp_path / "c")] == flags


def test_land_folder__namespace_changes_the_ids(folder: Path, tmp_path: Path) -> None:
    land_folder(folder, DS, landing=str(tmp_path / "a"))
    land_folder(folder, DS, landing=str(tmp_path / "b"), namespace="phone")
    a = {r["image_id"] for r in _manifest(tmp_path / "a")}
    b = {r["image_id"] for r in _manifest(tmp_path / "b")}
    assert len(a) == len(b) == len(IMAGE_FILES) and not a & b


def test_land_folder__defaults_to_the_settings_landing(folder: Path, settings: Settings) -> None:
    summary = land_folder(folder, DS, settings=settings, owner="alice")
    assert summary.manifest_uri.startswith(settings.landing)
    landing = Path(settings.landing.removeprefix("file://"))
    assert {r["owner_id"] for r in _manifest(landing)} == {"alice"}


def test_land_folder__copy_puts_the_images_under_the_landing(folder: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    summary = land_folder(folder, DS, landing=str(landing), copy=True)
    assert summary.copied == len(IMAGE_FILES)
    originals = {stable_image_id(n): (folder / n).read_bytes() for n in IMAGE_FILES}
    for row in _manifest(landing):
        assert row["uri"].startswith(file_uri(landing.resolve() / "images/pictures") + "/")
        assert read_uri(row["uri"]) == originals[row["image_id"]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ds": "2026-2-3"}, ValueError, "2026-2-3"),
        ({"ds": "yesterday"}, ValueError, "yesterday"),
        ({"private_share": 1.5}, ValueError, "1.5"),
        ({"owner": ""}, ValueError, "owner"),
    ],
)
def test_land_folder__rejects_bad_arguments(folder: Path, tmp_path: Path, kwargs: dict[str, Any],
                                            error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"ds": DS, **kwargs}
    ds = args.pop("ds")
    with pytest.raises(error, match=match):
        land_folder(folder, ds, landing=str(tmp_path / "landing"), **args)


def test_land_folder__empty_or_missing_folder_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        land_folder(tmp_path / "empty", DS, landing=str(tmp_path / "landing"))
    with pytest.raises(FileNotFoundError):
        land_folder(tmp_path / "nope", DS, landing=str(tmp_path / "landing"))
    assert not (tmp_path / "landing").exists()


def test_file_uri__encodes_only_what_it_must() -> None:
    assert file_uri("/data/ds=2026-01-01/a b#1%.jpg") == "file:///data/ds=2026-01-01/a%20b%231%25.jpg"
    assert file_uri("/x/café.png") == "file:///x/caf%C3%A9.png"
    with pytest.raises(ValueError, match="relative"):
        file_uri("relative/path.jpg")


def test_cli_land__prints_the_summary(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visearch.cli import main

    args = ["land", "--images", str(folder), "--ds", DS, "--landing", str(tmp_path / "l"), "--owner", "bob"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == len(IMAGE_FILES) and summary["ds"] == DS


@pytest.mark.s3
def test_land_folder__to_an_s3_landing_with_copies(folder: Path, s3_server: Any) -> None:
    from visearch.core.storage import open_store

    s3_server.create_bucket("land-test")
    summary = land_folder(folder, DS, landing="s3://land-test/landing", copy=True)
    store = open_store("s3://land-test/landing")
    (key,) = store.list(f"manifests/ds={DS}/")
    rows = [json.loads(x) for x in store.get_text(key).splitlines()]
    assert summary.manifest_uri == store.uri(key) and key.endswith(".jsonl")
    originals = {stable_image_id(n): (folder / n).read_bytes() for n in IMAGE_FILES}
    assert len(rows) == len(IMAGE_FILES)
    for row in rows:
        assert row["uri"].startswith("s3://land-test/landing/images/pictures/")
        assert read_uri(row["uri"]) == originals[row["image_id"]]


def test_land_folder__a_second_run_on_the_same_day_adds_its_own_manifest(folder: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    other = tmp_path / "more"
    other.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(other / "new.png")
    first = land_folder(folder, DS, landing=str(landing))
    second = land_folder(other, DS, landing=str(landing))
    manifests = _manifests(landing)
    assert [file_uri(m.resolve()) for m in manifests] == [first.manifest_uri, second.manifest_uri]
    assert len(manifests[0].read_text().splitlines()) == len(IMAGE_FILES)  # the first run's images stay


@pytest.fixture
def linked(folder: Path, tmp_path: Path) -> Path:
    """``folder`` plus links: to a file outside, to a folder outside, to itself, and one inside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"SECRET outside the folder")
    (folder / "leak.jpg").symlink_to(outside / "secret.jpg")
    (folder / "hostname.jpg").symlink_to("/etc/hostname")
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    (folder / "cats" / "loop").symlink_to(folder, target_is_directory=True)
    Image.new("RGB", (8, 8)).save(folder / ".store.png")  # hidden, so only the link lands it
    (folder / "alias.png").symlink_to(folder / ".store.png")
    return folder


def test_land_folder__links_are_skipped_and_nothing_outside_is_copied(linked: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    summary = land_folder(linked, DS, landing=str(landing), copy=True)
    assert (summary.images, summary.skipped_links) == (len(IMAGE_FILES), 5)
    copied = [p.read_bytes() for p in (landing / "images").rglob("*") if p.is_file()]
    assert len(copied) == len(IMAGE_FILES) and not any(b"SECRET" in data for data in copied)


def test_land_folder__follow_links_follows_only_links_inside_the_folder(linked: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    summary = land_folder(linked, DS, landing=str(landing), copy=True, follow_links=True)
    # alias.png is followed; the two links out, the folder out and the loop are not.
    assert (summary.images, summary.skipped_links) == (len(IMAGE_FILES) + 1, 4)
    rows = {r["image_id"]: r for r in _manifest(landing)}
    assert read_uri(rows[stable_image_id("alias.png")]["uri"]) == (linked / ".store.png").read_bytes()
    copied = [p.read_bytes() for p in (landing / "images").rglob("*") if p.is_file()]
    assert not any(b"SECRET" in data for data in copied)


def test_cli_land__skips_names_that_are_not_utf8_with_a_warning(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visearch.cli import main

    raw = os.fsencode(folder)
    with open(raw + b"/bad-\xff.jpg", "wb") as handle:
        Image.new("RGB", (8, 8)).save(handle, "JPEG")
    os.mkdir(raw + b"/dir-\xfe")
    with open(raw + b"/dir-\xfe/inside.png", "wb") as handle:
        Image.new("RGB", (8, 8)).save(handle, "PNG")
    assert main(["land", "--images", str(folder), "--ds", DS, "--landing", str(tmp_path / "l")]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert (summary["images"], summary["skipped_names"]) == (len(IMAGE_FILES), 2)
    assert "skipped 2 files or folders whose names are not UTF-8" in out.err


def test_cli_land__a_bad_folder_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visearch.cli import main

    assert main(["land", "--images", str(tmp_path / "nope"), "--ds", DS, "--landing", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err
    assert "visearch land: error: not a folder" in err and "Traceback" not in err


def test_allowed_uri_prefixes__landing_root_and_landed_folders_unless_configured(
    folder: Path, tmp_path: Path
) -> None:
    settings = load_settings(env={"VISEARCH_LANDING": str(tmp_path / "landing")})
    assert allowed_uri_prefixes(settings) == [settings.landing]
    land_folder(folder, DS, settings=settings)
    land_folder(folder, DS, settings=settings)  # recorded once
    assert allowed_uri_prefixes(settings) == sorted([settings.landing, file_uri(folder)])
    land_folder(folder, "2026-02-04", settings=settings, copy=True)  # copies lie under the root already
    assert len(allowed_uri_prefixes(settings)) == 2
    configured = load_settings(env={"VISEARCH_LANDING": str(tmp_path / "landing"),
                                    "VISEARCH_INGEST__ALLOWED_URI_PREFIXES": "s3://photos/2026,/data/pics"})
    assert allowed_uri_prefixes(configured) == ["file:///data/pics", "s3://photos/2026"]
