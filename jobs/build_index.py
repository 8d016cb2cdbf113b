"""Build a sharded Faiss index of one model version's embeddings (Spark job; CURRENT untouched).

A full build trains the index once and lets Spark tasks fill and upload the shards; the nightly
default extends the live build with a delta shard and tombstones, or compacts it. The steps are
in :mod:`visearch.index.build`.

Try: python -m jobs.build_index --ds 2026-01-01 [--mode auto|full|incremental|compact]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.index.build import MODES, run
from visearch.train.registry import CHAMPION


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds``, ``--config``, ``--mode``, ``--model-version``."""
    parser = job_parser("Build the sharded Faiss index of the champion model's embeddings for a day. "
                        "Try: --ds 2026-01-01")
    parser.add_argument("--mode", choices=MODES, default="auto",
                        help="auto (default): incremental when the live build can be extended, else full")
    parser.add_argument("--model-version", default=None,
                        help=f"index this model version; {CHAMPION} or omitted: the promoted one")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return run_job("build_index", build_parser(), lambda ctx: run(
        ctx.settings, ctx.args.ds, timer=ctx.timer, mode=ctx.args.mode, model_version=ctx.args.model_version,
    ), argv)


if __name__ == "__main__":
    sys.exit(main())
