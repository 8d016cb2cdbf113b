"""What every Spark job in ``jobs/`` shares: the common arguments, logging and the job report.

A job file stays a thin command::

    parser = job_parser("what it does; try: --ds 2026-01-01")
    parser.add_argument(...)
    def main(argv=None) -> int:
        return run_job("name", parser, lambda ctx: library_function(ctx.settings, ctx.args.ds, ...), argv)

:func:`run_job` parses (``allow_abbrev=False``, so ``--model`` is never taken for
``--model-version``), sets up logging, loads the settings, makes the one library call and prints
the result (counts and URIs, never data) as the last stdout line as JSON, which Airflow pushes to
XCom. :func:`check_ds` is the one ``YYYY-MM-DD`` check; the parser's ``--ds`` type wraps it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from visearch.core.config import Settings, load_settings
from visearch.core.timing import FIXED_COSTS, StageTimer

log = logging.getLogger(__name__)


def check_ds(ds: str) -> str:
    """Validate a ``YYYY-MM-DD`` logical date and return it.

    Raises:
        ValueError: for anything else (a ``datetime``, ``2026-1-1``, ``20260101``...).
    """
    try:
        dt.date.fromisoformat(ds)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}") from exc
    if len(ds) != 10:
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}")
    return ds


def parse_ds(value: str) -> str:
    """:func:`check_ds` as an argparse type.

    Raises:
        argparse.ArgumentTypeError: for anything but ``YYYY-MM-DD``.
    """
    try:
        return check_ds(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--ds must be YYYY-MM-DD, got {value!r}") from exc


def positive_int(value: str) -> int:
    """An argparse type for counts and periods: an integer >= 1.

    Raises:
        argparse.ArgumentTypeError: for anything else (``0``, ``-2``, ``1.5``, ``seven``).
    """
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from exc
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


class StrictArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that never accepts an abbreviated option (``--model`` for ``--model-version``).

    Subparsers made from it are of the same class (argparse's default ``parser_class``), so a
    whole command tree built from one root is strict.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def job_parser(description: str, *, needs_ds: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes (``--ds``, ``--config``)."""
    parser = StrictArgumentParser(description=description)
    if needs_ds:
        parser.add_argument("--ds", required=True, type=parse_ds,
                            help="logical date of the run, YYYY-MM-DD (Airflow passes {{ ds }})")
    parser.add_argument("--config", default=None,
                        help="YAML settings file (default: $VISEARCH_CONFIG, then environment variables)")
    return parser


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr with timestamps; quiet the chatty libraries."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "s3transfer", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class JobContext:
    """A running job: its name, settings and stage timer."""

    name: str
    settings: Settings
    timer: StageTimer
    args: argparse.Namespace
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, args: argparse.Namespace) -> JobContext:
        """Set up logging and load settings for a job invocation."""
        setup_logging()
        settings = load_settings(getattr(args, "config", None))
        log.info("job %s starting with %s", name, {k: v for k, v in vars(args).items()})
        return cls(name=name, settings=settings, timer=StageTimer(name), args=args)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Log the stage summary and print the result as the last stdout line (for XCom)."""
        result = {"job": self.name, **result, "stage_seconds": self.timer.seconds}
        if FIXED_COSTS.seconds:
            # JVM launch, Spark session and Delta log reads: what `visearch bench overhead` reports.
            result["overhead_seconds"] = FIXED_COSTS.report()
        log.info(self.timer.summary())
        text = json.dumps(result, sort_keys=True, default=str)
        ds = getattr(self.args, "ds", None)
        if ds:
            # The run record: what each job did for a day, read by `make run`'s summary and the report.
            from visearch.core.storage import open_store

            open_store(self.settings.artifacts, self.settings.s3).put_text(f"runs/{ds}/{self.name}.json", text)
        print(text, flush=True)
        return result


def run_job(
    name: str,
    parser: argparse.ArgumentParser,
    run: Callable[[JobContext], dict[str, Any]],
    argv: Sequence[str] | None = None,
) -> int:
    """The one entry point of every job: parse ``argv``, start, call ``run(ctx)``, finish.

    ``run`` is the job's one library call; its result dict is logged with the stage timings,
    recorded under ``runs/<ds>/<name>.json`` and printed as the last stdout line. Exceptions
    propagate (the process exits non-zero and Airflow retries or fails the task).
    """
    args = parser.parse_args(None if argv is None else list(argv))
    ctx = JobContext.start(name, args)
    ctx.finish(run(ctx))
    return 0
