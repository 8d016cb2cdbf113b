"""``visearch embeddings export|embed-folder``: embeddings as a ``.npy`` for benchmarks and analysis.

``export``: one model version's rows of ``gold.embeddings``; ``embed-folder``: a folder of image files
through the job's embedding engine.

For benchmarks on real vectors (``visearch bench index --vectors``) and for offline analysis: the
embeddings are written in ``image_id`` order as float32 ``(n, dim)``, the ids beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def export_embeddings(spark: Any, settings: Any, out: str | Path, model_version: str | None = None) -> dict[str, Any]:
    """Write ``out`` (.npy, float32 (n, dim)) and ``<out>.ids.txt`` for ``model_version`` (default the champion).

    Raises:
        NoChampionError: (a ValueError) when no version is given and no champion is promoted.
        ValueError: when the version has no rows, or when the rows' dimensions differ.
    """
    from pyspark.sql import functions as F

    from visearch.core import tables as T
    from visearch.core.storage import open_store
    from visearch.train.registry import ModelRegistry

    # A named version is exported as named: its rows may outlive (or predate) the registry entry.
    version = model_version or ModelRegistry(open_store(settings.artifacts, settings.s3)).resolve(None)
    rows = (T.read(spark, settings, T.GOLD_EMBEDDINGS).where(F.col("model_version") == version)
            .select("image_id", "embedding").orderBy("image_id").collect())
    if not rows:
        raise ValueError(f"gold.embeddings has no rows for model version {version!r}")
    dims = {len(r["embedding"]) for r in rows}
    if len(dims) != 1:
        raise ValueError(f"model version {version!r} has embeddings of several dimensions: {sorted(dims)}")
    matrix = np.asarray([r["embedding"] for r in rows], dtype=np.float32)  # (n, dim)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix)
    ids_path = path.with_name(path.name + ".ids.txt")
    ids_path.write_text("".join(f"{r['image_id']}\n" for r in rows))
    log.info("exported %d x %d embeddings of %s to %s", matrix.shape[0], matrix.shape[1], version, path)
    return {"model_version": version, "rows": int(matrix.shape[0]), "dim": int(matrix.shape[1]),
            "path": str(path), "ids": str(ids_path)}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def embed_folder(settings: Any, images: str | Path, out: str | Path, *, model_version: str | None = None,
                 random_init: bool = False, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Embed every image under ``images`` (sorted paths) with the job's engine; write ``out`` + ids.

    With ``random_init`` the network is the settings' architecture with seeded random weights (the
    evaluation's random-weight baseline); otherwise ``model_version`` or the champion.

    Raises:
        ValueError: when the folder holds no image.
        NoChampionError: (a ValueError) when no model is given and no champion is promoted.
        FileNotFoundError: for a model version that does not exist.
    """
    import torch

    from visearch.core.storage import open_store
    from visearch.embed.embedder import BatchEmbedder, EmbedItem, optimize_for_cpu
    from visearch.evaluate.evaluation import random_init_embedder
    from visearch.train.registry import ModelRegistry, NoChampionError

    root = Path(images).resolve()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) under {images}")
    if random_init:
        m = settings.model
        config = {"backbone": m.backbone, "embed_dim": m.embed_dim, "image_size": m.image_size,
                  "small_stem": m.small_stem, "width": m.width}
        model = random_init_embedder(config, seed)
        label = f"random-init {m.backbone} w{m.width} {m.embed_dim}-d @ {m.image_size} px"
    else:
        registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
        try:
            version = registry.resolve(model_version)
        except NoChampionError as exc:
            raise NoChampionError(f"{exc} (or pass --model-version VERSION or --random-init)") from exc
        model = registry.load(version)
        label = version
    model.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if settings.embed.cpu_optimize and model.device.type == "cpu":
        model = dataclasses.replace(model, model=optimize_for_cpu(model.model, model.prep.size))
    with BatchEmbedder(model, batch_size=settings.embed.batch_size,
                       decode_workers=settings.embed.decode_workers) as engine:
        ids, matrix, failures = engine.embed_all(EmbedItem(str(p.relative_to(root)), p.as_uri()) for p in paths)
    if failures:
        log.warning("%d images failed to embed, e.g. %s", len(failures), failures[:3])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix.astype(np.float32))  # (n, dim)
    ids_path = path.with_name(path.name + ".ids.txt")
    ids_path.write_text("".join(f"{i}\n" for i in ids))
    return {"model": label, "rows": int(matrix.shape[0]), "dim": int(matrix.shape[1]), "failed": len(failures),
            "path": str(path), "ids": str(ids_path)}


def _cmd_embed_folder(args: argparse.Namespace) -> int:
    from visearch.core.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    result = embed_folder(settings, args.images, args.out, model_version=args.model_version,
                          random_init=args.random_init, limit=args.limit, seed=args.seed)
    print(f"{result['rows']} x {result['dim']} embeddings ({result['model']}, {result['failed']} failed) "
          f"-> {result['path']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from visearch.core.config import load_settings
    from visearch.core.spark import get_spark

    settings = load_settings(getattr(args, "config", None))
    spark = get_spark(settings, "visearch-embeddings-export")
    result = export_embeddings(spark, settings, args.out, args.model_version)
    print(f"{result['rows']} x {result['dim']} embeddings of {result['model_version']} -> {result['path']} "
          f"(ids: {result['ids']})")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch embeddings export``."""
    parser = subparsers.add_parser("embeddings", help="embedding table operations: export",
                                   description="Operate on gold.embeddings.")
    sub = parser.add_subparsers(dest="embeddings_command", metavar="ACTION", required=True)
    ex = sub.add_parser("export", help="write one model version's embeddings to a .npy (+ .ids.txt)")
    ex.add_argument("--out", required=True, help="the .npy file to write")
    ex.add_argument("--model-version", default=None, help="model version (default: the promoted version)")
    ex.set_defaults(func=_cmd_export)
    ef = sub.add_parser("embed-folder", help="embed a folder of image files to a .npy (+ .ids.txt)")
    ef.add_argument("--images", required=True, help="folder searched recursively for image files")
    ef.add_argument("--out", required=True, help="the .npy file to write")
    ef.add_argument("--model-version", default=None,
                    help="model version (default, and CHAMPION: the promoted version)")
    ef.add_argument("--random-init", action="store_true",
                    help="the settings' architecture with seeded random weights instead of a model version")
    ef.add_argument("--limit", type=int, default=None, help="embed only the first N files (sorted)")
    ef.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ef.set_defaults(func=_cmd_embed_folder)
