"""``visearch bench index``: our index choice + training + tuning vs autofaiss, at equal memory.

Both systems get the same clustered synthetic vectors (L2-normalised, inner product) and the
same memory budget, and both are timed end to end (choose, train, add, tune search parameters):

- ``visearch``: :func:`visearch.index.faiss_index.choose_index`, :func:`~visearch.index.faiss_index.train_index`,
  :class:`~visearch.index.faiss_index.ShardBuilder`, :func:`~visearch.index.faiss_index.tune_nprobe` (tuned on the first
  half of the queries to ``--target-recall`` within ``--latency-budget-ms``).
- ``autofaiss``: ``autofaiss.build_index(max_index_memory_usage=..., max_index_query_time_ms=...)``.
  autofaiss pins numpy < 2 and its own faiss-cpu, which clash with this project's environment, so
  it runs in a separate virtual environment through a subprocess (``.venv-bench``, made with
  ``uv venv .venv-bench && uv pip install --python .venv-bench/bin/python autofaiss==2.18.0
  'pyarrow<20' faiss-cpu==1.8.0.post1``: autofaiss 2.18 calls SWIG constructors with keyword
  arguments that faiss 1.15 no longer accepts). The index it writes is read back here with our
  faiss 1.15.1 (the file format is backward compatible), so recall and latency go through exactly
  the same harness.

Measured on the second half of the queries (held out from our tuning; new vectors, not in the
database): recall@10 against exact search, median and p99 single-query latency (one query per
call, parameters set with ``faiss.ParameterSpace`` for both), bytes per vector (serialised
index size / N) and build time.

``--match-memory`` then builds ours once more with the size of autofaiss's index as the budget
(when it came out smaller than ours), so the comparison also holds at equal memory in one run;
``--also-memory-mb`` adds rows of ours at other budgets.

Try: visearch bench index --n 100000 --out bench-results
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from visearch.core.jobrun import StrictArgumentParser

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"

AUTOFAISS_SCRIPT = r"""
import json, sys, time
import numpy as np
from autofaiss import build_index
vectors_path, index_path, infos_path, budget, latency_ms = sys.argv[1:6]
x = np.load(vectors_path)
start = time.perf_counter()
index, infos = build_index(
    embeddings=x, index_path=index_path, index_infos_path=infos_path,
    max_index_memory_usage=budget, current_memory_available="16G", metric_type="ip",
    max_index_query_time_ms=float(latency_ms), min_nearest_neighbors_to_retrieve=10,
    save_on_disk=True, verbose=30,
)
elapsed = time.perf_counter() - start
print("AUTOFAISS_RESULT " + json.dumps({"build_s": elapsed, "infos": infos}, default=str), flush=True)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=256, help="vector dimension (default 256)")
    parser.add_argument("--queries", type=int, default=1000,
                        help="held-out query vectors: half tune ours, half measure both")
    parser.add_argument("--rotation", choices=("auto", "always", "never"), default="auto",
                        help="OPQ rotation of PQ codes below 1M vectors (index.rotation; auto: when the "
                             "training sample is anisotropic)")
    parser.add_argument("--clusters", type=int, default=1000, help="clusters of the synthetic data")
    parser.add_argument("--spread", type=float, default=0.6, help="in-cluster noise relative to centre norm")
    parser.add_argument("--memory-mb", type=float, default=None,
                        help="index memory budget for both (default: 1/8 of the raw float32 vectors)")
    parser.add_argument("--target-recall", type=float, default=0.9, help="our tuning target (recall@10)")
    parser.add_argument("--latency-budget-ms", type=float, default=5.0,
                        help="per-query latency budget given to both tuners")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--bench-python", default=str(DEFAULT_BENCH_PYTHON),
                        help="python of the environment with autofaiss (default .venv-bench/bin/python)")
    parser.add_argument("--no-autofaiss", action="store_true", help="measure ours only")
    parser.add_argument("--match-memory", action="store_true",
                        help="after autofaiss, build ours again with its measured index size as the budget "
                             "(when that is smaller than ours), so the two also compare at equal memory "
                             "in the same run")
    parser.add_argument("--also-memory-mb", type=float, action="append", default=[],
                        help="build ours again at this budget too (repeatable; an extra row each)")
    parser.add_argument("--quick", action="store_true", help="100,000 vectors (used by `bench all`)")
    parser.add_argument("--vectors", default=None,
                        help="real embeddings instead of synthetic data: a .npy of shape (n, dim), float32, "
                             "e.g. written by `visearch embeddings export`; --n, --dim, --clusters and --spread "
                             "are then ignored and the last --queries rows are the held-out queries")


def synthetic(n: int, dim: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    """(n, dim) L2-normalised float32 vectors around ``clusters`` Gaussian centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for start in range(0, n, step):
        end = min(n, start + step)
        x = centres[rng.integers(0, clusters, end - start)]
        x = x + spread * rng.standard_normal((end - start, dim)).astype(np.float32)
        out[start:end] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def load_vectors(path: str | Path, queries: int, seed: int) -> np.ndarray:
    """Real embeddings from a ``.npy`` file, L2-normalised, rows shuffled with ``seed``.

    Raises:
        ValueError: when the array is not 2-D, has non-finite values, or has no more rows than ``queries``.
    """
    data = np.load(path, mmap_mode="r")
    if data.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array (n, dim), got shape {data.shape}")
    if data.shape[0] <= queries:
        raise ValueError(f"{path}: {data.shape[0]} rows, need more than --queries {queries}")
    out = np.array(data, dtype=np.float32)  # a writable copy of the memory-mapped file
    if not np.isfinite(out).all():
        raise ValueError(f"{path}: non-finite values in the embeddings")
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out[np.random.default_rng(seed).permutation(len(out))]


def measure(index: Any, queries: np.ndarray, exact: np.ndarray, params: str, k: int = 10) -> dict[str, float]:
    """Recall@k and single-query latency of ``index`` with a ParameterSpace string applied."""
    import faiss

    from visearch.index.faiss_index import recall_at_k

    if params:
        space: Any = faiss.ParameterSpace()
        space.set_index_parameters(index, params)
    _, found = index.search(queries, k)
    recall = recall_at_k(found, exact, k)
    index.search(queries[:1], k)  # warm-up
    times = []
    for i in range(queries.shape[0]):
        start = time.perf_counter()
        index.search(queries[i : i + 1], k)  # (1, d)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"recall@10": recall, "p50_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99))}


def run_ours(vectors: np.ndarray, tune_q: np.ndarray, tune_exact: np.ndarray, budget: int,
             args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Choose, train, add and tune our index; return it and what we chose."""
    from visearch.index.faiss_index import ShardBuilder, choose_index, train_index, tune_nprobe, wants_rotation

    start = time.perf_counter()
    plan = choose_index(vectors.shape[0], vectors.shape[1], budget, rotate=args.rotation == "always")
    rng = np.random.default_rng(args.seed + 1)
    sample = vectors[np.sort(rng.choice(vectors.shape[0], plan.train_size, replace=False))] \
        if plan.train_size else vectors[:0]
    if args.rotation == "auto" and plan.m and wants_rotation(sample):  # as visearch.index.build decides
        plan = choose_index(vectors.shape[0], vectors.shape[1], budget, rotate=True)
    t0 = time.perf_counter()
    trained = train_index(plan, sample)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    builder = ShardBuilder(trained)
    builder.add(vectors, np.arange(vectors.shape[0], dtype=np.int64))
    index = builder.finish()
    add_s = time.perf_counter() - t0
    tuned = tune_nprobe(index, tune_q, tune_exact, args.target_recall, args.latency_budget_ms,
                        latency_queries=min(100, len(tune_q)))
    elapsed = time.perf_counter() - start
    params = []
    if tuned.nprobe:
        params.append(f"nprobe={tuned.nprobe}")
    if tuned.ef_search:
        params.append(f"quantizer_efSearch={tuned.ef_search}")
    return index, {"factory": plan.factory, "build_s": elapsed, "params": ",".join(params),
                   "tune_reached": tuned.reached, "estimated_bytes": plan.estimated_bytes,
                   "train_s": round(train_s, 3), "add_s": round(add_s, 3), "nlist": plan.nlist,
                   "train_size": plan.train_size}


def run_autofaiss(
    vectors: np.ndarray, budget: int, args: argparse.Namespace, tmp: Path
) -> tuple[Any, dict[str, Any]]:
    """Build with autofaiss in its own environment; return the index read back and its choices.

    Raises:
        FileNotFoundError: when the autofaiss environment is missing (the message says how to make it).
        RuntimeError: when autofaiss fails.
    """
    import faiss

    python = Path(args.bench_python)
    if not python.is_file():
        raise FileNotFoundError(
            f"{python} not found: create it with `uv venv .venv-bench && uv pip install --python "
            f".venv-bench/bin/python autofaiss==2.18.0 'pyarrow<20' faiss-cpu==1.8.0.post1` "
            "(or pass --no-autofaiss)")
    vectors_path = tmp / "vectors.npy"
    np.save(vectors_path, vectors)
    index_path, infos_path = tmp / "autofaiss.index", tmp / "autofaiss_infos.json"
    budget_str = f"{budget // 1024}KB"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(python), "-c", AUTOFAISS_SCRIPT, str(vectors_path), str(index_path),
                           str(infos_path), budget_str, str(args.latency_budget_ms)],
                          capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("AUTOFAISS_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"autofaiss failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(lines[-1][len("AUTOFAISS_RESULT "):])
    infos = result["infos"] or {}
    index = faiss.read_index(str(index_path))
    return index, {"factory": infos.get("index_key", "?"), "build_s": result["build_s"],
                   "params": infos.get("index_param", ""), "tune_reached": None,
                   "estimated_bytes": infos.get("size in bytes")}


def planner_block(ours: dict[str, Any], dim: int, threads: int) -> dict[str, Any]:
    """The figures ``visearch plan`` reads from ``index.json`` (our row; CPU rates are per core)."""
    n = ours["n"]
    block: dict[str, Any] = {"train_device": "cpu", "threads": threads,
                             "add_vectors_per_sec_per_core": n / max(ours["add_s"], 1e-9) / threads,
                             "bytes_per_vector": ours["bytes/vector"], "recall_at_10": ours["recall@10"]}
    if ours.get("train_size") and ours.get("nlist"):
        products = ours["train_size"] * ours["nlist"] * dim  # the k-means work: points x centroids x dim
        block["train_dim_products_per_sec"] = products / max(ours["train_s"], 1e-9) / threads
    return block


def matched_budget(our_bytes: int, their_bytes: int) -> int | None:
    """The budget of ``--match-memory``'s rebuild: autofaiss's index size, or None when ours is not larger."""
    return their_bytes if their_bytes < our_bytes else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the comparison, print the table, write ``<out>/index.json``.

    Raises:
        ValueError: for ``--match-memory`` with ``--no-autofaiss``, or a non-positive ``--also-memory-mb``.
    """
    import faiss

    from visearch.bench import print_table, write_result
    from visearch.index.faiss_index import exact_search, index_bytes

    if args.match_memory and args.no_autofaiss:
        raise ValueError("--match-memory matches autofaiss's index size: drop --no-autofaiss")
    if any(not mb > 0 for mb in args.also_memory_mb):
        raise ValueError(f"--also-memory-mb must be positive, got {args.also_memory_mb}")
    nq = args.queries
    source = getattr(args, "vectors", None)
    if source:
        data = load_vectors(source, nq, args.seed)
        n, dim = data.shape[0] - nq, data.shape[1]
    else:
        n = 100_000 if args.quick else args.n
        dim = args.dim
        data = synthetic(n + nq, dim, args.clusters, args.spread, args.seed)
    budget = int(args.memory_mb * 1024 * 1024) if args.memory_mb else n * dim * 4 // 8
    log.info("bench index: n=%d dim=%d budget=%.1f MB, data %s", n, dim, budget / 2**20, source or "synthetic")
    vectors, queries = data[:n], data[n:]  # queries are held out of the database
    _, exact = exact_search(vectors, queries, 10)
    half = nq // 2
    tune_q, tune_exact, eval_q, eval_exact = queries[:half], exact[:half], queries[half:], exact[half:]

    def our_row(system: str, budget_bytes: int) -> dict[str, Any]:
        index, info = run_ours(vectors, tune_q, tune_exact, budget_bytes, args)
        row = {"system": system, **info, "n": n, "budget_bytes": budget_bytes, "index_bytes": index_bytes(index),
               **measure(index, eval_q, eval_exact, info["params"])}
        row["bytes/vector"] = row["index_bytes"] / n
        log.info("%s: %s", system, json.dumps(row, default=str))  # kept in the log if the run is stopped later
        return row

    rows: list[dict[str, Any]] = [our_row("visearch", budget)]
    notes = []
    if not args.no_autofaiss:
        with tempfile.TemporaryDirectory(prefix="visearch-bench-") as tmp:
            theirs, info = run_autofaiss(vectors, budget, args, Path(tmp))
            their_bytes = index_bytes(theirs)
            rows.append({"system": "autofaiss", **info, "budget_bytes": budget, "bytes/vector": their_bytes / n,
                         **measure(theirs, eval_q, eval_exact, info["params"])})
            del theirs
        notes.append("autofaiss 2.18.0 ran in .venv-bench (numpy 1.26, faiss-cpu 1.8.0.post1) via subprocess")
        if args.match_memory:
            if (matched := matched_budget(rows[0]["index_bytes"], their_bytes)) is not None:
                rows.append(our_row("visearch@autofaiss-size", matched))
                notes.append(f"visearch@autofaiss-size: ours rebuilt with autofaiss's index size "
                             f"({their_bytes} bytes) as the memory budget")
            else:
                notes.append("--match-memory: autofaiss's index is not smaller than ours; no rebuild")
    for mb in args.also_memory_mb:
        rows.append(our_row(f"visearch@{mb:g}MB", int(mb * 1024 * 1024)))
    columns = ["system", "factory", "params", "build_s", "bytes/vector", "recall@10", "p50_ms", "p99_ms"]
    what = f"real embeddings from {source}" if source else f"{args.clusters} clusters"
    print(f"\nindex bench: {n} x {dim} vectors, {what}, budget {budget / 2**20:.1f} MB, "
          f"{len(eval_q)} held-out queries, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    print_table(rows, columns)
    result = {"n": n, "dim": dim, "data": source or "synthetic", "memory_budget_bytes": budget, "queries": len(eval_q),
              "target_recall": args.target_recall, "latency_budget_ms": args.latency_budget_ms,
              "faiss_threads": faiss.omp_get_max_threads(), "rows": rows, "notes": notes}
    result["planner"] = planner_block(rows[0], dim, faiss.omp_get_max_threads())
    write_result(args.out, "index", result, sys.argv)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m visearch.bench.index``."""
    parser = StrictArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results", help="folder for index.json")
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
