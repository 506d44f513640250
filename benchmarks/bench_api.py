"""Load test of the API with wrk: the framework's ceiling, POST /predict, POST /predict/batch, the V2 infer route, start-up, memory.

The cost of monitoring is measured in the same run: a second app with CENSUS_METRICS=false answers /predict
alternately with the instrumented one (target: instrumented >= 95% of uninstrumented throughput, issue 15).

One uvicorn worker (httptools + uvloop, no access log) pinned to one core with `taskset`, wrk pinned to the
other. Every throughput number is the median of `--runs` runs; the ceiling (`bench_api_ceiling.py`, the same
validation without a model) is measured in the same run as /predict, alternating, so the ratio is fair on a
noisy machine. Prints a markdown table.

Run from the repo root after the pipeline (needs `wrk`: `apt-get install -y wrk`):

    .venv/bin/python benchmarks/bench_api.py --model-dir model --data data/test.csv

The ceiling's second route (`/plain`) does the same work served as /predict is (Starlette's request handler, not
FastAPI's: `census_income.serving.deps.served_plainly`); /predict against it is printed too, without a target.

Targets (issue 33): /predict >= 90% of the ceiling at 16 connections, median of 5 alternated runs (`--runs 5`); V2's
one-record infer >= 0.8 of /predict's rate. Targets (issue 5): /predict >= 70% of the ceiling with p99 < 15 ms; batches of 1,000
records >= 100,000 records/s; start-up to first answer < 2 s; RSS < 300 MiB; a 60 s run at 16
connections with zero errors and RSS at the end within 10% of after warm-up.
"""

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

from census_income.network import MANIFEST
from census_income.schema import CATEGORICAL, FEATURES
from census_income.schema import CONTINUOUS as NUMBERS
from census_income.validation import EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
sys.path.insert(1, str(ROOT))
from testkit import free_port, procfile_flags  # noqa: E402  (testkit.py at the repo root; the Procfile's uvicorn flags)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def post(url: str, body: bytes, timeout: float = 5) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()
        return resp.status


def start_server(app: str, port: int, core: int, env: dict, app_dir: str = ".") -> tuple[subprocess.Popen, float]:
    "Start uvicorn pinned to `core`, with the Procfile's flags; return the process and the seconds until it answered a POST /predict."
    cmd = ["taskset", "-c", str(core), str(VENV_BIN / "uvicorn"), app, "--app-dir", app_dir, "--host", "127.0.0.1",
           "--port", str(port), *procfile_flags(), "--log-level", "warning", "--workers", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    body = json.dumps(EXAMPLE).encode()
    while True:
        if time.perf_counter() - t0 > 60:
            proc.kill()
            raise RuntimeError(f"{app} did not answer POST /predict with 200 within 60 s")
        if proc.poll() is not None:
            raise RuntimeError(f"{app} exited: {proc.stderr.read().decode()}")
        try:
            if post(f"http://127.0.0.1:{port}/predict", body, timeout=1) == 200:
                return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.005)


def wrk(url: str, body: bytes, conns: int, seconds: int, core: int, tmp: Path) -> dict:
    "One wrk run posting `body`; requests/s, p50/p99 in ms, and the count of errors."
    (tmp / "body.json").write_bytes(body)
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{tmp / "body.json"}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    out = subprocess.run(["taskset", "-c", str(core), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50%"), "p99": ms("99%"),
            "errors": errors}


def median_runs(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")} | {
        "errors": sum(r["errors"] for r in runs)}


def batch_body(data: Path, n: int) -> bytes:
    "The first n records of a census CSV as a JSON list."
    with open(data, newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            row = {k.strip(): v.strip() for k, v in row.items() if k.strip() != "salary"}
            rows.append({k: int(v) if k in NUMBERS else v for k, v in row.items()})
            if len(rows) == n:
                break
    return json.dumps(rows).encode()


def v2_body(records: list[dict]) -> bytes:
    "The records as an Open Inference Protocol request in JSON: one input tensor per census attribute."
    return json.dumps({"inputs": [{"name": c, "shape": [len(records)], "datatype": "BYTES" if c in CATEGORICAL else "INT64",
                                   "data": [r[c] for r in records]} for c in FEATURES]}).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="model")
    ap.add_argument("--data", default="data/test.csv", help="census CSV the batch records come from")
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--soak", type=int, default=60, help="length of the memory/error run at 16 connections")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--load-core", type=int, default=1)
    a = ap.parse_args()
    how = {"wrk": "wrk (apt-get install -y wrk)", "taskset": "taskset (util-linux)"}  # the tools it runs, and their source
    if missing := [t for t in how if shutil.which(t) is None]:  # before any server starts
        sys.exit(f"bench_api.py: {' and '.join(missing)} not found on PATH: install {' and '.join(map(how.get, missing))}, "
                 "then run it again")
    env = os.environ | {"CENSUS_MODEL_DIR": str(Path(a.model_dir).resolve()), "CENSUS_THREADS": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="bench_api_"))
    one, many = json.dumps(EXAMPLE).encode(), batch_body(Path(a.data), a.batch_size)
    ports = {"ceiling": free_port(), "predict": free_port(), "no_metrics": free_port()}
    starts = []
    for _ in range(a.runs):  # start-up time: a fresh process each time, median
        proc, secs = start_server("census_income.api:app", ports["predict"], a.server_core, env)
        starts.append(secs)
        proc.terminate()
        proc.wait()
    ceiling, _ = start_server("bench_api_ceiling:app", ports["ceiling"], a.server_core, env, app_dir="benchmarks")
    server, _ = start_server("census_income.api:app", ports["predict"], a.server_core, env)
    bare, _ = start_server("census_income.api:app", ports["no_metrics"], a.server_core, env | {"CENSUS_METRICS": "false"})
    try:
        url = {k: f"http://127.0.0.1:{p}/predict" for k, p in ports.items()}
        url["plain"] = f"http://127.0.0.1:{ports['ceiling']}/plain"  # the ceiling's work, served as /predict is
        for name in ("ceiling", "plain", "predict", "no_metrics"):  # warm-up
            wrk(url[name], one, 16, 3, a.load_core, tmp)
        rss_warm = rss_mib(server.pid)
        rows, results = [], {}
        for conns in (16, 1):
            runs = {"ceiling": [], "plain": [], "predict": [], "no_metrics": []}
            for _ in range(a.runs):
                for name in runs:
                    runs[name].append(wrk(url[name], one, conns, a.seconds, a.load_core, tmp))
            for name, rs in runs.items():
                results[(name, conns)] = median_runs(rs)
        wrk(url["predict"] + "/batch", many, 2, 3, a.load_core, tmp)  # warm-up
        batch = median_runs([wrk(url["predict"] + "/batch", many, 2, a.seconds, a.load_core, tmp) for _ in range(a.runs)])
        v2 = url["predict"].replace("/predict", "/v2/models/census-income/infer")
        v2_one, v2_many = v2_body([EXAMPLE]), v2_body(json.loads(many))
        wrk(v2, v2_one, 16, 3, a.load_core, tmp)  # warm-up
        v2_runs = {(1, 16): median_runs([wrk(v2, v2_one, 16, a.seconds, a.load_core, tmp) for _ in range(a.runs)]),
                   (a.batch_size, 2): median_runs([wrk(v2, v2_many, 2, a.seconds, a.load_core, tmp) for _ in range(a.runs)])}
        soak = wrk(url["predict"], one, 16, a.soak, a.load_core, tmp)
        rss_end = rss_mib(server.pid)
    finally:
        for proc in (ceiling, server, bare):
            proc.terminate()
            proc.wait()
    c16 = results[("ceiling", 16)]["rps"]
    arch = json.loads((Path(a.model_dir) / MANIFEST).read_text())
    shape = f"{arch['version']}, {arch['architecture']['depth']}×{arch['architecture'].get('hidden', '?')} hidden"
    print(f"\nwrk {a.seconds} s runs, median of {a.runs}; uvicorn 1 worker on core {a.server_core}, wrk -t1 on core "
          f"{a.load_core}; model {a.model_dir} ({shape}); load average before: {os.getloadavg()[0]:.2f}\n")
    print("| endpoint | connections | requests/s | records/s | p50 ms | p99 ms | errors | vs ceiling |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (name, conns), r in results.items():
        label = {"ceiling": "ceiling (no model, same validation)", "predict": "POST /predict",
                 "plain": "ceiling served as /predict is (Starlette's handler)",
                 "no_metrics": "POST /predict, CENSUS_METRICS=false"}[name]
        ratio = f"{r['rps'] / results[('ceiling', conns)]['rps']:.0%}"
        rows.append(f"| {label} | {conns} | {r['rps']:,.0f} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                    f"{r['errors']} | {ratio} |")
    rows.append(f"| POST /predict/batch ({a.batch_size} records) | 2 | {batch['rps']:,.1f} | "
                f"{batch['rps'] * a.batch_size:,.0f} | {batch['p50']:.2f} | {batch['p99']:.2f} | {batch['errors']} | |")
    for (n, conns), r in v2_runs.items():
        rows.append(f"| POST /v2/models/census-income/infer ({n:,} record{'s' if n > 1 else ''}, JSON) | {conns} | "
                    f"{r['rps']:,.1f} | {r['rps'] * n:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} | "
                    f"{'' if n > 1 else format(r['rps'] / c16, '.0%')} |")
    print("\n".join(rows))
    print("\n| measure | value | target |\n| --- | ---: | --- |")
    p16, v16 = results[("predict", 16)]["rps"], v2_runs[(1, 16)]["rps"]
    print(f"| /predict ÷ ceiling at 16 connections (median of {a.runs} alternated runs) | {p16 / c16:.0%} "
          f"({p16:,.0f} ÷ {c16:,.0f} req/s) | ≥ 90% (issue 33; issue 5: ≥ 70%) |")
    plain16 = results[("plain", 16)]["rps"]
    print(f"| /predict ÷ the ceiling served as /predict is, 16 connections: the model's and the app's own cost | "
          f"{p16 / plain16:.0%} ({p16:,.0f} ÷ {plain16:,.0f} req/s) | |")
    print(f"| V2 one-record infer ÷ /predict at 16 connections | {v16 / p16:.2f} ({v16:,.0f} ÷ {p16:,.0f} req/s) | "
          f"≥ 0.8 (issue 33) |")
    for conns in (16, 1):
        print(f"| /predict with metrics ÷ without, {conns} connection(s) | "
              f"{results[('predict', conns)]['rps'] / results[('no_metrics', conns)]['rps']:.1%} | ≥ 95% |")
    print(f"| start-up to first answered POST /predict (median of {a.runs}) | {statistics.median(starts):.2f} s | < 2 s |")
    print(f"| RSS after warm-up | {rss_warm:.0f} MiB | < 300 MiB |")
    print(f"| {a.soak} s at 16 connections: requests/s, p99, errors | {soak['rps']:,.0f}, {soak['p99']:.2f} ms, "
          f"{soak['errors']} | 0 errors |")
    print(f"| RSS at the end of it | {rss_end:.0f} MiB ({(rss_end - rss_warm) / rss_warm:+.1%}) | within 10% |")


if __name__ == "__main__":
    print(blas_line())
    main()
