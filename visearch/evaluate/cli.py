"""``visearch evaluate``: a model version beside both baselines on the user's own judged image folder.

Runs both protocols of :mod:`visearch.evaluate.evaluation` without Spark or the DAG, and prints
the model (the champion by default), the random-weight network of the same architecture and the
colour histogram side by side. Ids in the judgments CSV are file names relative to the folder,
and every image of the folder is the search corpus.

Try: visearch evaluate --images my_photos --judgments my_judgments.csv --k 1,5,10
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from visearch.evaluate.evaluation import (
    COLOR_HISTOGRAM,
    MODEL,
    PROTOCOLS,
    RANDOM_INIT,
    Embedder,
    MetricRow,
    check_ks,
    check_protocols,
    evaluate_embedders,
    group_judgments,
    parse_judgments_csv,
    random_init_embedder,
)
from visearch.evaluate.metrics import metric_name

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


def load_image_folder(folder: str | Path) -> dict[str, bytes]:
    """Encoded bytes of every image file under ``folder`` (recursively), keyed by relative POSIX path.

    Raises:
        FileNotFoundError: when ``folder`` is not a directory.
        ValueError: when it holds no image file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    out = {p.relative_to(root).as_posix(): p.read_bytes()
           for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    if not out:
        raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return out


def format_table(
    rows: Sequence[MetricRow], embedders: Sequence[str], *, headers: Mapping[str, str] | None = None
) -> str:
    """A plain-text table per protocol: one line per ``metric@k``, one column per embedder."""
    headers = dict(headers or {})
    values = {(r.protocol, r.name, r.embedder): r.value for r in rows}
    names = sorted({(r.protocol, r.metric, r.k) for r in rows},
                   key=lambda t: (PROTOCOLS.index(t[0]), t[1], t[2]))
    columns = [headers.get(e, e) for e in embedders]
    width = max(12, *(len(c) for c in columns))
    lines: list[str] = []
    for protocol in [p for p in PROTOCOLS if any(n[0] == p for n in names)]:
        lines.append(f"protocol: {protocol}")
        lines.append(f"{'metric':<14}" + "".join(f"{c:>{width + 2}}" for c in columns))
        for _, metric, k in [n for n in names if n[0] == protocol]:
            name = metric_name(metric, k)
            cells = [values.get((protocol, name, e)) for e in embedders]
            lines.append(f"{name:<14}" + "".join(
                f"{'-' if v is None else f'{v:.4f}':>{width + 2}}" for v in cells))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        return check_ks(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--k must be positive integers like 1,5,10, got {text!r}") from exc


def _parse_protocols(text: str) -> tuple[str, ...]:
    try:
        return check_protocols(p.strip() for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def evaluate_folder(
    images_dir: str | Path,
    judgments_file: str | Path,
    *,
    model_version: str | None = None,
    ks: Iterable[int] | None = None,
    protocols: Iterable[str] = PROTOCOLS,
    judged_set: str | None = None,
    settings: Any = None,
) -> tuple[list[MetricRow], dict[str, Any]]:
    """Evaluate a model version and both baselines on a judged image folder (what the CLI runs).

    Ids in the judgments are file names relative to ``images_dir``; the corpus is every image in
    it. The model is ``model_version``, else the champion of ``settings.artifacts``.

    Returns:
        Metric rows and a description (``model_version``, counts, ``ks``).

    Raises:
        NoChampionError: (a ValueError) when no model is given and none is promoted.
        ValueError: when a judged id is not a file of the folder, the judgments are empty or
            invalid, or an image cannot be embedded.
        FileNotFoundError: for a missing folder, judgments file or model version.
    """
    from visearch.core.config import Settings, load_settings
    from visearch.core.storage import open_store
    from visearch.evaluate.baselines import ColorHistogramEmbedder
    from visearch.train.registry import ModelRegistry, NoChampionError

    cfg: Settings = settings if settings is not None else load_settings()
    ks = check_ks(ks if ks is not None else cfg.eval.ks)
    path = Path(judgments_file)
    if not path.is_file():
        raise FileNotFoundError(f"judgments file {path} does not exist")
    parsed = parse_judgments_csv(path.read_text(encoding="utf-8"), source=str(path))
    sets = sorted({j.set for j in parsed})
    if judged_set is None and len(sets) > 1:
        raise ValueError(f"{path} holds several sets {sets}: choose one with --set")
    judgments = group_judgments(parsed, judged_set)
    if not judgments:
        raise ValueError(f"{path} holds no judgments" + (f" of set {judged_set!r}" if judged_set else ""))
    images = load_image_folder(images_dir)
    named = {i for q, js in judgments.items() for i in (q, *js)}
    unknown = sorted(named - set(images))
    if unknown:
        raise ValueError(f"{len(unknown)} judged ids are not image files under {images_dir}: {unknown[:10]}")

    registry = ModelRegistry(open_store(cfg.artifacts, cfg.s3))
    try:
        version = registry.resolve(model_version)
    except NoChampionError as exc:
        raise NoChampionError(f"no model promoted under {cfg.artifacts}: pass --model VERSION "
                              f"(versions: {registry.versions()[:10]})") from exc
    model = registry.load(version)
    embedders: dict[str, Embedder] = {
        MODEL: model,
        RANDOM_INIT: random_init_embedder(model.config, cfg.train.seed),
        COLOR_HISTOGRAM: ColorHistogramEmbedder(),
    }
    rows, counts = evaluate_embedders(embedders, images, judgments, ks, protocols=protocols,
                                      batch_size=cfg.embed.batch_size)
    return rows, {"model_version": version, "ks": list(ks), **counts}


def _cli(args: argparse.Namespace) -> int:
    rows, info = evaluate_folder(args.images, args.judgments, model_version=args.model, ks=args.k,
                                 protocols=args.protocols, judged_set=args.set)
    if args.json:
        print(json.dumps({"info": info, "rows": [r.to_dict() for r in rows]}, sort_keys=True))
        return 0
    headers = {MODEL: f"model {info['model_version']}", RANDOM_INIT: "random weights",
               COLOR_HISTOGRAM: "colour histogram"}
    print(f"{info['queries']} queries, {info['judgments']} judgments, corpus of {info['corpus']} images "
          f"(dropped: {info['queries_empty']} queries without candidates, "
          f"{info['self_judged']} self-judgments)\n")
    sys.stdout.write(format_table(rows, (MODEL, RANDOM_INIT, COLOR_HISTOGRAM), headers=headers))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on your own judged image folder",
        description="Evaluate a model version against a random-weight network of the same architecture and a "
                    "colour histogram on your own judged images, without Spark or the DAG. The judgments CSV "
                    "has columns query,candidate,relevance (0-5, header optional); ids are file names "
                    "relative to --images, and every image there is the search corpus. "
                    "Try: visearch evaluate --images my_photos --judgments my_judgments.csv --k 1,5,10",
    )
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--judgments", required=True, help="CSV of query,candidate,relevance")
    parser.add_argument("--model", default=None, help="model version (default: the champion)")
    parser.add_argument("--k", type=_parse_ks, default=None,
                        help="cut-offs, e.g. 1,5,10,20 (default: settings.eval.ks)")
    parser.add_argument("--protocols", type=_parse_protocols, default=PROTOCOLS,
                        help="judged, corpus or both (default judged,corpus)")
    parser.add_argument("--set", default=None, help="judgment set to use when the CSV has a set column")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.set_defaults(func=_cli)
