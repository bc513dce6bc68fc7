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
    # one thread by default: on a shared machine a second OpenMP thread spin-waits and makes small convs
    # ~25x slower (measured: 7.7 s vs 0.3 s for one small RoMa forward); DENSEMATCH_TEST_THREADS=N for more
    torch.set_num_threads(int(os.environ.get("DENSEMATCH_TEST_THREADS", "1")))
    yield


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Tests that use a reference implementation (a fixture named ``*oracle*``) get the ``oracle`` marker,
    so the default run (``-m 'not slow and not oracle'``) never builds a reference venv; GPU tests skip
    without CUDA."""
    for item in items:
        if any("oracle" in name for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.oracle)
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def oracle_python(shared_dir) -> str:
    """Python of a venv with upstream romatch 0.1.2: ``$ROMATCH_ORACLE`` (e.g. /work/oracles/romatch) or
    ``$TMPDIR/romatch-oracle``, built once by shared/tools/romatch-oracle.sh. Skips, saying why, when it
    cannot be built (no network, no pip)."""
    return _oracle_venv_python(shared_dir, "romatch-oracle.sh", "ROMATCH_ORACLE", "romatch")


def _oracle_venv_python(shared_dir: Path, script: str, env_var: str, what: str) -> str:
    """Build (once) a reference venv with ``shared/tools/<script>`` (into ``$<env_var>`` when set), or skip."""
    return build_oracle(shared_dir / "tools" / script, what, os.environ.get(env_var))


@pytest.fixture(scope="session")
def semidense_python(shared_dir) -> str:
    """Python of the S2LD / IMAMatch reference venv (shared/tools/semidense-oracle.sh)."""
    return _oracle_venv_python(shared_dir, "semidense-oracle.sh", "SEMIDENSE_ORACLE", "semi-dense")


def build_oracle(script: Path, what: str, venv: str | None = None) -> str:
    """Run an oracle build script (``script [VENV]``, prints the venv's python last); skip the test, naming
    the command and the end of its error output, if it fails."""
    import subprocess

    if not script.is_file():
        pytest.skip(f"{what} oracle: build script {script} not found")
    args = ["bash", str(script)] + ([venv] if venv else [])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{what} oracle: cannot build the reference venv ({' '.join(args)}): {exc}")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr.split()[-60:])
        pytest.skip(f"{what} oracle: cannot build the reference venv ({' '.join(args)}): {tail}")
    return lines[-1]


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
