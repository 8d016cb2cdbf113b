"""The HTML report people look at: one self-contained page, nothing fetched when it is opened.

``visearch report --out report.html`` (or :func:`write_report`) gathers, from the lake and the
artifacts store:

- **Models**: every evaluated model version's nDCG@10 beside the random-weight network, the colour
  histogram and the champion it was compared with, with the promotion decision
  (``gold.model_metrics``, ``models/<version>/promotion.json``, ``models/CHAMPION``);
- **Metrics in detail** of the shown model: every metric at every k, per protocol;
- **Training loss** curve of the shown model (``models/<version>/config.json``);
- **CTR by position** over all days of ``gold.online_metrics``;
- **Sample queries**: judged queries (``gold.eval_judgments``) with their top-k results from the
  shown model by exact search over the public ok corpus — vectors from ``gold.embeddings`` when
  that table holds the version, else embedded on the fly — each result with its score and its
  true relevance (``–`` when unjudged).

The shown model is ``--model``, else the champion, else the newest version. Thumbnails are
base64 PNG data URIs and plots PNG data URIs drawn with Matplotlib's Agg canvas, so the file can
be mailed or attached to a ticket as it is.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from visearch.core.config import Settings, load_settings
from visearch.evaluate.evaluation import (
    CHAMPION,
    COLOR_HISTOGRAM,
    EMBEDDERS,
    MODEL,
    PROTOCOLS,
    RANDOM_INIT,
    embed_ids,
    exact_top_k,
    normalise,
    stable_sample,
)
from visearch.evaluate.metrics import METRICS, metric_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from visearch.train.registry import ModelRegistry

log = logging.getLogger(__name__)

THUMB_SIDE = 96
EMBEDDER_LABELS = {MODEL: "learned model", CHAMPION: "champion", RANDOM_INIT: "random weights",
                   COLOR_HISTOGRAM: "colour histogram"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d2330; }
h1 { margin-bottom: 0.2rem; } .sub { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.92rem; }
th, td { border: 1px solid #d5d9e0; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f1f3f7; } td.l, th.l { text-align: left; }
tr.champion td { background: #eef8ee; } .best { font-weight: 700; }
.note { color: #5b6475; font-size: 0.9rem; }
.query { display: flex; gap: 0.5rem; align-items: flex-start; margin: 0.3rem 0 1.2rem; flex-wrap: wrap; }
h3 { margin: 1rem 0 0; font-size: 1rem; }
figure { margin: 0; text-align: center; font-size: 0.75rem; width: 100px; }
figure img { width: 96px; height: 96px; object-fit: contain; border: 1px solid #d5d9e0; background: #fafafa; }
figure.q img { border: 3px solid #3b6fd8; width: 92px; height: 92px; }
.rel5, .rel4 { color: #137333; font-weight: 700; } .rel3, .rel2, .rel1 { color: #8a6d00; }
.rel0, .relu { color: #9aa0a6; }
img.plot { max-width: 720px; width: 100%; border: 1px solid #e3e6eb; }
"""


@dataclass
class ReportSummary:
    """What a written report holds (for logs, the CLI and tests)."""

    out: str
    model_version: str | None
    champion: str | None
    evaluated_versions: int
    queries: int
    result_images: int
    embeddings_source: str | None
    sections: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------
# small renderers


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def thumbnail_data_uri(image: bytes | Image.Image, side: int = THUMB_SIDE) -> str:
    """A PNG data URI of the image shrunk to fit ``side`` × ``side`` (EXIF orientation applied).

    Raises:
        ValueError: when the image cannot be decoded.
    """
    from visearch.train.preprocess import decode_image

    rgb = decode_image(image, draft_size=side)
    rgb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_data_uri(figure: Any) -> str:
    """A Matplotlib ``Figure`` rendered by the Agg canvas as a PNG data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def loss_plot(curves: Mapping[str, Sequence[float]]) -> str:
    """Training loss per step of each ``{label: losses}`` as a PNG data URI."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label=label, linewidth=1.4)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_data_uri(fig)


def ctr_plot(ctr: Mapping[int, float]) -> str:
    """CTR by result position as a bar chart, PNG data URI."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.0))
    ax = fig.add_subplot()
    positions = sorted(ctr)
    ax.bar(positions, [ctr[p] for p in positions], color="#3b6fd8")
    ax.set_xlabel("position")
    ax.set_ylabel("CTR")
    ax.set_xticks(positions)
    ax.grid(axis="y", alpha=0.3)
    return figure_data_uri(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, row_classes: Sequence[str] = (),
           left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned; cells are already HTML."""
    head = "".join(f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{row_classes[n]}"' if n < len(row_classes) and row_classes[n] else ""
        cells = "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


# ---------------------------------------------------------------------------------------------
# data gathering


def _read_rows(
    spark: SparkSession, settings: Settings, table: Any, where: str | None = None
) -> list[dict[str, Any]]:
    from visearch.core import tables as T

    if not T.exists(spark, settings, table):
        return []
    df = T.read(spark, settings, table)
    if where:
        df = df.where(where)
    return [r.asDict() for r in df.collect()]


def _shown_version(registry: ModelRegistry, requested: str | None) -> str | None:
    if requested:
        registry.config(requested)  # FileNotFoundError for an unknown version
        return requested
    versions = registry.versions()
    return registry.champion() or (versions[-1] if versions else None)


def _models_section(metrics: list[dict[str, Any]], registry: ModelRegistry, settings: Settings,
                    champion: str | None) -> tuple[str, int]:
    protocol, eval_set = settings.eval.promote_protocol, settings.eval.eval_set
    ndcg: dict[str, dict[str, float]] = {}
    evaluated_on: dict[str, str] = {}
    for r in metrics:
        if r["eval_set"] == eval_set and r["protocol"] == protocol and r["metric"] == "ndcg" and r["k"] == 10:
            ndcg.setdefault(r["model_version"], {})[r["embedder"]] = float(r["value"])
            evaluated_on[r["model_version"]] = str(r["ds"])
    if not ndcg:
        return "<p class='note'>No model has been evaluated yet (run the evaluate job).</p>", 0
    rows, classes = [], []
    for version in sorted(ndcg):
        scores = ndcg[version]
        record = registry.promotion_record(version)
        decision = ("–" if record is None else ("promoted" if record.get("promote") else "refused"))
        best = max(scores.values())
        cells = [_e(version) + (" ★" if version == champion else ""), _e(evaluated_on[version])]
        for embedder in (MODEL, CHAMPION, RANDOM_INIT, COLOR_HISTOGRAM):
            value = scores.get(embedder)
            text = _num(value)
            cells.append(f'<span class="best">{text}</span>' if value is not None and value == best else text)
        reason = f"<br><span class='note'>{_e(record['reason'])}</span>" if record else ""
        cells.append(_e(decision) + reason)
        rows.append(cells)
        classes.append("champion" if version == champion else "")
    header = ["model version", "evaluated", *[EMBEDDER_LABELS[e] for e in (MODEL, CHAMPION, RANDOM_INIT,
                                                                           COLOR_HISTOGRAM)], "promotion"]
    intro = (f"<p class='note'>nDCG@10, protocol <b>{_e(protocol)}</b>, judgment set <b>{_e(eval_set)}</b>. "
             "All columns of a row are computed in the same run on the same queries and corpus; "
             "“champion” is the model the row's version was compared with. ★ marks the current champion.</p>")
    return intro + _table(header, rows, row_classes=classes, left=2), len(ndcg)


def _detail_section(metrics: list[dict[str, Any]], version: str, settings: Settings) -> str:
    rows_of = [r for r in metrics
               if r["model_version"] == version and r["eval_set"] == settings.eval.eval_set]
    if not rows_of:
        return f"<p class='note'>{_e(version)} has no offline metrics yet.</p>"
    parts = []
    for protocol in PROTOCOLS:
        values = {(r["embedder"], r["metric"], r["k"]): float(r["value"])
                  for r in rows_of if r["protocol"] == protocol}
        if not values:
            continue
        embedders = [e for e in EMBEDDERS if any(key[0] == e for key in values)]
        ks = sorted({key[2] for key in values})
        rows = []
        for metric in METRICS:
            for k in ks:
                cells = [values.get((e, metric, k)) for e in embedders]
                if all(c is None for c in cells):
                    continue
                best = max(c for c in cells if c is not None)
                rows.append([_e(metric_name(metric, k)), *[
                    f'<span class="best">{_num(c)}</span>' if c is not None and c == best else _num(c)
                    for c in cells]])
        parts.append(f"<h3>protocol: {_e(protocol)}</h3>"
                     + _table(["metric", *[EMBEDDER_LABELS[e] for e in embedders]], rows))
    note = ("<p class='note'><b>judged</b>: each query's judged candidates ranked by cosine similarity. "
            "<b>corpus</b>: top-k from the whole public corpus by exact inner-product search, unjudged "
            "results count as relevance 0.</p>")
    return note + "".join(parts)


def _ctr_section(online: list[dict[str, Any]]) -> str:
    clicks: dict[int, float] = {}
    impressions: dict[int, float] = {}
    days = sorted({str(r["ds"]) for r in online})
    for r in online:
        if r["position"] is None:
            continue
        target = clicks if r["metric"] == "clicks" else impressions if r["metric"] == "impressions" else None
        if target is not None:
            target[int(r["position"])] = target.get(int(r["position"]), 0.0) + float(r["value"])
    ctr = {p: clicks.get(p, 0.0) / n for p, n in impressions.items() if n > 0}
    if not ctr:
        return "<p class='note'>No click data yet (run the online_metrics job).</p>"
    rows = [[str(p), f"{impressions[p]:.0f}", f"{clicks.get(p, 0.0):.0f}", f"{ctr[p]:.4f}"]
            for p in sorted(ctr)]
    return (f"<p class='note'>Over {len(days)} day(s), {_e(days[0])} to {_e(days[-1])}.</p>"
            f'<img class="plot" alt="CTR by position" src="{ctr_plot(ctr)}">'
            + _table(["position", "impressions", "clicks", "CTR"], rows))


def _runs_section(settings: Settings) -> str:
    from visearch.core.storage import open_store

    store = open_store(settings.artifacts, settings.s3)
    keys = sorted(k for k in store.list("runs/") if k.endswith(".json"))
    if not keys:
        return "<p class='note'>No job runs recorded yet.</p>"
    rows = []
    for key in keys[-40:]:
        try:
            record = json.loads(store.get_text(key))
        except (ValueError, FileNotFoundError):
            continue
        seconds = sum(float(v) for v in (record.get("stage_seconds") or {}).values())
        shown = {k: v for k, v in record.items() if k not in ("job", "ds", "stage_seconds")
                 and isinstance(v, int | float | str | bool) and not isinstance(v, dict)}
        summary = ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6])
        rows.append([_e(key.split("/")[1].removeprefix("ds=")), _e(record.get("job", "?")), f"{seconds:.1f}",
                     f"<span class='note'>{_e(summary)}</span>"])
    return _table(["ds", "job", "seconds", "result"], rows, left=2)


@dataclass
class _Samples:
    html: str
    queries: int
    results: int
    source: str | None


def _samples_section(spark: SparkSession, settings: Settings, registry: ModelRegistry, version: str,
                     n_queries: int, k: int) -> _Samples:
    from pyspark.sql import functions as F

    from visearch.core import tables as T
    from visearch.core.storage import read_uri

    judged = _read_rows(spark, settings, T.GOLD_EVAL_JUDGMENTS, f"`set` = '{settings.eval.eval_set}'")
    judgments: dict[str, dict[str, int]] = {}
    for r in judged:
        judgments.setdefault(r["query_image_id"], {})[r["candidate_image_id"]] = int(r["relevance"])
    ok = _read_rows(spark, settings, T.SILVER_IMAGES, "status = 'ok'")
    uri_of = {r["image_id"]: r["uri"] for r in ok}
    corpus = sorted(r["image_id"] for r in ok if not r["is_private"])
    queries = [q for q in sorted(judgments) if q in uri_of]
    if not queries or not corpus:
        return _Samples("<p class='note'>No judged query with an ingested image yet.</p>", 0, 0, None)
    picked = stable_sample(queries, n_queries)  # a deterministic spread (by hash of the id), in id order

    vectors: dict[str, np.ndarray] = {}
    source = "embedded on the fly"
    if T.exists(spark, settings, T.GOLD_EMBEDDINGS):
        emb = (T.read(spark, settings, T.GOLD_EMBEDDINGS).where(F.col("model_version") == version)
               .select("image_id", "embedding").collect())
        if emb:
            vectors = {r["image_id"]: np.asarray(r["embedding"], dtype=np.float32) for r in emb}
            source = "gold.embeddings"
    needed = sorted(set(picked) | set(corpus)) if not vectors else sorted(set(picked) - set(vectors))
    images: dict[str, bytes] = {}
    for image_id in sorted(set(needed) | set(picked)):
        images[image_id] = read_uri(uri_of[image_id], settings.s3)
    if needed:
        model = registry.load(version)
        fresh = embed_ids(model, images, needed, batch_size=settings.embed.batch_size)  # (n, D)
        vectors.update({i: fresh[row] for row, i in enumerate(needed)})
    searchable = [i for i in corpus if i in vectors]
    base = normalise(np.stack([vectors[i] for i in searchable]))  # (N, D)
    query_vectors = normalise(np.stack([vectors[q] for q in picked]))  # (Q, D)
    hits = exact_top_k(searchable, base, picked, query_vectors, k)
    for image_id in {i for h in hits for i, _ in h} - set(images):
        images[image_id] = read_uri(uri_of[image_id], settings.s3)

    blocks, shown = [], 0
    for query, found in zip(picked, hits, strict=True):
        judged_q = judgments[query]
        cards = [f'<figure class="q"><img class="query" alt="query {_e(query)}" '
                 f'src="{thumbnail_data_uri(images[query])}"><figcaption>query<br>{_e(query)}</figcaption></figure>']
        for rank, (image_id, score) in enumerate(found, start=1):
            rel = judged_q.get(image_id)
            rel_text = (f'<span class="rel{rel}">rel {rel}</span>' if rel is not None
                        else '<span class="relu">rel –</span>')
            cards.append(f'<figure><img class="result" alt="result {rank}: {_e(image_id)}" '
                         f'src="{thumbnail_data_uri(images[image_id])}">'
                         f"<figcaption>#{rank} · {score:.3f}<br>{rel_text}</figcaption></figure>")
            shown += 1
        best_possible = sorted(judged_q.values(), reverse=True)[:k]
        blocks.append(f"<h3>{_e(query)}</h3><p class='note'>{len(judged_q)} judged candidates, best grades "
                      f"{_e(best_possible)}.</p><div class='query'>{''.join(cards)}</div>")
    intro = (f"<p class='note'>{len(picked)} judged queries, top {k} of {len(searchable)} public images "
             f"by exact cosine search with {_e(version)} (vectors: {_e(source)}). Under each result: rank, "
             "score and the true relevance (– when unjudged).</p>")
    return _Samples(intro + "".join(blocks), len(picked), shown, source)


# ---------------------------------------------------------------------------------------------
# the page


def write_report(
    settings: Settings,
    out_path: str | Path,
    *,
    queries: int = 8,
    k: int = 10,
    model_version: str | None = None,
    spark: SparkSession | None = None,
) -> ReportSummary:
    """Write the self-contained HTML report to ``out_path`` (see the module docstring).

    Raises:
        ValueError: for ``queries`` < 0 or ``k`` < 1.
        FileNotFoundError: for an explicit ``model_version`` that does not exist.
    """
    from visearch.core import tables as T
    from visearch.core.spark import get_spark
    from visearch.core.storage import open_store
    from visearch.train.registry import ModelRegistry

    if queries < 0:
        raise ValueError(f"queries must be >= 0, got {queries}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    spark = spark or get_spark(settings, "visearch-report")
    registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
    champion = registry.champion()
    version = _shown_version(registry, model_version)
    metrics = _read_rows(spark, settings, T.GOLD_MODEL_METRICS)
    online = _read_rows(spark, settings, T.GOLD_ONLINE_METRICS)

    sections: list[tuple[str, str]] = []
    models_html, evaluated = _models_section(metrics, registry, settings, champion)
    sections.append(("Models: learned vs baselines vs champion", models_html))
    if version is not None:
        sections.append((f"Offline metrics of {version}", _detail_section(metrics, version, settings)))
        curves: dict[str, list[float]] = {}
        for v in dict.fromkeys([version, *([champion] if champion else [])]):
            losses = registry.config(v).get("losses") or []
            if losses:
                curves[v] = [float(x) for x in losses]
        loss_html = (f'<img class="plot" alt="training loss" src="{loss_plot(curves)}">' if curves
                     else "<p class='note'>No loss curve recorded in config.json.</p>")
        sections.append(("Training loss", loss_html))
    sections.append(("CTR by position", _ctr_section(online)))
    samples = _Samples("<p class='note'>No model version yet.</p>", 0, 0, None)
    if version is not None and queries > 0:
        samples = _samples_section(spark, settings, registry, version, queries, k)
    sections.append((f"Sample queries: top {k}", samples.html))
    sections.append(("Recent job runs", _runs_section(settings)))

    shown = f"model {version}" if version else "no model yet"
    subtitle = (f"{shown} · champion {champion or '–'} · lake {settings.lake} · "
                f"generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    body = "".join(f"<section><h2>{_e(title)}</h2>{content}</section>" for title, content in sections)
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>visearch report</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{_CSS}</style></head>"
            f"<body><h1>visearch report</h1><p class='sub'>{_e(subtitle)}</p>{body}</body></html>\n")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    summary = ReportSummary(str(out), version, champion, evaluated, samples.queries, samples.results,
                            samples.source, [title for title, _ in sections])
    log.info("wrote %s (%d KiB): %d sample queries, %d result images", out, len(page) // 1024,
             samples.queries, samples.results)
    return summary


def _cli(args: argparse.Namespace) -> int:
    summary = write_report(load_settings(), args.out, queries=args.queries, k=args.k,
                           model_version=args.model)
    print(json.dumps(summary.to_dict(), sort_keys=True))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch report``."""
    parser = subparsers.add_parser(
        "report",
        help="write the HTML report (metrics, loss curve, CTR, sample queries)",
        description="Write one self-contained HTML page: offline metrics of every model against the "
                    "baselines and the champion, the training loss, CTR by position and sample queries with "
                    "their top results. Try: visearch report --out report.html --queries 8 --k 10",
    )
    parser.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--queries", type=int, default=8, help="sample judged queries to show (default 8)")
    parser.add_argument("--k", type=int, default=10, help="results shown per query (default 10)")
    parser.add_argument("--model", default=None, help="model version to show (default: the champion)")
    parser.set_defaults(func=_cli)
