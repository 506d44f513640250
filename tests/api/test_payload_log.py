"""The payload log (CENSUS_PAYLOAD_LOG) on a real uvicorn: what a line holds, for every scoring route; a full queue
drops and counts, never slows or fails an answer; a log that cannot be opened stops the start in one line; a write
that fails later is counted; the files rotate and stay bounded."""

import contextlib
import json
import os
import resource
import subprocess
import time

import httpx
import pytest

from census_income.schema import CATEGORICAL, FEATURES
from census_income.validation import EXAMPLE
from testkit import ROOT, VENV_BIN, free_port, procfile_flags, tool_env

from .conftest import start_uvicorn, wait_ready
from .test_monitoring import samples

pytestmark = pytest.mark.integration  # real server processes: not in `make test-fast`


def v2_body(records: list[dict]) -> dict:
    "Records as an Open Inference Protocol request in JSON (one tensor per attribute)."
    return {"inputs": [{"name": c, "shape": [len(records)], "datatype": "BYTES" if c in CATEGORICAL else "INT64",
                        "data": [r[c] for r in records]} for c in FEATURES]}


def logged(base: str, n: int, outcome: str = "written", timeout: float = 10) -> dict:
    "The /metrics samples once the log's count of `outcome` reaches n (the thread writes after the answers)."
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base) as c:
        while True:
            s = samples(c)
            if s.get(("census_payload_records_total", (("outcome", outcome),)), 0) >= n or time.monotonic() > deadline:
                return s
            time.sleep(0.05)


@pytest.fixture
def server_with(model_dir):
    """uvicorn with extra environment, stopped at the end: (process, base URL). As test_monitoring's (module-scoped)
    one: its home would be tests/api/conftest.py."""
    started = []

    def start(**env):
        port = free_port()
        proc = start_uvicorn(model_dir, port, **env)
        wait_ready(proc, f"http://127.0.0.1:{port}")
        started.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


def test_every_scoring_route_logs_one_line_per_record_with_its_answer(server_with, tmp_path, test_records):
    log = tmp_path / "payload.jsonl"
    _, base = server_with(CENSUS_PAYLOAD_LOG=str(log))
    records = test_records[:5]
    one = httpx.post(f"{base}/predict", json=records[0], headers={"X-Request-ID": "req-one"}).json()
    many = httpx.post(f"{base}/predict/batch", json=records[1:4], headers={"X-Request-ID": "req-batch"}).json()
    v2 = httpx.post(f"{base}/v2/models/census-income/infer", json=v2_body(records[3:5]) | {"id": "req-v2"}).json()
    s = logged(base, 6)
    assert s[("census_payload_records_total", (("outcome", "written"),))] == 6
    assert s[("census_payload_records_total", (("outcome", "dropped"),))] == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["request_id"], x["route"], x["index"]) for x in lines] == [
        ("req-one", "/predict", 0), ("req-batch", "/predict/batch", 0), ("req-batch", "/predict/batch", 1),
        ("req-batch", "/predict/batch", 2), ("req-v2", "/v2/models/census-income/infer", 0),
        ("req-v2", "/v2/models/census-income/infer", 1)]
    assert [x["record"] for x in lines] == [records[0], *records[1:4], *records[3:5]]
    assert "education-num" in lines[0]["record"]  # the census spelling
    probabilities = [one["probability"], *(a["probability"] for a in many["predictions"]), *v2["outputs"][0]["data"]]
    labels = [one["prediction"], *(a["prediction"] for a in many["predictions"]), *v2["outputs"][1]["data"]]
    assert [x["probability"] for x in lines] == probabilities
    assert [x["prediction"] for x in lines] == labels
    assert {x["model_version"] for x in lines} == {one["model_version"]}
    assert all(x["time"].endswith("Z") and "shadow_probability" not in x for x in lines)
    assert oct(log.stat().st_mode & 0o777) == "0o600"  # personal data: readable by the server's user only


def test_no_log_unless_asked(server_with, tmp_path):
    _, base = server_with()
    assert httpx.post(f"{base}/predict", json=EXAMPLE).status_code == 200
    page = httpx.get(f"{base}/metrics").text
    assert "census_payload_records_total" not in page and "census_shadow" not in page


def test_a_full_queue_drops_and_counts_and_every_answer_is_unchanged(server_with, tmp_path):
    # the log is a pipe nobody reads: once its 64 KiB buffer is full the thread blocks in write, the queue of one
    # request fills, and every later record is dropped; the answers neither wait nor change
    fifo = tmp_path / "payload.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader exists, so the server's open does not wait
    try:
        _, base = server_with(CENSUS_PAYLOAD_LOG=str(fifo), CENSUS_PAYLOAD_QUEUE="1")
        _, plain = server_with()
        with httpx.Client(base_url=base) as c, httpx.Client(base_url=plain) as p:
            want = p.post("/predict", json=EXAMPLE).content
            started = time.perf_counter()
            got = [c.post("/predict", json=EXAMPLE).content for _ in range(600)]
            seconds = time.perf_counter() - started
            s = samples(c)
        assert set(got) == {want}
        dropped = s[("census_payload_records_total", (("outcome", "dropped"),))]
        assert dropped >= 300, dropped  # 64 KiB hold about 160 lines
        assert seconds < 60
        drained, deadline = b"", time.monotonic() + 20  # now read the pipe: the blocked writes go through
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                drained += os.read(reader, 1 << 16)
            s = samples(httpx.Client(base_url=base))
            written = s[("census_payload_records_total", (("outcome", "written"),))]
            if written + dropped == 600 and drained.count(b"\n") == written:
                break
            time.sleep(0.05)
        assert (written + dropped, drained.count(b"\n")) == (600, written), (written, dropped)
    finally:
        os.close(reader)


def test_a_log_that_cannot_be_opened_stops_the_start_in_one_line(model_dir, tmp_path):
    missing = tmp_path / "no-such-folder" / "payload.jsonl"
    proc = start_uvicorn(model_dir, free_port(), CENSUS_PAYLOAD_LOG=str(missing))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in (out + err).splitlines() if "cannot serve" in ln]
    assert lines == [f"ERROR:    census-income cannot serve: CENSUS_PAYLOAD_LOG={str(missing)!r} cannot be written: "
                     "No such file or directory"], out + err
    assert "Traceback" not in out + err


def test_a_write_that_fails_later_is_counted_never_a_failed_request(model_dir, tmp_path):
    # a real limit of the server process on file sizes (RLIMIT_FSIZE; Python ignores SIGXFSZ): writes past 8 KiB fail
    log, port = tmp_path / "payload.jsonl", free_port()
    env = tool_env(CENSUS_MODEL_DIR=str(model_dir), CENSUS_PAYLOAD_LOG=str(log))
    proc = subprocess.Popen([str(VENV_BIN / "uvicorn"), "census_income.api:app", "--host", "127.0.0.1", "--port", str(port),
                             *procfile_flags(env)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192)))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        with httpx.Client(base_url=base) as c:
            statuses = []
            for _ in range(60):
                statuses.append(c.post("/predict", json=EXAMPLE).status_code)
                time.sleep(0.005)  # one line a write: the limit is met by a write, not by a whole group
        s = logged(base, 1, "failed")
        assert statuses == [200] * 60
        failed = s[("census_payload_records_total", (("outcome", "failed"),))]
        written = s[("census_payload_records_total", (("outcome", "written"),))]
        assert failed > 0 and written + failed == 60, (written, failed)
        assert log.stat().st_size <= 8192
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert f"payload log {log}:" in err and "File too large" in err


def test_the_files_rotate_and_stay_bounded(server_with, tmp_path, test_records):
    log = tmp_path / "payload.jsonl"
    _, base = server_with(CENSUS_PAYLOAD_LOG=str(log), CENSUS_PAYLOAD_LOG_MAX_BYTES="4096", CENSUS_PAYLOAD_LOG_FILES="3")
    with httpx.Client(base_url=base) as c:
        for k, record in enumerate(test_records[:120]):
            assert c.post("/predict", json=record, headers={"X-Request-ID": f"r{k}"}).status_code == 200
    logged(base, 120)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".payload.jsonl.lock", "payload.jsonl", "payload.jsonl.1", "payload.jsonl.2"]
    kept = [json.loads(x)["request_id"] for f in ("payload.jsonl.2", "payload.jsonl.1", "payload.jsonl")
            for x in (tmp_path / f).read_text().splitlines()]
    assert kept == [f"r{k}" for k in range(120 - len(kept), 120)] and len(kept) < 60  # the newest, in order, bounded
    assert all((tmp_path / f).stat().st_size <= 4096 for f in names[1:])  # no request of one record passes the limit
