"""GET /metrics (Prometheus) and the JSON request log, on a real uvicorn."""

import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from census_income.validation import EXAMPLE
from testkit import free_port

from .conftest import start_uvicorn, wait_ready


def samples(client) -> dict:
    "Every sample of GET /metrics, keyed by (name, sorted labels)."
    page = client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page.text) for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_requests_answers_and_rejections(client):
    before = samples(client)
    answers = [client.post("/predict", json=EXAMPLE).json()["prediction"] for _ in range(3)]
    batch = client.post("/predict/batch", json=[EXAMPLE, EXAMPLE | {"age": 70}]).json()["predictions"]
    assert client.post("/predict", json=EXAMPLE | {"age": 300}).status_code == 422
    explained = client.post("/explain", json=EXAMPLE).json()["prediction"]
    assert client.head("/health").status_code == 200
    after = samples(client)
    assert delta(before, after, "census_requests_total", route="/predict", method="POST", status="200") == 3
    assert delta(before, after, "census_requests_total", route="/predict", method="POST", status="422") == 1
    assert delta(before, after, "census_request_duration_seconds_count", route="/predict/batch") == 1
    assert delta(before, after, "census_predictions_total", endpoint="/predict", prediction=answers[0]) == 3
    for label in {b["prediction"] for b in batch}:
        assert delta(before, after, "census_predictions_total", endpoint="/predict/batch", prediction=label) == \
            sum(b["prediction"] == label for b in batch)
    assert delta(before, after, "census_rejected_inputs_total", field="age", reason="less_than_equal") == 1
    assert delta(before, after, "census_predictions_total", endpoint="/explain", prediction=explained) == 1
    assert delta(before, after, "census_requests_total", route="/health", method="HEAD", status="200") == 1
    version = client.get("/ready").json()["model_version"]
    assert after[("census_model_info", (("version", version),))] == 1


def test_hostile_paths_and_fields_do_not_grow_the_metrics(client):
    token = uuid.uuid4().hex
    for i in range(30):
        client.get(f"/{token}/{i}")
    client.post("/predict", json=EXAMPLE | {f"{token}{i}": 1 for i in range(30)})
    page = client.get("/metrics").text
    assert token not in page
    assert 'route="other"' in page and 'field="(unknown field)"' in page


@pytest.fixture(scope="module")
def server_with(model_dir):
    "Start a uvicorn with extra environment; stopped (and its stderr read) at the end."
    started = []

    def start(**env):
        port = free_port()
        proc = start_uvicorn(model_dir, port, **env)
        base = f"http://127.0.0.1:{port}"
        wait_ready(proc, base)
        started.append(proc)
        return proc, base

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def test_metrics_can_be_switched_off(server_with):
    _, base = server_with(CENSUS_METRICS="false")
    assert httpx.get(f"{base}/metrics").status_code == 404
    assert httpx.post(f"{base}/predict", json=EXAMPLE).status_code == 200


def test_request_log_is_one_json_line_per_request_without_the_record(server_with):
    proc, base = server_with(CENSUS_LOG_REQUESTS="true")
    httpx.post(f"{base}/predict", json=EXAMPLE)
    httpx.post(f"{base}/predict", json=EXAMPLE | {"race": "Martian"})
    httpx.get(f"{base}/health")
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(r["route"], r["status"]) for r in lines if r["route"] != "/ready"] == \
        [("/predict", 200), ("/predict", 422), ("/health", 200)]
    assert all(r["ms"] >= 0 and r["model_version"] for r in lines)
    for value in ("State-gov", "77516", "Martian", "Cuba"):
        assert value not in err
