"""A job runs both ways it is started, with only ``PYTHONPATH`` set (the job files have no sys.path
preamble): ``python -m jobs.<name>`` and ``python jobs/<name>.py`` (spark-submit's way).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The light jobs (a --help of train or embed imports torch: seconds each on a small machine).
JOBS = ("ingest_images", "ingest_interactions", "online_metrics", "quality_gate", "build_pairs")


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("how", ["module", "script"])
def test_job__runnable_as_module_and_script(job: str, how: str) -> None:
    target = ["-m", f"jobs.{job}"] if how == "module" else [f"jobs/{job}.py"]
    out = subprocess.run([sys.executable, *target, "--help"], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert "--ds" in out.stdout and "Try:" in out.stdout
