"""``visearch search IMAGE``: query the published index from the terminal.

Prints a table (rank, image_id, score, uri) and the time of each stage; ``--html out.html``
also writes a self-contained page with the query (its crop box drawn) and the result
thumbnails, all inlined as base64 so the page can be mailed or opened anywhere.

Try: visearch search .visearch/landing/images/ds=2026-01-01/demo-000003.jpg --crop 0,0,64,64 --k 10
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import logging
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from visearch.serve.search import SearchResponse, parse_crop

log = logging.getLogger(__name__)

THUMB_PX = 160
QUERY_PX = 320


def format_table(response: SearchResponse) -> str:
    """The results as an aligned text table, then the build, model and stage timings."""
    header = f"{'rank':>4}  {'image_id':<28} {'score':>8}  uri"
    lines = [header, "-" * len(header)]
    for rank, r in enumerate(response.results, start=1):
        lines.append(f"{rank:>4}  {r.image_id:<28} {r.score:>8.4f}  {r.uri}")
    if not response.results:
        lines.append("(no results)")
    stages = ", ".join(f"{k} {v:.1f}ms" for k, v in response.timings.items())
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(response.dropped.items())) or "none"
    lines.append(f"build {response.build_id}, model {response.model_version}; {stages}; dropped: {dropped}")
    return "\n".join(lines)


def _data_uri(img: Image.Image, max_side: int) -> str:
    """A ``data:image/jpeg;base64,...`` URI of ``img`` shrunk to ``max_side`` pixels."""
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def query_preview(data: bytes, crop: tuple[int, int, int, int] | None) -> Image.Image:
    """The decoded query image (EXIF-oriented, RGB) with the crop box drawn in red.

    Raises:
        visearch.train.preprocess.ImageDecodeError: when the data is not an image.
    """
    from visearch.train.preprocess import decode_image

    img = decode_image(data)
    if crop is not None:
        x, y, w, h = crop
        draw = ImageDraw.Draw(img)
        width = max(1, round(max(img.size) / 150))
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=(230, 20, 20), width=width)
    return img


def render_html(response: SearchResponse, query: Image.Image, title: str, *, s3: Any = None) -> str:
    """A self-contained HTML page: the query, then one card per result with its thumbnail.

    A result whose file cannot be read or decoded gets a card without a picture (and a note).
    """
    from visearch.core.storage import read_uri
    from visearch.train.preprocess import decode_image

    cards = []
    for rank, r in enumerate(response.results, start=1):
        try:
            thumb = f'<img src="{_data_uri(decode_image(read_uri(r.uri, s3)), THUMB_PX)}" alt="">'
        except (OSError, ValueError) as exc:
            log.warning("no thumbnail for %s (%s): %s", r.image_id, r.uri, exc)
            thumb = f'<div class="missing">{html.escape(type(exc).__name__)}</div>'
        cards.append(
            f'<figure>{thumb}<figcaption><b>#{rank}</b> {html.escape(r.image_id)}<br>'
            f'score {r.score:.4f}<br><small>{html.escape(r.uri)}</small></figcaption></figure>'
        )
    timings = ", ".join(f"{html.escape(k)} {v:.1f} ms" for k, v in response.timings.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.query img {{ max-width: {QUERY_PX}px; border: 1px solid #ccc; }}
.results {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: {THUMB_PX}px; font-size: 12px; word-break: break-all; }}
figure img {{ width: {THUMB_PX}px; height: {THUMB_PX}px; object-fit: contain; background: #f4f4f4; }}
.missing {{ width: {THUMB_PX}px; height: {THUMB_PX}px; background: #eee; display: flex;
            align-items: center; justify-content: center; color: #888; }}
</style></head><body>
<h1>visearch: {html.escape(title)}</h1>
<div class="query"><img src="{_data_uri(query, QUERY_PX)}" alt="query"></div>
<p>build <code>{html.escape(response.build_id)}</code>,
model <code>{html.escape(response.model_version)}</code>; {timings}</p>
<div class="results">
{chr(10).join(cards)}
</div></body></html>
"""


def _cmd(args: argparse.Namespace) -> int:
    from visearch.core.config import load_settings
    from visearch.serve.search import Searcher

    settings = load_settings(getattr(args, "config", None))
    try:
        crop = parse_crop(args.crop) if args.crop else None
        data = Path(args.image).read_bytes()
        with Searcher.from_settings(settings, args.index) as searcher:
            response = searcher.search(data, crop, args.k)
    except (ValueError, FileNotFoundError) as exc:  # bad query, or nothing published yet
        print(f"visearch search: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(response))
    if args.html:
        page = render_html(response, query_preview(data, crop), f"{Path(args.image).name}"
                           + (f" crop {args.crop}" if crop else ""), s3=settings.s3)
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch search``."""
    parser = subparsers.add_parser(
        "search", help="search the published index with an image (optionally a crop)",
        description="Search the live index build (indexes/<name>/CURRENT under the artifacts root) "
                    "with an image file; print the ranked results.")
    parser.add_argument("image", help="query image file (JPEG, PNG, WebP, GIF, ...)")
    parser.add_argument("--crop", default=None, metavar="X,Y,W,H",
                        help="search with this box of the image only (pixels, e.g. 0,0,64,64)")
    parser.add_argument("--k", type=int, default=20, help="number of results (default 20)")
    parser.add_argument("--html", default=None, metavar="OUT.html",
                        help="also write an HTML page with the query and result thumbnails")
    parser.add_argument("--index", default=None, help="index name (default: settings index.name)")
    parser.set_defaults(func=_cmd)
