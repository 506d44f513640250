"""Several uvicorn workers (`--workers ${WEB_CONCURRENCY:-1}`, as Heroku sets it): one scrape counts every worker's requests."""

import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from testkit import free_port

from .conftest import start_uvicorn, wait_ready

pytestmark = pytest.mark.integration


def metric(text: str, name: str, **labels: str) -> float:
    "The sum of a metric's samples whose labels include `labels`."
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m[1] or "") for k, v in labels.items()):
            total += float(m[2])
    return total


def test_n_requests_over_two_workers_are_n_in_one_scrape(quick_model_dir):
    from census_income.validation import EXAMPLE

    port = free_port()
    proc = start_uvicorn(quick_model_dir, port, WEB_CONCURRENCY="2")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, timeout=60)
        deadline = time.monotonic() + 60  # the second worker may start later than the first answers
        while metric(httpx.get(f"{base}/metrics", timeout=10).text, "census_workers") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(4)]  # the scrapes counted too
        n = 60
        for _ in range(n):  # a new connection each: the two workers take turns accepting them
            assert httpx.post(f"{base}/predict", json=EXAMPLE, timeout=10).status_code == 200
        time.sleep(2.5)  # each worker leaves its counts about every second
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(4)]  # whichever worker answers
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for folder in Path(tempfile.gettempdir()).glob(f"census-metrics-{proc.pid}-*"):  # the server's share
            shutil.rmtree(folder, ignore_errors=True)
    assert all(metric(text, "census_requests_total", route="/predict") == 0 for text in before)
    for text in scrapes:
        assert metric(text, "census_workers") == 2, text[-400:]
        assert metric(text, "census_requests_total", route="/predict", status="200") == n
        assert metric(text, "census_predictions_total", endpoint="/predict") == n
        assert metric(text, "census_request_duration_seconds_count", route="/predict") == n
