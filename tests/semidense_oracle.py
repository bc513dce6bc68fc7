"""Fixture: the python of the S2LD/IMAMatch reference venv (``shared/tools/semidense-oracle.sh``), or a skip."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture(scope="session")
def semidense_python(shared_dir) -> str:
    script = shared_dir / "tools" / "semidense-oracle.sh"
    args = ["bash", str(script)] + ([os.environ["SEMIDENSE_ORACLE"]] if os.environ.get("SEMIDENSE_ORACLE") else [])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot build the semi-dense reference venv: {exc}")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        pytest.skip(f"cannot build the semi-dense reference venv: {done.stderr[-500:]}")
    return lines[-1]
