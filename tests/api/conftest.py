"""A real uvicorn serving the pipeline's model on 127.0.0.1, an httpx client for it, and records from the data."""

import csv
import subprocess
import time
import warnings
from pathlib import Path

import httpx
import pytest

from census_income.schema import CONTINUOUS
from testkit import ROOT, VENV_BIN, free_port, procfile_flags, tool_env

from ..conftest import exit_report


def start_uvicorn(model_dir: Path, port: int, **env: str) -> subprocess.Popen:
    "uvicorn census_income.api:app with the Procfile's flags, on 127.0.0.1:`port`, with its model in `model_dir`."
    full = tool_env(CENSUS_MODEL_DIR=str(model_dir), **env)
    cmd = [str(VENV_BIN / "uvicorn"), "census_income.api:app", "--host", "127.0.0.1", "--port", str(port),
           *procfile_flags(full)]
    return subprocess.Popen(cmd, cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen, base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(exit_report(proc, "uvicorn"))
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"uvicorn at {base} not ready after {timeout} s")


def read_records(path: Path) -> list[dict]:
    "Rows of a census CSV as API records (numbers as ints), label included under 'salary'."
    with open(path, newline="") as f:
        return [{k: int(v) if k in CONTINUOUS else v for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="session")
def labelled_test_records(artifacts) -> list[dict]:
    "The held-out test split of the pipeline run, label included."
    return read_records(artifacts / "data" / "test.csv")


@pytest.fixture(scope="session")
def test_records(labelled_test_records) -> list[dict]:
    "The held-out test split of the pipeline run, as records without the label."
    return [{k: v for k, v in r.items() if k != "salary"} for r in labelled_test_records]


@pytest.fixture(scope="session")
def server(model_dir):
    "Base URL of a live uvicorn serving the pipeline's model."
    port = free_port()
    proc = start_uvicorn(model_dir, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def starlette_test_client():
    "Starlette's TestClient class."
    # Starlette 1.10's TestClient prefers the httpx2 package and warns once, at import, when it falls back to
    # httpx (which this project installs). The fallback is deliberate here, so that one warning is silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from fastapi.testclient import TestClient
    return TestClient


@pytest.fixture
def test_client(model_dir, monkeypatch):
    "Starlette's TestClient with the lifespan run (the model loaded from CENSUS_MODEL_DIR), in process."
    from census_income.api import app

    monkeypatch.setenv("CENSUS_MODEL_DIR", str(model_dir))
    with starlette_test_client()(app) as tc:
        yield tc

