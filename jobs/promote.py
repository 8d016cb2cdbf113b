"""Decide whether the day's evaluated model version becomes the champion (``models/CHAMPION``).

The decision is recorded beside the version and the pointer flips last; the steps are in
:mod:`visearch.evaluate.promote_day`.

Try: python -m jobs.promote --ds 2026-01-02
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.evaluate.promote_day import run


def build_parser() -> argparse.ArgumentParser:
    """Options of ``jobs/promote.py`` (the DAG's arguments are tested against it)."""
    parser = job_parser(
        "Promote the day's evaluated model version to models/CHAMPION if its nDCG@10 is within "
        "settings.eval.promote_tolerance of the champion's (the first model must beat both baselines). "
        "Try: --ds 2026-01-02"
    )
    parser.add_argument("--model-version", "--model", dest="model_version", default=None, metavar="VERSION",
                        help="decide for this model version instead of the newest one trained for --ds")
    parser.add_argument("--force", action="store_true",
                        help="decide again even if a decision is recorded (e.g. after new judgments)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.promote`` or ``spark-submit jobs/promote.py``)."""
    return run_job("promote", build_parser(), lambda ctx: run(
        ctx.settings, ctx.args.ds, timer=ctx.timer, model_version=ctx.args.model_version,
        force=ctx.args.force), argv)


if __name__ == "__main__":
    sys.exit(main())
