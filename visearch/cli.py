"""The ``visearch`` command.

Each subcommand lives in the module that owns its concept; that module exposes
``add_cli(subparsers)`` which registers the parser and sets ``func`` (taking the parsed
arguments and returning an exit code). Only the module of the command being run is imported,
so ``visearch --help`` stays fast and light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from visearch.core.jobrun import StrictArgumentParser, setup_logging

# command -> (module exposing add_cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("visearch.demo.corpus", "generate the procedural demo corpus (images, manifests, clicks, judgments)"),
    "land": ("visearch.ingest.landing", "turn a folder of images into a day's landing manifest"),
    "demo-run": ("visearch.demo.run", "generate demo data and run the nightly DAG through Airflow"),
    "bench": ("visearch.bench", "benchmarks: ingest, train, embed, index, search, quality, all"),
    "evaluate": ("visearch.evaluate.cli", "evaluate a model on your own judged image folder"),
    "report": ("visearch.evaluate.report", "write the HTML report (metrics, loss curve, CTR, sample queries)"),
    "search": ("visearch.serve.cli", "search the published index with an image (optionally a crop)"),
    "serve": ("visearch.serve.server", "serve the published index over HTTP"),
    "index": ("visearch.index.publish", "index operations: list builds, rollback"),
    "embeddings": ("visearch.embed.export", "export a model version's embeddings to .npy (for benchmarks)"),
    "plan": ("visearch.plan.capacity", "capacity plan for a corpus of N images from measured throughputs"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to register its options."""
    epilog = "commands:\n" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
    parser = StrictArgumentParser(
        prog="visearch",
        description="visearch: keep a visual-search index fresh (see README.md)",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="YAML settings file (default: $VISEARCH_CONFIG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in COMMANDS:
        module = importlib.import_module(COMMANDS[command][0])
        module.add_cli(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand word, skipping the value of a leading ``--config``."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--config":
            skip = True
            continue
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visearch`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    if command is not None and command not in COMMANDS:
        print(f"visearch: unknown command {command!r}; try `visearch --help`", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if command is None else 2
    if args.config:
        import os

        os.environ["VISEARCH_CONFIG"] = args.config
    setup_logging()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
