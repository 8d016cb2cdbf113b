"""Online metrics of a day from the click log: CTR, CTR by position, mean dwell time of clicks.

Replaces the day's partition of gold.online_metrics; the rows are described on
:mod:`visearch.evaluate.online_metrics`.

Try: python -m jobs.online_metrics --ds 2026-01-01
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.evaluate.online_metrics import run


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds`` and ``--config``."""
    return job_parser(
        "Compute a day's CTR, CTR by position and mean click dwell time from silver.interactions "
        "into gold.online_metrics (replaces that day). Try: --ds 2026-01-01"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.online_metrics`` or ``spark-submit``)."""
    return run_job("online_metrics", build_parser(),
                   lambda ctx: run(ctx.settings, ctx.args.ds, timer=ctx.timer), argv)


if __name__ == "__main__":
    sys.exit(main())
