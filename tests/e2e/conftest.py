"""The CI-sized subset of the proof suite (proof/run --quick): real gunicorn/uvicorn servers under
``mit-network-audit run``, real load, real faults.  MNA_PROOF_FULL=1 makes the loads 60 s."""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from proof import harness  # noqa: E402


@pytest.fixture(scope="session")
def h():
    if not (shutil.which(str(harness.BIN / "gunicorn")) and shutil.which(str(harness.BIN / "uvicorn"))):
        pytest.skip("gunicorn/uvicorn not installed (scripts/setup --test)")
    return harness


@pytest.fixture(scope="session")
def pg(h):
    if not h.pg_available():
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    return "postgres"


@pytest.fixture
def work():
    path = tempfile.mkdtemp(prefix="mna_h3_e2e_")
    yield path
    shutil.rmtree(path, ignore_errors=True)
