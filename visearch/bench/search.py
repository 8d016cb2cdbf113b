"""``visearch bench search``: query latency per stage and batch throughput of the Searcher.

Two indexes, both served through :class:`visearch.serve.search.Searcher` (manifest, checksums,
memory-mapped shards, metadata, parallel shard search, merge, re-rank):

- **demo**: the published index under ``--artifacts`` when given (a real ``visearch demo-run``
  result, with its trained model); otherwise a demo corpus generated here (``--images`` images,
  :func:`visearch.demo.corpus.generate_demo`), embedded by a random-init model of the default
  architecture (``settings.model``: latency does not depend on what the weights learned) and
  written as a published build in a temporary artifacts store by :func:`write_local_build`.
  Queries are corpus images (bytes, so the query itself is recognised and dropped), every other
  one with a crop box of its central 60 %. Stages: decode (decode + crop + resize + normalise),
  embed (TorchScript forward), search (all shards, merge), rerank (metadata lookup, vector
  reconstruction for the cosine rule, rules), total.
- **synthetic**: ``--vectors`` clustered unit vectors of dimension ``--dim`` in ``--shards``
  shards (``--factory``; ``auto`` = what :func:`visearch.index.faiss_index.choose_index` picks for that size
  and the default memory budget), with uri / sha256 / phash metadata. It has no model: queries
  enter as vectors through :meth:`Searcher.search_embeddings`, i.e. the same path minus decode
  and embed (add the demo's decode + embed figures for the end-to-end cost).

Single queries give p50 / p99 per stage; batches of ``--batch-sizes`` give queries per second.

``--quick`` (what ``bench all`` runs): 120 demo images, 1M synthetic vectors in an
``IVF1024,Flat`` index trained on 64k points (the ``auto`` choice at 1M, ``IVF8192_HNSW32,Flat``,
takes many minutes to train on two cores), 100 single queries.

Try: visearch bench search --quick --out bench-results
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visearch.core.storage import ObjectStore

log = logging.getLogger(__name__)

STAGES = ("decode", "embed", "search", "rerank", "total")
SYNTHETIC_MODEL = "synthetic-no-model"
QUICK_IMAGES, QUICK_QUERIES, QUICK_VECTORS = 120, 100, 1_000_000
QUICK_FACTORY, QUICK_TRAIN = "IVF1024,Flat", 65_536


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--artifacts", default=None,
                        help="bench the index published under this artifacts URI (default: build a demo one)")
    parser.add_argument("--index", default="main", help="index name under --artifacts (default main)")
    parser.add_argument("--images", type=int, default=400, help="demo images to generate (default 400)")
    parser.add_argument("--image-px", type=int, default=64, help="side of generated demo images (default 64)")
    parser.add_argument("--queries", type=int, default=200, help="single queries per index (default 200)")
    parser.add_argument("--k", type=int, default=20, help="results per query (default 20)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="batch sizes for throughput (default 1,8,32)")
    parser.add_argument("--vectors", type=int, default=1_000_000,
                        help="synthetic index size (default 1,000,000; 0 skips it)")
    parser.add_argument("--dim", type=int, default=128, help="synthetic vector dimension (default 128)")
    parser.add_argument("--shards", type=int, default=4, help="synthetic index shards (default 4)")
    parser.add_argument("--factory", default="auto",
                        help="Faiss factory of the synthetic index (default: choose_index's plan)")
    parser.add_argument("--train-size", type=int, default=0,
                        help="training points for the synthetic index (default: the plan's)")
    parser.add_argument("--threads", type=int, default=0, help="torch/faiss threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--quick", action="store_true",
                        help="120 demo images, 1M vectors in IVF1024,Flat, 100 queries (minutes)")


# ----------------------------------------------------------------------------- building indexes


def vector_hash(vectors: np.ndarray) -> np.ndarray:
    """A 63-bit hash of each row's bytes, (n,) int64 (the id map's ``vhash`` column)."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    return np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "big") >> 1
                     for r in rows], dtype=np.int64)


def write_local_build(
    store: ObjectStore,
    name: str,
    image_ids: Sequence[str],
    vectors: np.ndarray,
    *,
    model_version: str,
    ds: str = "2026-01-01",
    shards: int = 2,
    factory: str | None = None,
    train_size: int | None = None,
    metadata: dict[str, list[str | None]] | None = None,
    memory_budget_mb: int = 2048,
    publish: bool = True,
    seed: int = 0,
) -> str:
    """Build and (by default) publish an index in-process, in the layout ``build_index`` writes.

    For benchmarks and tests that need a published build without Spark: the same index choice,
    training, id assignment, sharding and id maps (with ``metadata`` columns, e.g. uri / sha256 /
    phash) as the job; ``nprobe`` is the plan's default and the recall is measured against exact
    search on 100 corpus vectors. Returns the build id.

    Raises:
        ValueError: for mismatched lengths, duplicate image ids or an empty corpus.
    """
    from visearch.index.faiss_index import (
        IndexPlan,
        ShardBuilder,
        choose_index,
        exact_search,
        ivf_info,
        new_index,
        recall_at_k,
        serialize,
        train_index,
    )
    from visearch.index.manifest import (
        TRAINED_FILE,
        IndexManifest,
        ShardEntry,
        build_prefix,
        git_sha,
        ids_key_for,
        open_build,
        shard_key,
        write_ids_table,
        write_manifest,
    )
    from visearch.index.publish import publish_build
    from visearch.index.shards import assign_ids, shards_of

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n == 0 or n != len(image_ids):
        raise ValueError(f"need as many image ids as vectors (> 0), got {len(image_ids)} and {n}")
    budget = memory_budget_mb * 1024 * 1024
    if factory is None:
        plan = choose_index(n, dim, budget)
    else:
        probe = IndexPlan(kind="custom", factory=factory, n=n, dim=dim, nlist=0, m=0, nbits=0, train_size=0,
                          default_nprobe=0, estimated_bytes=0, memory_budget_bytes=budget)
        nlist = ivf_info(new_index(probe)).nlist
        size = min(n, train_size or (64 * nlist if nlist else 0))
        plan = IndexPlan(kind="custom", factory=factory, n=n, dim=dim, nlist=nlist, m=0, nbits=0,
                         train_size=size, default_nprobe=min(nlist, 16), estimated_bytes=0,
                         memory_budget_bytes=budget)
    rng = np.random.default_rng(seed)
    content = hashlib.sha256(vectors.tobytes() + "\n".join(image_ids).encode() + plan.factory.encode())
    build_id = f"b-{ds}-{content.hexdigest()[:8]}"
    prefix = build_prefix(name, build_id)
    started = time.perf_counter()
    train_rows: Any = np.sort(rng.choice(n, size=plan.train_size, replace=False)) if plan.train_size else []
    trained = train_index(plan, vectors[train_rows] if plan.train_size else np.zeros((0, dim), np.float32))
    trained_bytes = serialize(trained)
    trained_sha = store.put_bytes(f"{prefix}/{TRAINED_FILE}", trained_bytes)
    train_s = time.perf_counter() - started

    id_of = assign_ids(list(image_ids))
    ids = np.array([id_of[i] for i in image_ids], dtype=np.int64)  # (n,)
    shard_no = shards_of(image_ids, shards)  # (n,)
    vhash = vector_hash(vectors)
    entries = []
    with tempfile.TemporaryDirectory(prefix="visearch-local-build-") as tmp:
        import faiss

        for number in range(shards):
            rows = np.flatnonzero(shard_no == number)
            rows = rows[np.argsort(ids[rows], kind="stable")]  # sorted by Faiss id, as the job adds them
            builder = ShardBuilder(trained_bytes, use_gpu=False)
            builder.add(vectors[rows], ids[rows])
            index = builder.finish()
            key = shard_key(name, build_id, number)
            path = Path(tmp) / f"shard-{number}.faiss"
            faiss.write_index(index, str(path))
            sha = store.put_file(key, path)
            ids_path = Path(tmp) / f"shard-{number}.ids.parquet"
            extra = {c: [values[r] for r in rows.tolist()] for c, values in (metadata or {}).items()}
            names = [image_ids[r] for r in rows.tolist()]
            write_ids_table(ids_path, ids[rows], names, vhash[rows], extra=extra)
            ids_sha = store.put_file(ids_key_for(key), ids_path)
            entries.append(ShardEntry(key=key, ids_key=ids_key_for(key), count=int(rows.size),
                                      bytes=path.stat().st_size, sha256=sha, ids_sha256=ids_sha,
                                      ids_bytes=ids_path.stat().st_size))
    draft = IndexManifest(
        build_id=build_id, index_name=name, build_kind="full", model_version=model_version, dim=dim,
        metric=plan.metric, factory=plan.factory, default_nprobe=plan.default_nprobe, default_ef_search=0,
        embeddings_table_version=-1, created_ds=ds, git_sha=git_sha(), shards=tuple(entries), vector_count=n,
        tombstone_count=0, validation_recall=0.0, validation_k=10, tune={}, plan=plan.to_dict(),
        trained_key=f"{prefix}/{TRAINED_FILE}", trained_sha256=trained_sha,
        input_fingerprint=content.hexdigest(),
        settings={"writer": "visearch.bench.search.write_local_build", "shards": shards},
        timings={"train": train_s, "total": time.perf_counter() - started},
    )
    queries = vectors[rng.choice(n, size=min(100, n), replace=False)]
    _, exact_rows = exact_search(vectors, queries, 10)  # (q, 10) rows into vectors
    exact = np.where(exact_rows >= 0, np.asarray(image_ids, dtype=object)[np.maximum(exact_rows, 0)], "")
    with open_build(store, draft, verify=True) as build:
        _, found = build.search(queries, 10)
        recall = recall_at_k(build.image_ids(found), exact, 10)
    manifest = draft.with_changes(validation_recall=recall)
    write_manifest(store, manifest)
    log.info("local build %s: %d vectors, %s, %d shards, recall@10 %.3f, %.1fs", build_id, n, plan.factory,
             shards, recall, time.perf_counter() - started)
    if publish:
        publish_build(store, name, build_id, ds=ds)
    return build_id


def clustered_vectors(n: int, dim: int, seed: int, clusters: int = 1000) -> np.ndarray:
    """(n, dim) unit vectors around ``clusters`` random centres (a stand-in for real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 262_144):
        end = min(n, start + 262_144)
        x = centres[rng.integers(0, clusters, end - start)]  # (b, dim)
        x = x + 0.6 * rng.standard_normal((end - start, dim)).astype(np.float32)
        out[start:end] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def image_metadata(datas: Sequence[bytes], uris: Sequence[str]) -> dict[str, list[str | None]]:
    """uri / sha256 / phash columns of image files, computed as ``ingest_images`` computes them.

    Raises:
        ValueError: when an image fails validation.
    """
    from visearch.core.config import IngestSettings
    from visearch.ingest.validation import ImageInfo, validate_image

    limits = IngestSettings()
    sha: list[str | None] = []
    phash: list[str | None] = []
    for data, uri in zip(datas, uris, strict=True):
        info = validate_image(data, max_pixels=limits.max_pixels, allowed_formats=limits.allowed_formats,
                              max_bytes=limits.max_bytes)
        if not isinstance(info, ImageInfo):
            raise ValueError(f"{uri}: {info.reason}: {info.detail}")
        sha.append(info.sha256)
        phash.append(info.phash)
    return {"uri": list(uris), "sha256": sha, "phash": phash}


def save_random_model(store: ObjectStore, *, ds: str = "2026-01-01", seed: int = 0, **arch: Any) -> str:
    """Save a random-init model of ``settings.model``'s architecture (overridden by ``arch``).

    Returns the version. For latency benchmarks and tests of the serving path.
    """
    import dataclasses

    import torch

    from visearch.core.config import ModelSettings
    from visearch.train.model import build_model
    from visearch.train.registry import ModelRegistry

    settings = dataclasses.replace(ModelSettings(), **arch)
    torch.manual_seed(seed)
    model = build_model(settings).eval()
    return ModelRegistry(store).save(model, config={"ds": ds, "steps": 0, "note": "random init"})


# ----------------------------------------------------------------------------- measuring


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean())}


def stage_rows(
    index: str, vectors: int, timings: list[dict[str, float]], stages: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per stage: p50 / p99 / mean over single queries."""
    return [{"index": index, "vectors": vectors, "stage": s,
             **_percentiles([t.get(s, 0.0) for t in timings])} for s in stages]


def throughput_rows(index: str, vectors: int, batch_sizes: Sequence[int], n_queries: int,
                    run_batch: Callable[[int, int], None]) -> list[dict[str, Any]]:
    """Queries per second for each batch size (``run_batch(start, size)`` answers one batch)."""
    rows = []
    for size in batch_sizes:
        run_batch(0, size)  # warm-up
        batches = max(1, n_queries // size)
        start = time.perf_counter()
        for b in range(batches):
            run_batch((b * size) % max(1, n_queries - size + 1), size)
        seconds = time.perf_counter() - start
        done = batches * size
        rows.append({"index": index, "vectors": vectors, "batch": size, "queries": done,
                     "qps": done / seconds, "ms_per_query": 1000.0 * seconds / done})
    return rows


def _demo_searcher(args: argparse.Namespace, work: Path, images: int) -> tuple[Any, list[bytes], list[Any]]:
    """The demo searcher and its query images (with crops): published, or generated here."""
    import json

    from visearch.core.config import SearchSettings, load_settings
    from visearch.core.storage import open_store, read_uri
    from visearch.demo.corpus import generate_demo
    from visearch.serve.search import Searcher
    from visearch.train.registry import ModelRegistry

    settings = load_settings()
    search_settings = SearchSettings(max_k=max(200, args.k))
    if args.artifacts:
        searcher = Searcher.from_published(args.artifacts, args.index, settings=search_settings,
                                           s3=settings.s3)
        # Query with the corpus's own files (their URIs are in the shards' metadata).
        uris = [u for meta in searcher.live.shards for u in meta.columns["uri"].to_pylist() if u]
        datas = [read_uri(u, settings.s3) for u in uris[: args.queries]]
    else:
        generate_demo(work / "landing", images=images, days=1, size=args.image_px, seed=args.seed,
                      bad_share=0.0, progress=False)
        truth = json.loads((work / "landing" / "demo_truth.json").read_text())
        kept = sorted((i, t) for i, t in truth["images"].items() if not t["private"] and not t["deleted"])
        image_ids = [i for i, _ in kept]
        uris = [t["uri"] for _, t in kept]
        datas = [read_uri(u) for u in uris]
        store = open_store("file://" + str((work / "artifacts").resolve()))
        version = save_random_model(store, seed=args.seed)
        model = ModelRegistry(store).load_exported(version)
        vectors = model.embed_images(datas)  # (n, D)
        write_local_build(store, args.index, image_ids, vectors, model_version=version, shards=2,
                          metadata=image_metadata(datas, uris), seed=args.seed)
        searcher = Searcher(store, args.index, settings=search_settings)
    crops: list[Any] = []
    for i, data in enumerate(datas):
        if i % 2:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
            crops.append((w // 5, h // 5, max(1, 3 * w // 5), max(1, 3 * h // 5)))
        else:
            crops.append(None)
    return searcher, datas, crops


Rows = list[dict[str, Any]]


def bench_demo(args: argparse.Namespace, work: Path, images: int, queries: int,
               batch_sizes: Sequence[int]) -> tuple[Rows, Rows, dict[str, Any]]:
    """Stage latencies and batch throughput on the demo index (with the model)."""
    searcher, datas, crops = _demo_searcher(args, work, images)
    with searcher:
        health = searcher.health()
        n = health["vectors"]
        name = f"demo ({health['factory']})"
        order = [i % len(datas) for i in range(queries)]
        searcher.search(datas[0], crops[0], args.k)  # warm-up (TorchScript's first calls optimise)
        timings = [searcher.search(datas[i], crops[i], args.k).timings for i in order]
        latency = stage_rows(name, n, timings, STAGES)

        def run_batch(start: int, size: int) -> None:
            idx = [order[(start + j) % len(order)] for j in range(size)]
            searcher.search_many([datas[i] for i in idx], [crops[i] for i in idx], args.k)

        throughput = throughput_rows(name, n, batch_sizes, queries, run_batch)
    return latency, throughput, health


def bench_synthetic(args: argparse.Namespace, work: Path, n: int, factory: str | None, train_size: int | None,
                    queries: int, batch_sizes: Sequence[int]) -> tuple[Rows, Rows, dict[str, Any]]:
    """Stage latencies (search, rerank, total) and throughput on a synthetic index (no model)."""
    from visearch.core.config import SearchSettings
    from visearch.core.storage import open_store
    from visearch.serve.search import Searcher

    started = time.perf_counter()
    vectors = clustered_vectors(n, args.dim, args.seed)
    ids = [f"syn-{i:08d}" for i in range(n)]
    rng = np.random.default_rng(args.seed + 1)
    metadata: dict[str, list[str | None]] = {
        "uri": [f"s3://bench-bucket/images/{i}.jpg" for i in ids],
        "sha256": [rng.bytes(32).hex() for _ in range(n)],
        "phash": [f"{int(x):016x}" for x in rng.integers(0, 2**63, size=n, dtype=np.int64)],
    }
    store = open_store("file://" + str((work / "synthetic").resolve()))
    build_id = write_local_build(store, "synthetic", ids, vectors, model_version=SYNTHETIC_MODEL,
                                 shards=args.shards, factory=factory, train_size=train_size,
                                 metadata=metadata, seed=args.seed)
    built_s = time.perf_counter() - started
    del metadata
    query_vectors = clustered_vectors(queries, args.dim, args.seed + 2)  # same centres, new points
    load_start = time.perf_counter()
    searcher = Searcher(store, "synthetic", settings=SearchSettings(max_k=max(200, args.k)), load_model=False)
    load_s = time.perf_counter() - load_start
    with searcher:
        health = {**searcher.health(), "build_s": built_s, "load_s": load_s, "build_id": build_id}
        name = f"synthetic ({health['factory']})"
        searcher.search_embeddings(query_vectors[:1], args.k)
        timings = [searcher.search_embeddings(query_vectors[i : i + 1], args.k)[0].timings  # (1, dim)
                   for i in range(queries)]
        latency = stage_rows(name, n, timings, ("search", "rerank", "total"))

        def run_batch(start: int, size: int) -> None:
            searcher.search_embeddings(query_vectors[start : start + size], args.k)  # (size, dim)

        throughput = throughput_rows(name, n, batch_sizes, queries, run_batch)
    return latency, throughput, health


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run both parts, print the tables and write ``<out>/search.json``.

    Raises:
        ValueError: for bad sizes or batch sizes.
    """
    from visearch.bench import print_table, write_result

    images: int = QUICK_IMAGES if args.quick else args.images
    queries: int = QUICK_QUERIES if args.quick else args.queries
    n: int = QUICK_VECTORS if args.quick else args.vectors
    factory: str | None = QUICK_FACTORY if args.quick else (None if args.factory == "auto" else args.factory)
    train_size: int | None = QUICK_TRAIN if args.quick else (args.train_size or None)
    batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
    if not batch_sizes or min(batch_sizes) < 1 or queries < 1 or n < 0:
        raise ValueError(f"need positive --batch-sizes and --queries, --vectors >= 0; got "
                         f"{args.batch_sizes!r}, {queries}, {n}")
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="visearch-bench-search-"))
    try:
        latency, throughput, demo = bench_demo(args, work, images, queries, batch_sizes)
        indexes = {"demo": demo}
        if n:
            lat, thr, syn = bench_synthetic(args, work, n, factory, train_size, queries, batch_sizes)
            latency += lat
            throughput += thr
            indexes["synthetic"] = syn
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nlatency per stage, single queries (ms)")
    print_table(latency, ["index", "vectors", "stage", "p50_ms", "p99_ms", "mean_ms"])
    print("\nthroughput, batches of queries")
    print_table(throughput, ["index", "vectors", "batch", "queries", "qps", "ms_per_query"])
    result = {"quick": bool(args.quick), "k": args.k, "queries": queries, "latency": latency,
              "throughput": throughput, "indexes": indexes,
              "notes": "synthetic index: no model (queries enter as vectors; add the demo's decode+embed)"}
    write_result(getattr(args, "out", None) or "bench-results", "search", result, argv=sys.argv)
    return result
