"""Validate an index build against the lake and make it live by writing ``indexes/<name>/CURRENT``.

Every object and checksum, the live vectors against the eligible embeddings (both ways) and
recall@10 against exact search are checked first; any failure leaves ``CURRENT`` as it was. Old
builds beyond ``index.keep_builds`` are pruned afterwards. The steps are in
:func:`visearch.index.publish.run`.

Try: python -m jobs.publish_index --ds 2026-01-01 [--build-id b-2026-01-01-1a2b3c4d]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.index.publish import run


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds``, ``--config``, ``--build-id``."""
    parser = job_parser("Validate the day's index build and point indexes/<name>/CURRENT at it. "
                        "Try: --ds 2026-01-01")
    parser.add_argument("--build-id", default=None,
                        help="publish this build (default: the newest build created for --ds)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return run_job("publish_index", build_parser(), lambda ctx: run(
        ctx.settings, ctx.args.ds, timer=ctx.timer, build_id=ctx.args.build_id,
    ), argv)


if __name__ == "__main__":
    sys.exit(main())
