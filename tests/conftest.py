"""Shared fixtures: the ../shared data folder (tests skip cleanly without it) and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir) -> Path:
    return shared_dir / "data"


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def build_oracle(script: Path, what: str, venv: str | None = None) -> str:
    """Run an oracle build script (``script [VENV]``, prints the venv's python last); skip the test if it fails."""
    import subprocess

    args = ["bash", str(script)] + ([venv] if venv else [])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot build the {what} reference venv: {exc}")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        pytest.skip(f"cannot build the {what} reference venv: {done.stderr[-500:]}")
    return lines[-1]


@pytest.fixture(scope="session")
def oracle_python(shared_dir) -> str:
    """Python of a venv with upstream romatch 0.1.2 (built once by shared/tools/romatch-oracle.sh)."""
    return build_oracle(shared_dir / "tools" / "romatch-oracle.sh", "romatch", os.environ.get("ROMATCH_ORACLE"))


def run_oracle(python: str, script: str, spec: dict, tmp_path: Path) -> dict:
    """Save ``spec``, run ``tests/oracle/<script>`` under the reference python, return its output."""
    import subprocess

    spec_path, out_path = tmp_path / "oracle_spec.pt", tmp_path / "oracle_out.pt"
    torch.save(spec, spec_path)
    done = subprocess.run([python, str(REPO / "tests" / "oracle" / script), str(spec_path), str(out_path)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{done.stderr[-3000:]}")
    return torch.load(out_path, weights_only=True)


def fraction_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> float:
    """Fraction of entries of ``a`` and ``b`` that agree within ``atol``."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return ((a.double() - b.double()).abs() <= atol).double().mean().item()
