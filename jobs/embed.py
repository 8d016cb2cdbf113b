"""Embed the ok images of ``silver.images`` with a model version (default the champion) into ``gold.embeddings``.

New and replaced images only, unless ``--full``; the steps are in :mod:`visearch.embed.embed_day`.

Try: python -m jobs.embed --ds 2026-01-01 [--model-version v-2026-01-01-1a2b3c4d] [--full]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.embed.embed_day import run


def build_parser() -> argparse.ArgumentParser:
    """Options of ``jobs/embed.py`` (the DAG's arguments are tested against it)."""
    parser = job_parser(
        "Embed silver.images (status ok) with a model version into gold.embeddings: new and replaced "
        "images only, unless --full. Try: --ds 2026-01-01, or --ds 2026-01-01 --model-version v-... --full"
    )
    parser.add_argument("--model-version", "--model", dest="model_version", default=None,
                        metavar="VERSION|CHAMPION",
                        help="model version to embed with (default, and CHAMPION: the promoted version)")
    parser.add_argument("--full", action="store_true",
                        help="re-embed every ok image and replace the version's partition")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.embed`` or ``spark-submit jobs/embed.py``)."""
    return run_job("embed", build_parser(), lambda ctx: run(
        ctx.settings, ctx.args.ds, timer=ctx.timer, model_version=ctx.args.model_version,
        full=ctx.args.full), argv)


if __name__ == "__main__":
    sys.exit(main())
