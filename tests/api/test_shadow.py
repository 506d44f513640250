"""A challenger in the shadow (CENSUS_SHADOW_MODEL_DIR) on a real uvicorn: the served answers are byte for byte the
same with and without it; it scores every record after the answer, its agreement shows on /metrics and in the
payload log; a broken one is refused at start, visibly, and the served model answers as before."""

import json
import shutil
import time

import httpx
import pytest

from census_income.features import ROW_ORDER
from census_income.predict import Predictor
from census_income.toy import toy_model_folder
from census_income.validation import EXAMPLE

from . import test_payload_log
from .test_monitoring import samples
from .test_payload_log import v2_body

pytestmark = pytest.mark.integration  # real server processes: not in `make test-fast`


server_with = test_payload_log.server_with  # the same fixture: uvicorn with extra environment


@pytest.fixture(scope="module")
def challenger(tmp_path_factory):
    "A model folder other than the served one: a toy network, sealed and loadable like a trained model."
    return toy_model_folder(tmp_path_factory.mktemp("challenger") / "model", seed=3)


def shadow_scored(base: str, n: int, timeout: float = 10) -> dict:
    "The /metrics samples once the shadow has scored n records."
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base) as c:
        while True:
            s = samples(c)
            scored = sum(s.get(("census_shadow_records_total", (("agreement", a),)), 0) for a in ("agree", "disagree"))
            if scored >= n or time.monotonic() > deadline:
                return s
            time.sleep(0.05)


def exchanges(base: str, records: list[dict]) -> list[tuple]:
    "The same requests to any server: status, content type and body of each answer."
    out = []
    with httpx.Client(base_url=base) as c:
        for k, r in enumerate(records[:40]):
            out.append(c.post("/predict", json=r, headers={"X-Request-ID": f"one-{k}"}))
        out.append(c.post("/predict/batch", json=records[:300], headers={"X-Request-ID": "many"}))
        out.append(c.post("/v2/models/census-income/infer", json=v2_body(records[:30]) | {"id": "v2"}))
        out.append(c.post("/v2/models/census-income/infer", headers={"X-Request-ID": "v2-bin"},
                          json=v2_body(records[:30]) | {"parameters": {"binary_data_output": True}}))
        out.append(c.post("/predict", json=records[0] | {"age": -1}, headers={"X-Request-ID": "bad"}))
    return [(r.status_code, r.headers["content-type"], r.content) for r in out]


def test_served_answers_are_byte_identical_with_and_without_a_shadow(server_with, challenger, test_records, tmp_path):
    _, plain = server_with()
    _, shadowed = server_with(CENSUS_SHADOW_MODEL_DIR=str(challenger), CENSUS_PAYLOAD_LOG=str(tmp_path / "p.jsonl"))
    want, got = exchanges(plain, test_records), exchanges(shadowed, test_records)
    assert [w[0] for w in want] == [200] * 43 + [422]
    assert got == want
    s = shadow_scored(shadowed, 40 + 300 + 30 + 30)
    agree = s[("census_shadow_records_total", (("agreement", "agree"),))]
    disagree = s[("census_shadow_records_total", (("agreement", "disagree"),))]
    assert agree + disagree == 400 and disagree > 0  # a toy network is another model: it disagrees somewhere
    assert s[("census_shadow_agreement_ratio", ())] == pytest.approx(agree / 400)
    assert s[("census_shadow_probability_difference_count", ())] == 400
    assert s[("census_shadow_info", (("state", "scoring"), ("version", Predictor.load(challenger).version)))] == 1


def test_the_payload_log_carries_both_answers(server_with, challenger, test_records, tmp_path):
    log = tmp_path / "p.jsonl"
    _, base = server_with(CENSUS_SHADOW_MODEL_DIR=str(challenger), CENSUS_PAYLOAD_LOG=str(log))
    answers = httpx.post(f"{base}/predict/batch", json=test_records[:50]).json()["predictions"]
    shadow_scored(base, 50)
    deadline = time.monotonic() + 10
    while (not log.exists() or log.read_text().count("\n") < 50) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    shadow = Predictor.load(challenger)
    want = shadow.answers(shadow.predict_rows([tuple(r[c] for c in ROW_ORDER) for r in test_records[:50]]))
    assert [x["probability"] for x in lines] == [a["probability"] for a in answers]
    assert [x["shadow_probability"] for x in lines] == pytest.approx([a["probability"] for a in want], abs=1e-6)
    assert [x["shadow_prediction"] for x in lines] == [a["prediction"] for a in want]
    assert {x["shadow_version"] for x in lines} == {shadow.version}


def _broken(challenger, tmp_path, how: str):
    "A challenger folder broken one way, and the pinned version to start with (None: unpinned)."
    if how == "missing":
        return tmp_path / "no-model-here", None
    broken = shutil.copytree(challenger, tmp_path / "broken")
    if how == "corrupt-weights":
        (broken / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    elif how == "tampered-manifest":
        manifest = json.loads((broken / "manifest.json").read_text())
        manifest["threshold"] = 0.01  # changed by hand: the version no longer matches what the manifest holds
        (broken / "manifest.json").write_text(json.dumps(manifest))
    elif how == "wrong-version":
        return broken, "0" * 32
    return broken, None


@pytest.mark.parametrize("how", ["missing", "corrupt-weights", "tampered-manifest", "wrong-version"])
def test_a_broken_shadow_is_refused_at_start_and_the_served_model_answers(server_with, challenger, tmp_path, how):
    folder, pin = _broken(challenger, tmp_path, how)
    env = {"CENSUS_SHADOW_MODEL_DIR": str(folder)} | ({"CENSUS_SHADOW_MODEL_VERSION": pin} if pin else {})
    proc, base = server_with(**env)
    _, plain = server_with()
    want = httpx.post(f"{plain}/predict", json=EXAMPLE).content
    assert httpx.get(f"{base}/ready").json()["ready"] is True
    assert httpx.post(f"{base}/predict", json=EXAMPLE).content == want
    s = samples(httpx.Client(base_url=base))
    assert s[("census_shadow_info", (("state", "refused"), ("version", "")))] == 1
    assert not any(k[0].startswith("census_shadow_records") for k in s)
    proc.terminate()
    _, err = proc.communicate(timeout=15)
    refused = [ln for ln in err.splitlines() if "shadow model refused" in ln]
    assert len(refused) == 1 and str(folder) in refused[0], err
    assert "Traceback" not in err


def test_a_pinned_shadow_of_its_own_version_scores(server_with, challenger):
    version = Predictor.load(challenger).version
    _, base = server_with(CENSUS_SHADOW_MODEL_DIR=str(challenger), CENSUS_SHADOW_MODEL_VERSION=version)
    assert httpx.post(f"{base}/predict", json=EXAMPLE).status_code == 200
    s = shadow_scored(base, 1)
    assert s[("census_shadow_info", (("state", "scoring"), ("version", version)))] == 1
    assert s[("census_shadow_probability_difference_count", ())] == 1
