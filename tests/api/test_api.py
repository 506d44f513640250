"""The API against a real uvicorn (and in process): answers, spellings, missing values, batches, equality."""

import http.client
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from census_income.features import ROW_ORDER
from census_income.predict import predict
from census_income.schema import CATEGORICAL, CLASSES, CONTINUOUS
from census_income.validation import EXAMPLE

from ..conftest import assert_same_answers, assert_same_probabilities
from .conftest import starlette_test_client

ISSUE_BODY = ('{"age": 41, "workclass": "State-gov", "fnlgt": 77516, "education": "Bachelors", "education-num": 13, '
              '"marital-status": "Divorced", "occupation": "Prof-specialty", "relationship": "Husband", "race": "White", '
              '"sex": "Male", "capital-gain": 2100, "capital-loss": 0, "hours-per-week": 40, "native-country": "Cuba"}')


@pytest.fixture(scope="session")
def one_of_each(labelled_test_records, predictor) -> dict:
    "A record of the test split labelled and predicted <=50K, and one labelled and predicted >50K."
    found = {}
    for row in labelled_test_records:
        record = {k: v for k, v in row.items() if k != "salary"}
        if row["salary"] not in found and predictor.predict_records([record])[0]["prediction"] == row["salary"]:
            found[row["salary"]] = record
    assert set(found) == set(CLASSES)
    return found


def test_root_names_the_model_and_points_to_the_docs(client, predictor):
    r = client.get("/")
    assert r.status_code == 200
    assert r.json()["model_version"] == predictor.version and r.json()["docs"] == "/docs"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert not re.findall(r"""(?:src|href)=["']?https?://""", docs.text), "the docs page loads something from the network"
    for asset in re.findall(r"""(?:src|href)=["']?(/docs-assets/[^"' >]+)""", docs.text):
        assert client.get(asset).status_code == 200, asset


def test_liveness_and_readiness(client, predictor):
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200 and r.json() == {"ready": True, "model_version": predictor.version}


def test_the_body_of_issue_5_works_as_is(client, predictor):
    r = client.post("/predict", content=ISSUE_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"prediction", "probability", "model_version"}
    assert body == predictor.predict_records([json.loads(ISSUE_BODY)])[0] | {"model_version": predictor.version}
    assert body["prediction"] == CLASSES[body["probability"] >= predictor.threshold]


@pytest.mark.parametrize("label", CLASSES)
def test_predicts_each_class_for_a_record_from_the_data(client, one_of_each, label):
    r = client.post("/predict", json=one_of_each[label])
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == label


def test_underscore_spelling_gives_the_same_answer(client):
    hyphen = client.post("/predict", json=EXAMPLE).json()
    underscore = client.post("/predict", json={k.replace("-", "_"): v for k, v in EXAMPLE.items()}).json()
    assert underscore == hyphen


def test_question_mark_and_null_are_the_same_missing_value_as_in_training(client, predictor):
    marked = EXAMPLE | {"workclass": "?", "occupation": "?", "native-country": "?"}
    nulls = EXAMPLE | {"workclass": None, "occupation": None, "native-country": None}
    a, b = client.post("/predict", json=marked), client.post("/predict", json=nulls)
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    assert_same_probabilities([a.json()["probability"]], [predictor.predict_records([marked])[0]["probability"]])
    assert a.json()["probability"] != client.post("/predict", json=EXAMPLE).json()["probability"]


def test_batch_returns_one_result_per_record_in_order(client, one_of_each, predictor):
    records = [one_of_each[">50K"], one_of_each["<=50K"], EXAMPLE, one_of_each[">50K"]]
    r = client.post("/predict/batch", json=records)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_version": predictor.version, "predictions": predictor.predict_records(records)}
    assert [p["prediction"] for p in r.json()["predictions"]][:2] == [">50K", "<=50K"]


def test_the_whole_test_split_scores_as_the_prediction_function_does(client, server, test_records, model_dir, predictor):
    expected = predict(test_records, model_dir)  # the package's prediction function, one product over the split
    batched = []
    for i in range(0, len(test_records), 1000):
        r = client.post("/predict/batch", json=test_records[i:i + 1000])
        assert r.status_code == 200, r.text
        batched += r.json()["predictions"]

    # every record alone, 16 in flight (so the server coalesces them as under load); http.client is used because
    # it is several times lighter than httpx per request, which keeps this test to seconds
    local, port = threading.local(), int(server.rsplit(":", 1)[1])

    def post(record: dict) -> dict:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local.conn.request("POST", "/predict", json.dumps(record), {"Content-Type": "application/json"})
        r = local.conn.getresponse()
        assert r.status == 200
        return json.loads(r.read())

    with ThreadPoolExecutor(16) as pool:
        singles = list(pool.map(post, test_records))
    p = [e["probability"] for e in expected]
    for what, answers in (("batched", batched), ("alone, coalesced", singles)):
        assert_same_answers([a["probability"] for a in answers], p, predictor.threshold,
                            [a["prediction"] for a in answers], [e["prediction"] for e in expected], what)


def test_single_record_path_encodes_bit_for_bit_like_the_column_path(test_records, predictor):
    encoder = predictor.encoder
    expected = encoder.transform({c: [r[c] for r in test_records] for c in CATEGORICAL + CONTINUOUS})
    values = [tuple(r[c] for c in ROW_ORDER) for r in test_records]
    one_by_one = np.concatenate([encoder.encode_rows([v]) for v in values])  # a lone request
    in_groups = np.concatenate([encoder.encode_rows(values[i:i + 16]) for i in range(0, len(values), 16)])  # coalesced
    for rows in (one_by_one, in_groups):
        assert rows.dtype == expected.dtype and np.array_equal(rows, expected)


def test_in_process_client_answers_like_the_server(test_client, client):
    assert test_client.get("/").json() == client.get("/").json()
    assert test_client.post("/predict", json=EXAMPLE).json() == client.post("/predict", json=EXAMPLE).json()


def test_without_a_loaded_model_the_app_is_not_ready_and_scores_nothing():
    from census_income.api import app

    tc = starlette_test_client()(app)  # no `with`: the lifespan does not run, no model is loaded
    r = tc.get("/ready")
    assert r.status_code == 503 and r.json() == {"ready": False, "model_version": None}
    r = tc.post("/predict", json=EXAMPLE)
    assert r.status_code == 503 and "not loaded" in r.json()["detail"]
    assert tc.get("/health").status_code == 200


def test_a_record_alone_scores_as_in_any_batch(predictor, test_records):
    "One record alone, in a small request, in a block of a batch: the same answer within the tolerance."
    records = test_records[:2100]
    together = predictor.predict_records(records)
    alone = [predictor.predict_records([r])[0] for r in records[:300]]
    small = [a for i in range(0, 300, 7) for a in predictor.predict_records(records[i:i + 7])][:300]
    for what, answers in (("alone", alone), ("in requests of 7", small)):
        assert_same_answers([a["probability"] for a in answers], [a["probability"] for a in together[:300]],
                            predictor.threshold, [a["prediction"] for a in answers],
                            [a["prediction"] for a in together[:300]], what)
