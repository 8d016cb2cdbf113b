"""Build gold.training_pairs for a day from self-supervision, clicks and human labels.

Self pairs, position-debiased click pairs with hard negatives, and human labels; the sources are
described on :mod:`visearch.train.pair_table`.

Try: python -m jobs.build_pairs --ds 2026-01-02
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.train.pair_table import run


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds`` and ``--config``."""
    return job_parser("Build gold.training_pairs (self-supervised, click-based with position-bias "
                      "correction, human labels) for a day. Try: --ds 2026-01-02")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.build_pairs`` or ``spark-submit``)."""
    return run_job("build_pairs", build_parser(),
                   lambda ctx: run(ctx.settings, ctx.args.ds, timer=ctx.timer), argv)


if __name__ == "__main__":
    sys.exit(main())
