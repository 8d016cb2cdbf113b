"""``visearch bench NAME``: benchmarks that print a table and write JSON.

Each benchmark module ``visearch/bench/<name>.py`` exposes ``add_arguments(parser)`` and
``run(args) -> dict``; ratios are always against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

from visearch.core.jobrun import StrictArgumentParser

log = logging.getLogger(__name__)

BENCHES: dict[str, str] = {
    "ingest": "image validation throughput, optimised vs full-decode baseline",
    "train": "training images per second (demo config, ResNet-50 at 224)",
    "embed": "batch-embedding throughput: model only, full pipeline, naive loop",
    "index": "index build/recall/latency vs autofaiss at equal memory",
    "search": "query latency per stage and batch throughput",
    "scale": "pipeline stage times and peak memory over growing demo corpora",
    "quality": "retrieval quality on real photographs (CIFAR-10) vs baselines",
    "overhead": "fixed cost of each nightly Spark job (JVM, session, Delta log, work), start-up cuts off vs on",
}
# What `bench all` runs (quality and scale are long; they have their own make targets).
ALL = ("ingest", "train", "embed", "index", "search")
# Options `bench all` adds to a benchmark's defaults (index: ours again at autofaiss's index size).
ALL_EXTRA: dict[str, tuple[str, ...]] = {"index": ("--match-memory",)}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                            "cpus": os.cpu_count(), "processor": platform.processor()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def write_result(out: str | Path, name: str, result: dict[str, Any], argv: list[str] | None = None) -> Path:
    """Write ``<out>/<name>.json`` with the machine and the command behind the numbers."""
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"bench": name, "machine": machine_info(), "command": argv, **result}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    log.info("wrote %s", path)
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Print rows as an aligned text table and return it."""
    if not rows:
        print("(no rows)")
        return ""
    columns = columns or list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(fmt(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    module = importlib.import_module(f"visearch.bench.{name}")
    start = time.perf_counter()
    result: dict[str, Any] = module.run(args)
    log.info("bench %s took %.1fs", name, time.perf_counter() - start)
    return result


def all_arguments(name: str, out: str, quick: bool) -> argparse.Namespace:
    """The arguments ``bench all`` runs benchmark ``name`` with: its defaults plus ``ALL_EXTRA``."""
    module = importlib.import_module(f"visearch.bench.{name}")
    parser = StrictArgumentParser()
    parser.add_argument("--out", default=out)
    module.add_arguments(parser)
    return parser.parse_args(["--out", out, *(["--quick"] if quick else []), *ALL_EXTRA.get(name, ())])


def _cmd(args: argparse.Namespace) -> int:
    if args.bench == "all":
        for name in ALL:
            sub_args = all_arguments(name, args.out, args.quick)
            print(f"\n== bench {name} ==", flush=True)
            _run_one(name, sub_args)
        return 0
    _run_one(args.bench, args)
    return 0


def _missing(name: str) -> int:
    raise SystemExit(f"benchmark {name!r} is not available in this checkout")


def add_cli(sub: Any) -> None:
    """Register ``visearch bench``."""
    parser = sub.add_parser("bench", help="run a benchmark", description=__doc__)
    bench_sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, text in {**BENCHES, "all": "the benchmarks of `make bench` with quick settings"}.items():
        p = bench_sub.add_parser(name, help=text)
        p.add_argument("--out", default="bench-results", help="folder for the JSON results")
        if name == "all":
            p.add_argument("--quick", action="store_true", help="smaller sizes (minutes, not hours)")
        else:
            # Bench modules keep heavy imports inside run(), so registering them all is cheap.
            try:
                module = importlib.import_module(f"visearch.bench.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"visearch.bench.{name}":
                    raise
                p.set_defaults(func=lambda _a, n=name: _missing(n))
                continue
            module.add_arguments(p)
        p.set_defaults(func=_cmd)
