"""Fixtures of the fault tests: one tiny demo landing zone and a clean ingest of it.

The clean ingest (in this process, on the session's Spark) is what a run that was killed, or that
fought a failing S3 server, must end up equal to.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fault_checks import DEMO_DS, INGEST_TABLES, CleanIngest, roots, table_rows
from visearch.core.storage import open_store


@pytest.fixture(scope="session")
def clean_ingest(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> CleanIngest:
    """40 demo images at 32 px (plus the demo's bad records), ingested once without faults."""
    from visearch.demo.corpus import generate_demo
    from visearch.ingest import images as ingest_images

    root = tmp_path_factory.mktemp("fault-demo")
    generate_demo(root / "landing", images=40, days=1, seed=5, size=32, progress=False)
    settings = roots(root / "clean", root / "landing")
    result = ingest_images.run(settings, DEMO_DS, spark=spark)
    lake = open_store(settings.lake)
    rows = {t.name: table_rows(lake, t) for t in INGEST_TABLES}
    assert all(rows.values()), "the clean ingest must fill every table (bad records included)"
    return CleanIngest(root / "landing", settings, rows, result)
