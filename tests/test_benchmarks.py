"""The benchmarks' own helpers still work with the package as it is (they are run by hand, so nothing else would notice)."""

import warnings

from census_income.validation import EXAMPLE
from testkit import ROOT


def test_the_api_ceiling_app_answers_like_the_real_endpoint(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_api_ceiling import app

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from fastapi.testclient import TestClient
    client = TestClient(app)
    for path in ("/predict", "/plain"):  # FastAPI's handler, and the one /predict is served by
        ok = client.post(path, json=EXAMPLE)
        assert ok.status_code == 200 and ok.json()["prediction"] == "<=50K"
        r = client.post(path, json=EXAMPLE | {"race": "Martian"})
        assert r.status_code == 422 and "race" in r.text  # it validates like the real endpoint, so the ratio is fair


def test_every_benchmark_says_what_it_ran_on(monkeypatch):
    "Each script in benchmarks/ prints the CPU and the BLAS library, kernel and threads (`machine.blas_line`)."
    scripts = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if p.name not in ("machine.py", "bench_api_ceiling.py")]
    assert len(scripts) >= 8
    for path in scripts:
        text = path.read_text()
        assert "from machine import blas_line" in text and "print(blas_line())" in text, path.name
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from machine import blas_line
    from threadpoolctl import threadpool_info

    line = blas_line()
    kernel = next(i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas")
    assert f"kernel {kernel}," in line and "threads" in line and "cores" in line, line


def test_the_load_test_without_wrk_says_what_to_install_before_starting_a_server(tmp_path):
    "bench_api.py needs wrk and taskset: without them it stops at once, before it starts a server, with one line."
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--model-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == ["bench_api.py: wrk and taskset not found on PATH: install wrk (apt-get install -y "
                                               "wrk) and taskset (util-linux), then run it again"]
