"""What one GET /metrics scrape costs the event loop, and what a client scraping flat out does to /predict.

Two measures (issue 22: one scrape held the loop about 2.5 ms, and a client scraping flat out raised the /predict
median from 0.73 ms to 6.5 ms):

1. `Monitor.exposition()` in process, on a monitor holding every series a busy server has (each route, method and
   status seen, every field rejected for every reason): the time the event loop is held per scrape.
2. A real uvicorn on one core (the toy model, or `--model-dir`): wrk at one connection on POST /predict, alone and
   while a second client scrapes /metrics as fast as it can; the /predict median and p99 of each.

Run from the repo root (needs `wrk`: `apt-get install -y wrk`); compare two checkouts by running it with each on
PYTHONPATH, alternately:

    .venv/bin/python benchmarks/bench_metrics.py
"""

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_api import free_port, start_server, wrk  # benchmarks/ is on sys.path when this script runs
from machine import blas_line

from census_income.schema import FEATURES
from census_income.serving.monitor import Monitor
from census_income.toy import toy_model_folder
from census_income.validation import EXAMPLE

ROUTES = ["/", "/health", "/ready", "/predict", "/predict/batch", "/explain", "/metrics", "/docs", "/openapi.json"]
REASONS = ["missing", "literal_error", "less_than_equal", "greater_than_equal", "float_type", "int_from_float"]


def busy_monitor() -> Monitor:
    "A monitor with every series a long-running server collects: each route × method × status, each field × reason."
    m = Monitor("0123456789abcdef", False, ROUTES, ["/docs-assets"])
    for i, path in enumerate([*ROUTES, "/docs-assets/x.js", "/unknown"]):
        for method in ("GET", "HEAD", "POST"):
            for status in (200, 404, 405, 408, 413, 422, 503):
                m.observe(method, path, status, 0.0001 * (i + 1) * (status - 199))
    for endpoint in ("/predict", "/predict/batch", "/explain"):
        m.answered(endpoint, [">50K", "<=50K"])
    m.reject([{"loc": ("body", f), "type": t} for f in [*FEATURES, "unknown"] for t in REASONS])
    return m


def render_ms(m: Monitor, n: int = 300) -> tuple[float, int]:
    "Median milliseconds of one exposition, over `n` renders; and the page's size in lines."
    page, times = m.exposition(), []
    for _ in range(n):
        t = time.perf_counter()
        m.exposition()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, page.count(b"\n")


def scrape_flat_out(url: str, stop: threading.Event, counter: list) -> None:
    while not stop.is_set():
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
        counter[0] += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", help="a model folder (default: a toy model, written to a temporary folder)")
    ap.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--load-core", type=int, default=1)
    a = ap.parse_args()
    ms, lines = render_ms(busy_monitor())
    print(f"| one scrape, in process ({lines} lines) | {ms:.3f} ms |")
    tmp = Path(tempfile.mkdtemp(prefix="bench_metrics_"))
    model_dir = Path(a.model_dir) if a.model_dir else toy_model_folder(tmp / "model")
    env = os.environ | {"CENSUS_MODEL_DIR": str(model_dir.resolve()), "CENSUS_THREADS": "1"}
    port = free_port()
    server, _ = start_server("census_income.api:app", port, a.server_core, env)
    base, one = f"http://127.0.0.1:{port}", json.dumps(EXAMPLE).encode()
    try:
        for path in ROUTES:  # fill the page as `busy_monitor` does, with real requests
            try:
                urllib.request.urlopen(base + path, timeout=5).read()
            except OSError:
                pass
        wrk(f"{base}/predict", one, 1, 2, a.load_core, tmp)  # warm-up
        alone, scraped, scrapes = [], [], []
        for _ in range(a.runs):
            alone.append(wrk(f"{base}/predict", one, 1, a.seconds, a.load_core, tmp))
            stop, counter = threading.Event(), [0]
            scraper = threading.Thread(target=scrape_flat_out, args=(f"{base}/metrics", stop, counter))
            scraper.start()
            scraped.append(wrk(f"{base}/predict", one, 1, a.seconds, a.load_core, tmp))
            stop.set()
            scraper.join()
            scrapes.append(counter[0] / a.seconds)
    finally:
        server.terminate()
        server.wait()
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("p50", "p99", "rps")}
           for k, rs in (("alone", alone), ("scraped", scraped))}
    print(f"| POST /predict alone, 1 connection: p50, p99, req/s | {med['alone']['p50']:.2f} ms, "
          f"{med['alone']['p99']:.2f} ms, {med['alone']['rps']:,.0f} |")
    print(f"| POST /predict while /metrics is scraped flat out ({statistics.median(scrapes):,.0f} scrapes/s) | "
          f"{med['scraped']['p50']:.2f} ms, {med['scraped']['p99']:.2f} ms, {med['scraped']['rps']:,.0f} |")


if __name__ == "__main__":
    print(blas_line())
    main()
