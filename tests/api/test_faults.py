"""Fault injection against a real uvicorn: broken models and settings never serve; hostile requests cost little.

The server runs a small real model (the `quick_model_dir` fixture), as the Procfile runs it, with a one-second body
timeout so that the slow-client cases take seconds.
"""

import json
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest

from census_income.validation import EXAMPLE
from testkit import free_port

from ..test_model_faults import CASES, rehash
from .conftest import start_uvicorn, wait_ready

pytestmark = pytest.mark.integration  # real server processes: not in `make test-fast`
BODY_TIMEOUT = "1"


def one_line_exit(proc: subprocess.Popen) -> str:
    "The server's one line of refusal, after checking it exited with status 3 and printed no traceback."
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (proc.returncode, out + err)
    lines = [ln for ln in (out + err).splitlines() if "cannot serve" in ln]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    return lines[0]


@pytest.mark.parametrize("case", ["flipped bytes in the weights", "a last layer of width 0", "a NaN threshold",
                                  "the known record's probability changed"])
def test_a_broken_model_never_becomes_ready(quick_model_dir, tmp_path, case):
    breaks, rehashed, reason = CASES[case]
    d = shutil.copytree(quick_model_dir, tmp_path / "model")
    breaks(d)
    if rehashed:
        rehash(d)
    line = one_line_exit(start_uvicorn(d, free_port()))
    assert line.startswith("ERROR:    census-income cannot serve: model files in") and reason in line, line


@pytest.mark.parametrize(("var", "value"), [("CENSUS_MAX_BATCH", "abc"), ("CENSUS_THREADS", "0"),
                                            ("CENSUS_BODY_TIMEOUT", "-1")])
def test_a_bad_setting_is_one_line_naming_the_variable(quick_model_dir, var, value):
    line = one_line_exit(start_uvicorn(quick_model_dir, free_port(), **{var: value}))
    assert f"cannot serve: {var}={value!r} cannot be used:" in line, line


@pytest.fixture(scope="module")
def served(quick_model_dir):
    "A live server of the quick model: (base URL, port, the process)."
    port = free_port()
    proc = start_uvicorn(quick_model_dir, port, CENSUS_BODY_TIMEOUT=BODY_TIMEOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        yield base, port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_megabyte_of_zeros_gets_a_short_answer(served):
    "Bounded by what it does (one error, not 520,000); its time is measured in the closing note, not asserted here."
    base, _, _ = served
    body = b"[" + b",".join([b"0"] * 520_000) + b"]"
    r = httpx.post(f"{base}/predict/batch", content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 422 and len(r.content) < 5_000, (r.status_code, len(r.content))
    assert len(r.json()["detail"]) == 1
    assert r.json()["detail"][0]["msg"].startswith("the batch has more than 1000 records")


def test_many_bad_records_get_a_bounded_list_of_errors(served):
    base, _, _ = served
    r = httpx.post(f"{base}/predict/batch", json=[{"colour" + "x" * 1000: 1, "size": 1}] * 721, timeout=30)
    detail = r.json()["detail"]
    assert r.status_code == 422 and len(detail) == 21 and len(r.content) < 20_000, len(r.content)
    assert detail[-1]["type"] == "too_many_errors" and "in all" in detail[-1]["msg"]
    assert any("characters)" in d["msg"] for d in detail)  # the 1,006-character key is shortened


@pytest.mark.parametrize(("body", "msg"), [
    ({k: v for k, v in EXAMPLE.items() if k != "education-num"} | {"education-num": 13, "education_num": 13},
     "education-num: given twice (as 'education-num' and 'education_num'); send it once"),
    (json.dumps(EXAMPLE).replace(f'"age": {EXAMPLE["age"]}', f'"age": {EXAMPLE["age"]}, "age": 90'), "age: given twice in one record"),
])
def test_a_field_given_twice_is_a_clear_422(served, body, msg):
    base, _, _ = served
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(f"{base}/predict", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"].startswith(msg), r.text


@pytest.mark.parametrize("path", ["/", "/health", "/ready"])
def test_head_works_where_get_does(served, path):
    base, _, _ = served
    assert httpx.head(f"{base}{path}").status_code == httpx.get(f"{base}{path}").status_code == 200


def raw(port: int, data: bytes) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(data)
    return conn


def test_a_body_that_never_comes_is_dropped_after_the_timeout(served):
    base, port, _ = served
    conn = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
    started = time.perf_counter()
    answer = conn.recv(65536)
    waited = time.perf_counter() - started
    while chunk := conn.recv(65536):  # the rest of the answer, until the server closes (a timeout here fails the test)
        answer += chunk
    conn.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"CENSUS_BODY_TIMEOUT" in answer, answer
    # not before the setting's time (a slow machine only waits longer); the socket's 10 s timeout bounds it above
    assert waited > float(BODY_TIMEOUT) * 0.9
    assert httpx.get(f"{base}/health").status_code == 200


def test_a_client_that_hangs_up_mid_body_costs_one_log_line(quick_model_dir):
    port = free_port()
    proc = start_uvicorn(quick_model_dir, port)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        for _ in range(3):
            conn = raw(port, b"POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n[" + b"1," * 100)
            time.sleep(0.2)
            conn.close()
        time.sleep(0.5)
        assert httpx.post(f"http://127.0.0.1:{port}/predict", json=EXAMPLE).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    logged = [ln for ln in (out + err).splitlines() if "went away" in ln or "Traceback" in ln or "ClientDisconnect" in ln]
    assert len(logged) == 3 and all("went away" in ln for ln in logged), out + err  # one line per client


def test_shutdown_is_not_held_up_by_a_client_that_sends_nothing(quick_model_dir):
    port = free_port()
    proc = start_uvicorn(quick_model_dir, port, CENSUS_BODY_TIMEOUT="60")
    wait_ready(proc, f"http://127.0.0.1:{port}")
    conn = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    # the silent client would hold a server that waits for it until CENSUS_BODY_TIMEOUT (60 s): exiting within 30 s
    # means --timeout-graceful-shutdown (10 s) ended it, however loaded the machine
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("SIGTERM waited for the silent client past --timeout-graceful-shutdown") from None
    finally:
        conn.close()
    assert proc.returncode is not None
