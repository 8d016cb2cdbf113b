"""Acceptance on the demo corpus: the pipeline's jobs, default settings, nDCG@10 vs both baselines.

Usage: PYTHONPATH=. .venv/bin/python tests/bench/demo_acceptance.py ROOT [KEY=VALUE ...]
(KEY=VALUE are VISEARCH_* overrides, e.g. VISEARCH_TRAIN__STEPS=300)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

root = Path(sys.argv[1]).resolve()
overrides = dict(a.split("=", 1) for a in sys.argv[2:])
os.environ.update({"VISEARCH_LANDING": str(root / "landing"), "VISEARCH_LAKE": str(root / "lake"),
                   "VISEARCH_ARTIFACTS": str(root / "artifacts"), **overrides})

from visearch.core.config import load_settings  # noqa: E402
from visearch.core.jobrun import setup_logging  # noqa: E402
from visearch.core.spark import get_spark  # noqa: E402
from visearch.demo.corpus import generate_demo  # noqa: E402
from visearch.evaluate import evaluate_day, promote_day  # noqa: E402
from visearch.ingest import click_log, images  # noqa: E402
from visearch.train import pair_table, train_day  # noqa: E402

setup_logging()
settings = load_settings()
days = ["2026-01-01", "2026-01-02"]
if not (root / "landing" / "demo_truth.json").exists():
    generate_demo(root / "landing", images=300, days=2, size=64, seed=0, progress=False)
spark = get_spark(settings, "acceptance")
out: dict[str, object] = {"overrides": overrides, "train": {}, "evaluate": {}, "promote": {}}
for ds in days:
    if not (root / f"ingested-{ds}").exists():
        images.run(settings, ds, spark=spark)
        click_log.run(settings, ds, spark=spark)
        pair_table.run(settings, ds, spark=spark)
        (root / f"ingested-{ds}").touch()
for ds in days[-1:]:
    started = time.perf_counter()
    result = train_day.run(settings, ds, spark=spark)
    out["train"] = {k: result.get(k) for k in ("model_version", "steps", "final_loss", "images_per_sec", "pairs")}
    out["train_seconds"] = round(time.perf_counter() - started, 1)
    ev = evaluate_day.run(settings, ds, spark=spark)
    out["evaluate"] = {k: ev.get(k) for k in ("model_version", "queries", "judgments", "corpus", "ndcg@10",
                                              "beats_baselines")}
    out["promote"] = {k: v for k, v in promote_day.run(settings, ds, spark=spark).items()
                      if k in ("promoted", "reason")}
print("ACCEPTANCE " + json.dumps(out, sort_keys=True, default=str), flush=True)
