"""Ingest a day's upload manifests: bronze.images_raw, validated images into silver.images.

Bad lines and bad images go to silver.quarantine with their reason; deletes and privacy changes
update silver.images. The steps are on :mod:`visearch.ingest.images`.

Try: python -m jobs.ingest_images --ds 2026-01-01
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.ingest.images import run


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds`` and ``--config``."""
    return job_parser(
        "Ingest a day's upload manifests: bronze.images_raw, validate images, MERGE into silver.images, "
        "rejects to silver.quarantine. Try: --ds 2026-01-01"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.ingest_images`` or ``spark-submit``)."""
    return run_job("ingest_images", build_parser(),
                   lambda ctx: run(ctx.settings, ctx.args.ds, timer=ctx.timer), argv)


if __name__ == "__main__":
    sys.exit(main())
