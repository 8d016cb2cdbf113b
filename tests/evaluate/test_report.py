"""visearch.evaluate.report: the self-contained HTML page, its numbers, and rendering in a real headless Chromium.

The lake is a 40-image demo day: silver.images written from the demo truth, judgments and metrics by
the real evaluate job, a tiny model version as champion, hand-written online metrics (so the CTR
table can be checked by hand).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from visearch import cli
from visearch.core import tables as T
from visearch.core.config import ModelSettings, Settings, load_settings
from visearch.core.storage import open_store, read_uri
from visearch.demo.corpus import generate_demo
from visearch.evaluate import evaluate_day
from visearch.evaluate.baselines import ColorHistogramEmbedder
from visearch.evaluate.report import write_report
from visearch.train.model import build_model
from visearch.train.registry import ModelRegistry

pytestmark = pytest.mark.spark

DS = "2026-01-01"
TINY = ModelSettings(backbone="resnet18", embed_dim=16, image_size=32, small_stem=True)
LOSSES = [2.3, 2.0, 1.7, 1.5, 1.4]


class Page(HTMLParser):
    """The parts of the page the tests look at: title, headings, tables and images by class."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.h2: list[str] = []
        self.tables = 0
        self.images: list[dict[str, str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("title", "h2"):
            self._in = tag
            if tag == "h2":
                self.h2.append("")
        elif tag == "table":
            self.tables += 1
        elif tag == "img":
            self.images.append({k: v or "" for k, v in attrs})

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "h2":
            self.h2[-1] += data

    def by_class(self, name: str) -> list[dict[str, str]]:
        return [i for i in self.images if i.get("class") == name]


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def lake(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """A demo day with a promoted tiny model, its evaluation, and two days of online metrics."""
    root = tmp_path_factory.mktemp("report")
    env = {"VISEARCH_LANDING": str(root / "landing"), "VISEARCH_LAKE": str(root / "lake"),
           "VISEARCH_ARTIFACTS": str(root / "artifacts")}
    settings = load_settings(env=env).replace(model=TINY)
    generate_demo(root / "landing", images=40, days=1, size=32, seed=0, progress=False)
    truth = json.loads((root / "landing" / "demo_truth.json").read_text())
    ts = dt.datetime(2026, 1, 1, 9)
    rows: list[tuple[Any, ...]] = [
        (i, info["uri"], info["owner_id"], ts, [], "0" * 64, info["width"], info["height"], info["format"],
         "0" * 16, info["private"], "deleted" if info["deleted"] else "ok", DS)
        for i, info in sorted(truth["images"].items())]
    T.merge(spark, settings, T.SILVER_IMAGES, spark.createDataFrame(rows, T.SILVER_IMAGES.schema))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = build_model(TINY)
    registry = ModelRegistry(open_store(settings.artifacts))
    version = registry.save(model, config={"ds": DS, "losses": LOSSES})
    registry.set_champion(version)
    evaluate_day.run(settings, DS, spark=spark)
    online = [(day, metric, position, value)
              for day, shift in (("2026-01-01", 0.0), ("2026-01-02", 10.0))
              for metric, position, value in (("impressions", 1, 100.0 + shift), ("clicks", 1, 30.0),
                                              ("impressions", 2, 100.0 + shift), ("clicks", 2, 10.0),
                                              ("impressions", None, 200.0 + 2 * shift), ("ctr", 1, 0.3))]
    df = spark.createDataFrame(online, T.GOLD_ONLINE_METRICS.schema)
    T.replace_partition(spark, settings, T.GOLD_ONLINE_METRICS, df, "ds IN ('2026-01-01', '2026-01-02')")
    return settings, version


def test_write_report__sections_numbers_and_inline_images(spark: Any, lake: tuple[Settings, str],
                                                           tmp_path: Path) -> None:
    settings, version = lake
    out = tmp_path / "report.html"
    summary = write_report(settings, out, queries=4, k=5, spark=spark)
    page = parse(out)
    assert page.title == "visearch report"
    assert page.h2 == ["Models: learned vs baselines vs champion", f"Offline metrics of {version}",
                       "Training loss", "CTR by position", "Sample queries: top 5", "Recent job runs"]
    assert summary.model_version == version == summary.champion and summary.evaluated_versions == 1
    assert summary.embeddings_source == "embedded on the fly"
    assert len(page.by_class("query")) == 4 and len(page.by_class("result")) == 4 * 5 == summary.result_images
    assert len(page.by_class("plot")) == 2  # loss curve and CTR
    assert all(i["src"].startswith("data:image/png;base64,") for i in page.images)  # nothing fetched
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    # CTR over both days: position 1 = 60 / 210, position 2 = 20 / 210.
    assert f"<td>{60 / 210:.4f}</td>" in text and f"<td>{20 / 210:.4f}</td>" in text
    assert "<td>210</td>" in text
    # The metrics table carries the evaluate job's numbers.
    ndcg = {r["embedder"]: r["value"] for r in T.read(spark, settings, T.GOLD_MODEL_METRICS).collect()
            if r["protocol"] == "corpus" and r["metric"] == "ndcg" and r["k"] == 10}
    for value in ndcg.values():
        assert f"{value:.4f}" in text


def test_write_report__searches_gold_embeddings_when_the_version_has_them(
        spark: Any, lake: tuple[Settings, str], tmp_path: Path) -> None:
    settings, version = lake
    ok = T.read(spark, settings, T.SILVER_IMAGES).where("status = 'ok'").collect()
    corpus = sorted(r["image_id"] for r in ok if not r["is_private"])
    uri = {r["image_id"]: r["uri"] for r in ok}
    # Colour histograms as this version's stored vectors: the report must rank by them, not by the model.
    vectors = ColorHistogramEmbedder().embed_images([read_uri(uri[i]) for i in corpus])  # (N, 512)
    fields = spark.createDataFrame([], T.GOLD_EMBEDDINGS.schema).schema.fieldNames()
    known = [{"model_version": version, "image_id": i, "embedding": [float(v) for v in vec], "ds": DS}
             for i, vec in zip(corpus, vectors, strict=True)]
    rows = [tuple(row.get(f) for f in fields) for row in known]  # other columns (e.g. sha256) left NULL
    df = spark.createDataFrame(rows, T.GOLD_EMBEDDINGS.schema)
    T.replace_partition(spark, settings, T.GOLD_EMBEDDINGS, df, f"model_version = '{version}'")
    try:
        out = tmp_path / "report.html"
        summary = write_report(settings, out, queries=3, k=4, spark=spark)
        assert summary.embeddings_source == "gold.embeddings"
        page = parse(out)
        queries = [i["alt"].removeprefix("query ") for i in page.by_class("query")]
        results = [i["alt"].split(": ", 1)[1] for i in page.by_class("result")]
        position = {i: n for n, i in enumerate(corpus)}
        for n, query in enumerate(queries):
            scores = vectors @ vectors[position[query]]  # (N, 512) @ (512,) -> (N,)
            expected = sorted((i for i in corpus if i != query), key=lambda i: (-scores[position[i]], i))[:4]
            assert results[4 * n: 4 * n + 4] == expected
    finally:
        T.replace_partition(spark, settings, T.GOLD_EMBEDDINGS, df.limit(0), f"model_version = '{version}'")


def test_write_report__empty_lake_still_renders(spark: Any, settings: Settings, tmp_path: Path) -> None:
    summary = write_report(settings, tmp_path / "empty.html", spark=spark)
    page = parse(tmp_path / "empty.html")
    assert summary.model_version is None and summary.result_images == 0
    assert "No model has been evaluated yet" in (tmp_path / "empty.html").read_text()
    assert page.title == "visearch report" and not page.by_class("result")


def test_cli_report__writes_the_file_and_prints_the_summary(
        spark: Any, lake: tuple[Settings, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings, version = lake
    monkeypatch.setenv("VISEARCH_LANDING", settings.landing)
    monkeypatch.setenv("VISEARCH_LAKE", settings.lake)
    monkeypatch.setenv("VISEARCH_ARTIFACTS", settings.artifacts)
    out = tmp_path / "cli.html"
    assert cli.main(["report", "--out", str(out), "--queries", "2", "--k", "3"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out"] == str(out) and printed["model_version"] == version
    assert printed["result_images"] == 6
    assert len(parse(out).by_class("result")) == 6


# ------------------------------------------------------------------------------------------ real browser

_DECODE_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img')];
  const decoded = (i) => i.complete && i.naturalWidth > 0;
  const ok = (sel) => [...document.querySelectorAll(sel)].filter(decoded).length;
  const probe = document.createElement('div');
  probe.id = 'probe';
  probe.dataset.results = ok('img.result');
  probe.dataset.queries = ok('img.query');
  probe.dataset.plots = ok('img.plot');
  probe.dataset.broken = imgs.filter(i => !decoded(i)).length;
  probe.dataset.tables = document.querySelectorAll('table').length;
  document.body.appendChild(probe);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is needed: apt-get install -y chromium "
                    "(or deselect with -m 'not browser')")
    return found


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, check=False)


@pytest.mark.browser
def test_report__renders_in_headless_chromium_with_every_image_decoded(
        spark: Any, lake: tuple[Settings, str], tmp_path: Path) -> None:
    settings, _ = lake
    out = tmp_path / "report.html"
    write_report(settings, out, queries=3, k=6, spark=spark)
    # A copy with a probe script that records, after load, how many images the browser decoded.
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text(encoding="utf-8").replace("</body>", _DECODE_PROBE + "</body>"),
                      encoding="utf-8")
    done = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Page()
    dom.feed(done.stdout)
    assert dom.title == "visearch report"
    assert len(dom.by_class("result")) == 3 * 6
    probe = done.stdout[done.stdout.index('id="probe"'):].split(">", 1)[0]
    assert 'data-results="18"' in probe and 'data-queries="3"' in probe and 'data-plots="2"' in probe
    assert 'data-broken="0"' in probe
    assert 'data-tables="' in probe and 'data-tables="0"' not in probe

    shot = tmp_path / "report.png"
    done = run_chromium([f"--screenshot={shot}", "--window-size=1280,2400", out.as_uri()],
                        tmp_path / "profile2")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10  # not a blank page
    if os.environ.get("VISEARCH_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["VISEARCH_KEEP_SCREENSHOT"])
