"""Running the job as a user does, in a subprocess, and reading what it left."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_SECS = 240


def run_job(
    *args: str, env: dict | None = None, timeout: float = JOB_TIMEOUT_SECS
) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` from the project root, without AMPLITUDE_API_KEY."""
    environ = {k: v for k, v in os.environ.items() if k != "AMPLITUDE_API_KEY"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_dead_letters(prefix: Path) -> list[dict]:
    """The records of every dead-letter file written under ``prefix``."""
    records = []
    for path in sorted(prefix.parent.glob(prefix.name + "*")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line]
    return records
