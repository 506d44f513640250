"""The Open Inference Protocol (KServe's V2) against a real uvicorn, driven by a third-party client: Triton's
`tritonclient[http]`, in its default binary form and in JSON. Its answers are held to `/predict`'s, bit for bit."""

import gzip
import json
import re
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from census_income.schema import CATEGORICAL, FEATURES
from census_income.validation import EXAMPLE
from testkit import free_port

from .conftest import start_uvicorn, wait_ready

MODEL = "census-income"


@pytest.fixture(scope="module")
def triton_client(server):
    client = triton.InferenceServerClient(server.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def triton_inputs(records: list[dict], binary: bool = True) -> list:
    "One InferInput per census attribute, as a Triton user builds them (numbers INT64, categories BYTES)."
    inputs = []
    for col in FEATURES:
        tensor = triton.InferInput(col, [len(records)], "BYTES" if col in CATEGORICAL else "INT64")
        values = [r[col] for r in records]
        tensor.set_data_from_numpy(np.array(values, dtype=object) if col in CATEGORICAL else np.array(values, np.int64),
                                   binary_data=binary)
        inputs.append(tensor)
    return inputs


def json_request(records: list[dict], **extra) -> dict:
    "An inference request in the protocol's JSON form."
    return {"inputs": [{"name": c, "shape": [len(records)], "datatype": "BYTES" if c in CATEGORICAL else "INT64",
                        "data": [r[c] for r in records]} for c in FEATURES], **extra}


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_metadata_and_health_through_tritonclient(triton_client, client):
    version = client.get("/ready").json()["model_version"]
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    server = triton_client.get_server_metadata()
    assert server["name"] == MODEL and "binary_tensor_data" in server["extensions"]
    meta = triton_client.get_model_metadata(MODEL)
    assert meta["versions"] == [version]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (c, "BYTES" if c in CATEGORICAL else "INT64", [-1]) for c in FEATURES]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("probability", "FP32"), ("prediction", "BYTES")]
    assert triton_client.get_model_metadata(MODEL, model_version=version) == meta
    assert triton_client.is_model_ready(MODEL) and triton_client.is_model_ready(MODEL, version)
    assert not triton_client.is_model_ready(MODEL, "0" * 32)
    assert not triton_client.is_model_ready("another-model")
    err = error_of(lambda: triton_client.get_model_metadata(MODEL, model_version="0" * 32))
    assert err.status() == "404" and version in err.message()
    err = error_of(lambda: triton_client.get_model_metadata("another-model"))
    assert err.status() == "404" and "this server serves census-income" in err.message()


def test_one_record_matches_predict_to_the_bit(triton_client, client):
    native = client.post("/predict", json=EXAMPLE).json()
    for binary in (True, False):
        outputs = [triton.InferRequestedOutput("probability", binary_data=binary),
                   triton.InferRequestedOutput("prediction", binary_data=binary)]
        result = triton_client.infer(MODEL, triton_inputs([EXAMPLE], binary), request_id="one-record", outputs=outputs)
        p = result.as_numpy("probability")
        assert p.dtype == np.float32 and p.shape == (1,)
        assert p[0] == np.float32(native["probability"])  # the same float32, in binary and in JSON
        assert float(p[0]) == native["probability"]
        label = result.as_numpy("prediction")[0]  # bytes in binary, text in JSON
        assert (label.decode() if binary else label) == native["prediction"]
        response = result.get_response()
        assert response["id"] == "one-record" and response["model_version"] == native["model_version"]


def test_a_thousand_test_records_match_predict_batch(triton_client, client, test_records):
    records = test_records[:1000]
    native = client.post("/predict/batch", json=records).json()["predictions"]
    result = triton_client.infer(MODEL, triton_inputs(records))  # tritonclient's defaults: binary both ways
    p, labels = result.as_numpy("probability"), result.as_numpy("prediction")
    assert p.shape == (1000,) and labels.shape == (1000,)
    assert p.tolist() == [a["probability"] for a in native]  # float32 values, equal as floats: bit for bit
    assert [v.decode() for v in labels] == [a["prediction"] for a in native]
    assert {v.decode() for v in labels} == {">50K", "<=50K"}
    # the same request in JSON, with one output asked for
    answer = client.post(f"/v2/models/{MODEL}/infer", json=json_request(records, outputs=[{"name": "prediction"}]))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert [o["name"] for o in answer.json()["outputs"]] == ["prediction"]
    assert answer.json()["outputs"][0]["data"] == [a["prediction"] for a in native]


def test_a_bad_value_is_refused_in_predicts_words(triton_client, client):
    bad = EXAMPLE | {"age": 200}
    native = client.post("/predict", json=bad).json()["detail"][0]["msg"]  # "age: 200 is outside ..."
    err = error_of(lambda: triton_client.infer(MODEL, triton_inputs([EXAMPLE, bad])))
    assert err.status() == "400" and err.message() == f"record 1: {native}"
    answer = client.post(f"/v2/models/{MODEL}/infer", json=json_request([bad]))
    assert answer.status_code == 400 and answer.json() == {"error": f"record 0: {native}"}


def test_every_refusal_is_the_protocols_error(client, server):
    cases = {
        "a missing input": json_request([EXAMPLE]) | {"inputs": json_request([EXAMPLE])["inputs"][1:]},
        "inputs of different lengths": {"inputs": [i | ({"shape": [2], "data": i["data"] * 2} if i["name"] == "age" else {})
                                                   for i in json_request([EXAMPLE])["inputs"]]},
        "an unknown input": {"inputs": [*json_request([EXAMPLE])["inputs"], {"name": "salary", "shape": [1],
                                                                              "datatype": "BYTES", "data": [">50K"]}]},
        "a number sent as text": {"inputs": [i | {"datatype": "BYTES", "data": ["41"]} if i["name"] == "age" else i
                                             for i in json_request([EXAMPLE])["inputs"]]},
        "a shape that is no column": {"inputs": [i | {"shape": [1, 2]} for i in json_request([EXAMPLE])["inputs"]]},
        "data longer than the shape": {"inputs": [i | {"data": i["data"] * 3} for i in json_request([EXAMPLE])["inputs"]]},
        "an unknown output": json_request([EXAMPLE], outputs=[{"name": "salary"}]),
        "no inputs at all": {"inputs": []},
        "not an object": [1, 2, 3],
    }
    words = {"a missing input": "inputs missing: age", "inputs of different lengths": "every input holds one element per record",
             "an unknown input": "'salary' is not a census field", "a number sent as text": "cannot hold age; send INT64",
             "a shape that is no column": "cannot be a column of records", "data longer than the shape": "its data holds 3",
             "an unknown output": "no output named 'salary'", "no inputs at all": "inputs: List should have at least 1 item",
             "not an object": "not an inference request"}
    for name, body in cases.items():
        answer = client.post(f"/v2/models/{MODEL}/infer", json=body)
        assert answer.status_code == 400, (name, answer.text)
        assert list(answer.json()) == ["error"] and words[name] in answer.json()["error"], (name, answer.text)
    assert client.post(f"/v2/models/{MODEL}/infer", content=b"{not json").status_code == 400
    gz = client.post(f"/v2/models/{MODEL}/infer", content=gzip.compress(json.dumps(json_request([EXAMPLE])).encode()),
                     headers={"content-encoding": "gzip"})
    assert gz.status_code == 400 and "compressed bodies are not accepted" in gz.json()["error"]
    other = client.post("/v2/models/another-model/infer", json=json_request([EXAMPLE]))
    assert other.status_code == 404 and "another-model" in other.json()["error"]


def test_bounds_are_predicts_bounds(client, test_records):
    too_many = client.post(f"/v2/models/{MODEL}/infer", json=json_request(test_records[:1001]))  # CENSUS_MAX_BATCH 1000
    assert too_many.status_code == 400 and "send 1 to 1000 per request" in too_many.json()["error"]
    huge = client.post(f"/v2/models/{MODEL}/infer", content=b" " * (1_048_576 + 1))  # CENSUS_MAX_BODY_BYTES
    assert huge.status_code == 413 and "larger than 1048576 bytes" in huge.json()["error"]
    many_bad = json_request(test_records[:50])
    for tensor in many_bad["inputs"]:
        if tensor["name"] == "race":
            tensor["data"] = ["Martian"] * 50
    answer = client.post(f"/v2/models/{MODEL}/infer", json=many_bad).json()["error"]
    assert answer.count("is not an allowed value") == 10 and "and 40 more problem(s)" in answer


def binary_request(records: list[dict], tamper=None) -> tuple[bytes, dict]:
    "The binary extension by hand: a JSON header, then each input's bytes (optionally tampered with)."
    blobs = [b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in (r[c] for r in records))
             if c in CATEGORICAL else np.array([r[c] for r in records], "<i8").tobytes() for c in FEATURES]
    if tamper:
        blobs = tamper(blobs)
    head = json.dumps({"inputs": [{"name": c, "shape": [len(records)], "datatype": "BYTES" if c in CATEGORICAL else "INT64",
                                   "parameters": {"binary_data_size": len(b)}} for c, b in zip(FEATURES, blobs, strict=True)]}).encode()
    return head + b"".join(blobs), {"inference-header-content-length": str(len(head))}


def test_bad_binary_bytes_are_refused_by_name(client):
    body, headers = binary_request([EXAMPLE])
    ok = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert ok.status_code == 200 and [o["name"] for o in ok.json()["outputs"]] == ["probability", "prediction"]
    workclass = FEATURES.index("workclass")

    def not_utf8(blobs):
        blobs[workclass] = struct.pack("<I", 2) + b"\xff\xfe"
        return blobs

    def length_past_the_end(blobs):
        blobs[workclass] = struct.pack("<I", 10**6) + b"State-gov"
        return blobs

    for tamper, words in ((not_utf8, "input 'workclass': element 0 is not UTF-8 text"),
                          (length_past_the_end, "input 'workclass': element 0 runs past the end")):
        body, headers = binary_request([EXAMPLE], tamper)
        answer = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text
    body, headers = binary_request([EXAMPLE])
    for length, words in (("12x", "must be a whole number of bytes"), (str(len(body) + 1), "the body has")):
        answer = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers | {HEADER: length})
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text
    extra = client.post(f"/v2/models/{MODEL}/infer", content=body + b"\x00", headers=headers)
    assert extra.status_code == 400 and "1 bytes after the binary tensors" in extra.json()["error"]


HEADER = "inference-header-content-length"


def test_request_ids_are_echoed_and_name_the_v2_answer(client):
    given = client.post(f"/v2/models/{MODEL}/infer", json=json_request([EXAMPLE]), headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42" and given.json()["id"] == "trace-42"
    own = client.post(f"/v2/models/{MODEL}/infer", json=json_request([EXAMPLE], id="body-7"))
    assert own.json()["id"] == "body-7" and own.headers["x-request-id"] == "body-7"  # no header: the body's id names it
    both = client.post(f"/v2/models/{MODEL}/infer", json=json_request([EXAMPLE], id="body-8"), headers={"X-Request-ID": "h-8"})
    assert both.json()["id"] == "body-8" and both.headers["x-request-id"] == "h-8"  # the protocol's id, the header's id
    made = client.post(f"/v2/models/{MODEL}/infer", json=json_request([EXAMPLE]))
    assert len(made.headers["x-request-id"]) == 32 and made.json()["id"] == made.headers["x-request-id"]
    for hostile in ("has space", "x" * 129, "quote\"d", "üñí"):
        answer = client.get("/health", headers={"X-Request-ID": hostile.encode("utf-8")})
        kept = answer.headers["x-request-id"]
        assert kept != hostile and len(kept) == 32 and int(kept, 16) >= 0
    for path, status in (("/nowhere", 404), ("/predict", 422), ("/v2/models/x", 404)):
        answer = client.get(path, headers={"X-Request-ID": "r-1"}) if status == 404 else client.post(
            path, json={}, headers={"X-Request-ID": "r-1"})
        assert answer.status_code == status and answer.headers["x-request-id"] == "r-1"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_request_id_leads_to_its_log_line(model_dir):
    port = free_port()
    proc = start_uvicorn(model_dir, port, CENSUS_LOG_REQUESTS="true")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        httpx.post(f"{base}/predict", json=EXAMPLE, headers={"X-Request-ID": "find-me-1"})
        httpx.post(f"{base}/v2/models/{MODEL}/infer", json=json_request([EXAMPLE], id="find-me-2"))
        made = httpx.get(f"{base}/v2/health/ready").headers["x-request-id"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    by_id = {ln["request_id"]: ln for ln in lines}
    assert by_id["find-me-1"]["route"] == "/predict" and by_id["find-me-1"]["status"] == 200
    assert by_id["find-me-2"]["route"] == "/v2/models/{model_name}/infer"
    assert by_id[made]["route"] == "/v2/health/ready"
    assert all(EXAMPLE["native-country"] not in json.dumps(ln) for ln in lines)  # never a record's contents


def test_metrics_count_the_protocol_routes(client):
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post(f"/v2/models/{MODEL}/infer", json=json_request([EXAMPLE, EXAMPLE | {"age": 25}])).status_code == 200
    client.post("/v2/models/some-other/infer", json=json_request([EXAMPLE]))
    after = client.get("/metrics").text

    def sample(text: str, series: str) -> float:
        return next((float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(series + " ")), 0.0)

    ok = 'census_requests_total{method="POST",route="/v2/models/{model_name}/infer",status="200"}'
    missing = 'census_requests_total{method="POST",route="/v2/models/{model_name}/infer",status="404"}'
    answers = [f'census_predictions_total{{endpoint="/v2/models/census-income/infer",prediction="{c}"}}' for c in (">50K", "<=50K")]
    assert sample(after, ok) - sample(before, ok) == 3
    assert sample(after, missing) - sample(before, missing) == 1
    assert sum(sample(after, a) - sample(before, a) for a in answers) == 6
    assert "some-other" not in after  # the model name a client wrote never becomes a label


def test_a_500_carries_the_headers_and_the_id():
    from census_income.api import API_POLICY, CensusApp

    from .conftest import starlette_test_client

    app = CensusApp()
    app.edge_policies = ({}, API_POLICY)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    with starlette_test_client()(app, raise_server_exceptions=False) as tc:
        answer = tc.get("/boom", headers={"X-Request-ID": "bug-1"})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "bug-1" and answer.headers["content-security-policy"] == API_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_readmes_tritonclient_session(server):
    from testkit import ROOT

    readme = (ROOT / "docs" / "guide.md").read_text()  # the guide's section on the protocol
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "tritonclient" in block)
    scope: dict = {}
    exec(code.replace("127.0.0.1:8000", server.removeprefix("http://")), scope)  # noqa: S102 - the README's own snippet
    shown = re.search(r"# \(array\(\[([0-9.]+)…\], dtype=float32\), array\(\[b'([^']+)'\]", code)  # what it says it prints
    assert str(scope["result"].as_numpy("probability")[0]).startswith(shown.group(1))
    assert scope["result"].as_numpy("prediction")[0].decode() == shown.group(2)
    assert scope["result"].get_response()["id"] == "my-1"


def test_the_readmes_request_id_line(server, tmp_path):
    import subprocess

    from testkit import ROOT

    line = next(ln for ln in (ROOT / "docs" / "guide.md").read_text().splitlines() if ln.startswith("curl -si ") and "X-Request-ID" in ln)
    out = subprocess.run(["bash", "-c", line.replace("http://127.0.0.1:8000", server)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.strip().lower().splitlines() == ["http/1.1 200 ok", "x-request-id: ticket-4711"]  # a 200, not a 422 with an id


def test_what_an_adversarial_run_found_is_refused_in_words(client):
    "Findings of an adversarial run against the protocol's routes: each is now a 400 or 404 that says what is wrong."
    infer = f"/v2/models/{MODEL}/infer"
    body, headers = binary_request([EXAMPLE])
    head_len = int(headers[HEADER])
    request = json.loads(body[:head_len])

    def with_first_input(**change) -> bytes:
        changed = json.loads(json.dumps(request))
        changed["inputs"][0].update(change)
        head = json.dumps(changed).encode()
        return head + body[head_len:], {HEADER: str(len(head))}

    cases = [
        (*with_first_input(parameters={"binary_data_size": 8.0}), "binary_data_size must be a whole number of bytes"),
        (*with_first_input(data=[41]), "has both data and parameters.binary_data_size"),
        (*with_first_input(shape=[True]), "inputs.0.shape.0"),
        (body, {HEADER: "+" + headers[HEADER]}, "digits only"),
        (body, {HEADER: "9" * 19}, f"Inference-Header-Content-Length is {'9' * 19}, but the body has {len(body)} bytes"),
        (body, {HEADER: str(len(body) + 1)}, f"Inference-Header-Content-Length is {len(body) + 1}, but the body has"),
        (body, {}, "not an inference request"),  # binary bytes after JSON, without the header that says where it ends
    ]
    for content, extra, words in cases:
        answer = client.post(infer, content=content, headers=extra)
        assert answer.status_code == 400 and words in answer.json()["error"], (words, answer.text)
    no_header = json_request([EXAMPLE])
    no_header["inputs"][0] = {"name": "age", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}
    answer = client.post(infer, json=no_header)
    assert answer.status_code == 400 and "no Inference-Header-Content-Length header" in answer.json()["error"]
    flag = client.post(infer, json=json_request([EXAMPLE], parameters={"binary_data_output": "true"}))
    assert flag.status_code == 400 and "binary_data_output must be true or false" in flag.json()["error"]
    # the same words as /predict: `?` where the census has no unknowns, a number beyond any float
    for bad in (EXAMPLE | {"sex": "?"}, EXAMPLE | {"age": 18446744073709551615}):
        native = client.post("/predict", json=bad).json()["detail"][0]["msg"]
        assert client.post(infer, json=json_request([bad])).json() == {"error": f"record 0: {native}"}
    # paths and methods the protocol's routes lack answer in the protocol's form too
    for method, path, status in (("PUT", infer, 405), ("GET", infer, 405), ("GET", "/v2/repository/index", 404),
                                 ("GET", f"/v2/models/{MODEL}/versions/", 404)):
        answer = client.request(method, path)
        assert answer.status_code == status and list(answer.json()) == ["error"], (method, path, answer.text)
    # the unversioned routes take no version from the query string
    assert client.post(f"{infer}?model_version=zzz", json=json_request([EXAMPLE])).status_code == 200


def test_white_space_around_a_request_id_is_not_part_of_it(server):
    import socket

    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:  # raw: httpx refuses such a header
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-ID: trailing-space \t \r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert b"\r\nx-request-id: trailing-space\r\n" in answer, answer


def test_a_late_v2_body_gets_a_408_and_its_connection_closes(model_dir):
    import socket
    import time

    port = free_port()
    proc = start_uvicorn(model_dir, port, CENSUS_BODY_TIMEOUT="1")
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(b"POST /v2/models/census-income/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        started, answer = time.monotonic(), b""
        while chunk := conn.recv(65536):  # until the server closes (a 10 s timeout here fails the test)
            answer += chunk
            if time.monotonic() - started > 4:
                conn.sendall(b" ")  # a client still trickling bytes must not keep the connection
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
    assert b'{"error":"the request body did not arrive within 1 s' in answer
