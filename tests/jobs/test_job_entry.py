"""A job runs both ways it is started, with only ``PYTHONPATH`` set (the job files have no sys.path
preamble): ``python -m jobs.<name>`` and ``python jobs/<name>.py`` (spark-submit's way).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__")
# The light jobs run both ways; the others (their --help imports torch or faiss: seconds each on a
# small machine) the way spark-submit starts them, as a script, where a sys.path preamble mattered.
LIGHT = ("ingest_images", "ingest_interactions", "online_metrics", "quality_gate", "build_pairs")
CASES = [(job, how) for job in JOBS for how in ("module", "script") if how == "script" or job in LIGHT]


def test_jobs__every_job_file_is_covered() -> None:
    assert len(JOBS) == 11 and set(LIGHT) < set(JOBS)


@pytest.mark.parametrize(("job", "how"), CASES)
def test_job__runnable_as_module_and_script(job: str, how: str) -> None:
    target = ["-m", f"jobs.{job}"] if how == "module" else [f"jobs/{job}.py"]
    out = subprocess.run([sys.executable, *target, "--help"], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert "--ds" in out.stdout and "Try:" in out.stdout
