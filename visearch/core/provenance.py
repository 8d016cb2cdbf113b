"""Where an artifact came from: the code version recorded in model configs and index manifests."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path


def git_sha() -> str:
    """The repository's HEAD commit (``$VISEARCH_GIT_SHA`` wins, e.g. in a built image), or ``"unknown"``."""
    if os.environ.get("VISEARCH_GIT_SHA"):
        return os.environ["VISEARCH_GIT_SHA"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else "unknown"
