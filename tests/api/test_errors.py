"""Every way a request can be wrong gets a 4xx whose message a person can act on; never a 500."""

import json

import pytest

from census_income.schema import CATEGORIES, FEATURES
from census_income.validation import EXAMPLE

MAX_BODY = 1_048_576  # the default CENSUS_MAX_BODY_BYTES
RACES = ", ".join(CATEGORIES["race"])


def without(key: str) -> dict:
    return {k: v for k, v in EXAMPLE.items() if k != key}


# (body, the first error's loc, the first error's message, its start or all of it)
RECORD_ERRORS = [
    pytest.param(EXAMPLE | {"race": "Martian"}, ["body", "race"], f"race: 'Martian' is not an allowed value; allowed: {RACES}", id="unknown-category"),
    pytest.param(EXAMPLE | {"sex": "?"}, ["body", "sex"], "sex: '?' is not an allowed value; allowed: Female, Male", id="question-mark-where-not-nullable"),
    pytest.param(EXAMPLE | {"education": None}, ["body", "education"], "education: field required", id="null-where-not-nullable"),
    pytest.param(EXAMPLE | {"age": 200}, ["body", "age"], "age: 200 is outside the allowed range 0..120", id="out-of-range"),
    pytest.param(EXAMPLE | {"hours-per-week": 0}, ["body", "hours-per-week"], "hours-per-week: 0 is outside the allowed range 1..168", id="below-range"),
    pytest.param(EXAMPLE | {"age": "41"}, ["body", "age"], "age: '41' is not a whole number (allowed: 0..120)", id="number-as-text"),
    pytest.param(EXAMPLE | {"age": 41.5}, ["body", "age"], "age: 41.5 is not a whole number (allowed: 0..120)", id="fraction"),
    pytest.param(EXAMPLE | {"capital-gain": True}, ["body", "capital-gain"], "capital-gain: True is not a whole number (allowed: 0..99999)", id="boolean"),
    pytest.param(without("fnlgt"), ["body", "fnlgt"], "fnlgt: field required", id="missing-field"),
    pytest.param(EXAMPLE | {"salary": ">50K"}, ["body", "salary"], f"'salary' is not a census field; expected: {', '.join(FEATURES)}", id="extra-field"),
    pytest.param([EXAMPLE], ["body"], "the body must be one record: a JSON object with the 14 census fields (see /docs)", id="list-for-one"),
]


@pytest.mark.parametrize(("body", "loc", "msg"), RECORD_ERRORS)
def test_invalid_record_is_422_naming_the_field(client, body, loc, msg):
    r = client.post("/predict", json=body)
    assert r.status_code == 422, r.text
    first = r.json()["detail"][0]
    assert first["loc"] == loc
    assert first["msg"].startswith(msg), first["msg"]


def test_every_problem_of_a_record_is_reported_at_once(client):
    r = client.post("/predict", json=without("fnlgt") | {"race": "Martian", "agee": 3})
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} == {("body", "race"), ("body", "fnlgt"), ("body", "agee")}


@pytest.mark.parametrize(("raw", "msg"), [
    ('{"age": 41, "workclass": ', "the body is not valid JSON (EOF while parsing a value"),
    ("", "the body is not valid JSON (EOF while parsing a value"),
    ("{'age': 41}", "the body is not valid JSON (key must be a string"),
])
def test_malformed_json_is_422_saying_so(client, raw, msg):
    r = client.post("/predict", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"].startswith(msg), r.json()


def test_a_bad_record_in_a_batch_is_named_by_its_index(client):
    r = client.post("/predict/batch", json=[EXAMPLE, EXAMPLE | {"race": "Martian"}])
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", 1, "race"], "type": "literal_error",
                                   "msg": f"record 1: race: 'Martian' is not an allowed value; allowed: {RACES}"}]


@pytest.mark.parametrize(("records", "msg"), [
    ([], "the batch is empty; send at least one record"),
    ([EXAMPLE] * 1001, "the batch has more than 1000 records; send 1 to 1000 per request (CENSUS_MAX_BATCH sets the limit)"),
])
def test_empty_or_oversized_batch_is_422(client, records, msg):
    r = client.post("/predict/batch", json=records)
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body"], "msg": msg, "type": "too_short" if not records else "too_long"}]


def test_a_batch_item_that_is_not_a_record_is_named_by_its_index(client):
    r = client.post("/predict/batch", json=[EXAMPLE, 41])
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", 1], "type": "dict_type",
                                   "msg": "record 1: must be a JSON object with the 14 census fields (see /docs)"}]


def test_a_batch_must_be_a_list(client):
    r = client.post("/predict/batch", json=EXAMPLE)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "the body must be a JSON list of records (see /docs)"


TOO_LARGE = (f"request body larger than {MAX_BODY} bytes: send fewer records per request "
             "(the limit is set by CENSUS_MAX_BODY_BYTES)")


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_oversized_body_is_413_by_its_declared_length(client, path):
    body = json.dumps([EXAMPLE] * 4000).encode()
    assert len(body) > MAX_BODY
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json() == {"detail": TOO_LARGE}


def test_oversized_body_is_413_when_streamed_without_a_length(client):
    def chunks():  # no Content-Length: httpx sends this chunked
        yield b"["
        for _ in range(4000):
            yield json.dumps(EXAMPLE).encode() + b","
        yield b"{}]"

    r = client.post("/predict/batch", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json() == {"detail": TOO_LARGE}


def test_the_server_still_answers_after_a_burst_of_bad_requests(client):
    "Every bad request of this file, sent here (not relying on the tests above having run), then a good one."
    for body, _, _ in (p.values for p in RECORD_ERRORS):
        assert client.post("/predict", json=body).status_code == 422
    for raw in ('{"age": 41, "workclass": ', "", "{'age': 41}"):
        assert client.post("/predict", content=raw, headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/predict/batch", json=[EXAMPLE, 41]).status_code == 422
    assert client.post("/predict/batch", content=json.dumps([EXAMPLE] * 4000)).status_code == 413
    r = client.post("/predict", json=EXAMPLE)
    assert r.status_code == 200 and r.json()["prediction"] in ("<=50K", ">50K")
    assert client.get("/health").json() == {"status": "ok"}


ROUNDED = "0.999999999999999999999"  # a float reads it as 1.0, a whole number: the digits are not one


def with_age(text: str) -> str:
    "EXAMPLE as JSON with `age` written as `text` (a literal Python's json cannot write)."
    body = json.dumps(EXAMPLE)
    old = f'"age": {EXAMPLE["age"]}'
    assert old in body
    return body.replace(old, f'"age": {text}')


@pytest.mark.parametrize("written", [ROUNDED, "1e-9999999999999999999"])  # a float reads them as 1.0 and 0.0
@pytest.mark.parametrize("route", ["/predict", "/explain", "/predict/batch"])
def test_a_number_whose_float_is_whole_but_whose_digits_are_not_is_refused(client, route, written):
    body = with_age(written) if route != "/predict/batch" else f"[{json.dumps(EXAMPLE)}, {with_age(written)}]"
    r = client.post(route, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    first = r.json()["detail"][0]
    assert first["loc"] == (["body", 1, "age"] if route == "/predict/batch" else ["body", "age"])
    assert f"age: {written} is not a whole number (allowed: 0..120)" in first["msg"], first["msg"]


@pytest.mark.parametrize("written", ["44.0", "4.4e1", "440e-1", "44.000", "4400000000000000000000e-20"])
def test_a_whole_number_written_with_a_fraction_is_that_number(client, written):
    assert EXAMPLE["age"] == 44
    plain = client.post("/predict", json=EXAMPLE).json()
    r = client.post("/predict", content=with_age(written), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json() == plain, r.text


@pytest.mark.parametrize("nested", [False, True])
def test_v2_refuses_the_same_number_in_a_tensor(client, nested):
    from census_income.schema import CATEGORICAL
    from census_income.serving.tensors import MODEL_NAME

    rows = [EXAMPLE, EXAMPLE]
    inputs = [{"name": k, "shape": [2, 1] if nested else [2], "datatype": "BYTES" if k in CATEGORICAL else "INT64",
               "data": [[r[k]] for r in rows] if nested else [r[k] for r in rows]} for k in EXAMPLE]
    age = EXAMPLE["age"]
    old, new = ((f'"data": [[{age}], [{age}]]', f'"data": [[{age}], [{ROUNDED}]]') if nested
                else (f'"data": [{age}, {age}]', f'"data": [{age}, {ROUNDED}]'))
    body = json.dumps({"inputs": inputs})
    assert old in body
    r = client.post(f"/v2/models/{MODEL_NAME}/infer", content=body.replace(old, new), headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == f"record 1: age: {ROUNDED} is not a whole number (allowed: 0..120)"


def v2_body(change: dict) -> dict:
    "Two records of EXAMPLE as V2 inputs, with some inputs replaced (name → its tensor's fields)."
    from census_income.schema import CATEGORICAL

    return {"inputs": [{"name": k, "shape": [2], "datatype": "BYTES" if k in CATEGORICAL else "INT64", "data": [v, v]}
                       | change.get(k, {}) for k, v in EXAMPLE.items()]}


@pytest.mark.parametrize(("change", "error"), [
    ({"age": {"data": [[], [20, 60]]}}, "input 'age': record 0 holds 0 elements; nested data holds one per record, [[v], [v], ...]"),
    ({"age": {"data": [[20, 60], []]}}, "input 'age': record 0 holds 2 elements; nested data holds one per record"),
    ({"fnlgt": {"datatype": "UINT8", "data": [15024, 15024]}}, "input 'fnlgt': 15024 does not fit its datatype UINT8; send INT64"),
    ({"fnlgt": {"datatype": "INT8", "data": [15024, 15024]}}, "input 'fnlgt': 15024 does not fit its datatype INT8"),
    ({"fnlgt": {"datatype": "FP16", "data": [15025, 15025]}}, "input 'fnlgt': 15025 does not fit its datatype FP16"),
])
def test_v2_json_data_holds_what_its_shape_and_datatype_can(client, change, error):
    "Nested data is one element per record (never re-cut across records), and a number fits the datatype it is declared as."
    from census_income.serving.tensors import MODEL_NAME

    r = client.post(f"/v2/models/{MODEL_NAME}/infer", json=v2_body(change))
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text
    one = v2_body({k: {"shape": [1], "data": [v]} | ({"datatype": "UINT8"} if k == "fnlgt" else {}) for k, v in EXAMPLE.items()})
    one["inputs"] = [t | ({"data": [15024]} if t["name"] == "fnlgt" else {}) for t in one["inputs"]]
    r = client.post(f"/v2/models/{MODEL_NAME}/infer", json=one)  # one record, as the fast path reads them: the same refusal
    assert r.status_code == 400 and "15024 does not fit its datatype UINT8" in r.json()["error"], r.text
