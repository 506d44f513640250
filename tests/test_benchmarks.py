"""The benchmarks' own helpers still work with the package as it is (they are run by hand, so nothing else would notice)."""

import warnings

from census_income.validation import EXAMPLE

from .conftest import ROOT


def test_the_api_ceiling_app_answers_like_the_real_endpoint(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_api_ceiling import app

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from fastapi.testclient import TestClient
    client = TestClient(app)
    assert client.post("/predict", json=EXAMPLE).status_code == 200
    r = client.post("/predict", json=EXAMPLE | {"race": "Martian"})
    assert r.status_code == 422  # it validates like the real endpoint, so the ratio is fair
