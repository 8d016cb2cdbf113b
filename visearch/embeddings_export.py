"""``visearch embeddings export``: one model version's rows of ``gold.embeddings`` as a ``.npy``.

For benchmarks on real vectors (``visearch bench index --vectors``) and for offline analysis: the
embeddings are written in ``image_id`` order as float32 ``(n, dim)``, the ids beside them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def export_embeddings(spark: Any, settings: Any, out: str | Path, model_version: str | None = None) -> dict[str, Any]:
    """Write ``out`` (.npy, float32 (n, dim)) and ``<out>.ids.txt`` for ``model_version`` (default the champion).

    Raises:
        ValueError: when there is no champion and no version is given, when the version has no rows,
            or when the rows' dimensions differ.
    """
    from pyspark.sql import functions as F

    from visearch import tables as T
    from visearch.storage import open_store

    version = model_version or open_store(settings.artifacts, settings.s3).read_pointer("models/CHAMPION")
    if not version:
        raise ValueError("no model version given and models/CHAMPION is not set")
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


def _cmd_export(args: argparse.Namespace) -> int:
    from visearch.config import load_settings
    from visearch.spark import get_spark

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
    ex.add_argument("--model-version", default=None, help="model version (default: models/CHAMPION)")
    ex.set_defaults(func=_cmd_export)
