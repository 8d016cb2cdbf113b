"""Train a new embedding model version from a day's gold.training_pairs, through TorchDistributor.

A thin command over :func:`visearch.train.train_day.run` (the steps are on that module): on
cadence days, or when no model exists, train, register the version and drop the checkpoints;
a day that already has a version is a no-op.

Try: python -m jobs.train --ds 2026-01-02 --retrain-every 1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, positive_int, run_job
from visearch.train.train_day import run


def build_parser() -> argparse.ArgumentParser:
    """The job's arguments: ``--ds``, ``--config`` and ``--retrain-every``."""
    parser = job_parser(
        "Train a new embedding model version from gold.training_pairs through Spark's TorchDistributor "
        "(processes: train.num_processes; GPU: train.use_gpu). Try: --ds 2026-01-02 --retrain-every 7"
    )
    parser.add_argument(
        "--retrain-every",
        type=positive_int,
        default=1,
        metavar="N",
        help="train only when the date's ordinal is divisible by N, or when no model exists "
        "(default 1: every run)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.train`` or ``spark-submit jobs/train.py``)."""
    return run_job(
        "train",
        build_parser(),
        lambda ctx: run(ctx.settings, ctx.args.ds, timer=ctx.timer, retrain_every=ctx.args.retrain_every),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
