"""The cost of the payload log and of a shadow model on POST /predict, and the shadow's agreement on a replayed split.

Three uvicorn processes serve the same model (`bench_api.start_server`: one worker, the Procfile's flags, pinned to
one core; wrk pinned to the other): plain, with the payload log on (CENSUS_PAYLOAD_LOG, in a temporary folder), and
with a challenger in the shadow (CENSUS_SHADOW_MODEL_DIR). wrk posts one record to each in turn, `--runs` times,
the order rotated each round; each throughput is the median of its runs, and each ratio is given both as the ratio of
the medians and as the median of each round's ratio (runs of one round are next to each other in time: on a shared,
noisy machine that pairing is the fairer of the two). Beside the throughput, the server's CPU time per request
(user and system, every thread, from /proc): on a virtual machine whose idle core sleeps, a server with a second
busy thread can answer *faster* than one without (its core never idles, so no wake-up waits), and then the CPU per
request is the honest cost: `off's CPU ÷ this CPU` is the throughput ratio a CPU-bound server would see. Targets (issue 37): log on >= 0.95 of off,
shadow >= 0.9 of without. The log's and the shadow's own counts are read from /metrics after the runs: records a
full queue dropped are said, since a dropped record costs nothing.

With `--replay CSV`, the challenger's agreement with the served model on that split: every record posted through
/predict/batch (100 at a time) to the shadow server, then its /metrics read (agreement rate, the histogram of
probability differences), and the same agreement computed in-process as a check.

    .venv/bin/python benchmarks/bench_payload.py --model-dir model --challenger CHALLENGER_DIR --replay data/test.csv
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_api import batch_body, free_port, start_server, wrk  # benchmarks/bench_api.py: the API's own measuring
from machine import blas_line
from prometheus_client.parser import text_string_to_metric_families

from census_income.features import ROW_ORDER
from census_income.predict import Predictor
from census_income.validation import EXAMPLE


def cpu_seconds(pid: int) -> float:
    "User and system CPU time of a process, all its threads."
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(proc, url: str, body: bytes, a, tmp: Path) -> dict:
    "One wrk run, with the server's CPU time per request (microseconds) beside its throughput."
    before = cpu_seconds(proc.pid)
    run = wrk(url, body, a.conns, a.seconds, a.load_core, tmp)
    return run | {"cpu_us": (cpu_seconds(proc.pid) - before) / (run["rps"] * a.seconds) * 1e6}


def metrics(port: int) -> dict:
    "Every sample of GET /metrics, keyed by (name, sorted labels)."
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def replay(port: int, data: Path, batch: int = 100) -> int:
    "Post every record of a census CSV through /predict/batch; the records posted."
    rows = json.loads(batch_body(data, 10**9))
    for k in range(0, len(rows), batch):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict/batch", data=json.dumps(rows[k:k + batch]).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
    return len(rows)


def in_process_agreement(model_dir: str, challenger: str, data: Path) -> float:
    "The same agreement, without the API: both models on the split's records."
    rows = [tuple(r[c] for c in ROW_ORDER) for r in json.loads(batch_body(data, 10**9))]
    served, shadow = Predictor.load(model_dir), Predictor.load(challenger)
    a, b = served.labels(served.predict_rows(rows)), shadow.labels(shadow.predict_rows(rows))
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(rows)


def runs_text(runs: list[dict]) -> str:
    return ", ".join(f"{r['rps']:,.0f}" for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="model")
    ap.add_argument("--challenger", required=True, help="a model folder for the shadow (a quick run's, a toy's)")
    ap.add_argument("--replay", default="", help="a census CSV to replay through the shadow server (e.g. data/test.csv)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--load-core", type=int, default=1)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_payload_"))
    base = os.environ | {"CENSUS_MODEL_DIR": str(Path(a.model_dir).resolve()), "CENSUS_THREADS": "1"}
    envs = {"off": base, "log": base | {"CENSUS_PAYLOAD_LOG": str(tmp / "payload.jsonl")},
            "shadow": base | {"CENSUS_SHADOW_MODEL_DIR": str(Path(a.challenger).resolve())}}
    ports = {name: free_port() for name in envs}
    procs = {name: start_server("census_income.api:app", ports[name], a.server_core, env)[0] for name, env in envs.items()}
    body = json.dumps(EXAMPLE).encode()
    try:
        runs = {name: [] for name in envs}
        names = list(envs)
        for k in range(a.runs):
            for name in names[k % 3:] + names[:k % 3]:  # the order rotated each round
                runs[name].append(measured(procs[name], f"http://127.0.0.1:{ports[name]}/predict", body, a, tmp))
        time.sleep(1)
        counts = {name: metrics(ports[name]) for name in ("log", "shadow")}
        agreement = None
        if a.replay:
            before = counts["shadow"]
            n = replay(ports["shadow"], Path(a.replay))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                after = metrics(ports["shadow"])
                scored = sum(after.get(("census_shadow_records_total", (("agreement", x),)), 0) -
                             before.get(("census_shadow_records_total", (("agreement", x),)), 0) for x in ("agree", "disagree"))
                if scored >= n:
                    break
                time.sleep(0.2)
            agree = after[("census_shadow_records_total", (("agreement", "agree"),))] - \
                before[("census_shadow_records_total", (("agreement", "agree"),))]
            hist = {dict(k[1])["le"]: v - before.get(k, 0) for k, v in after.items() if k[0] == "census_shadow_probability_difference_bucket"}
            agreement = {"records": n, "scored": scored, "agreement": agree / scored if scored else None,
                         "in_process": in_process_agreement(a.model_dir, a.challenger, Path(a.replay)), "histogram": hist}
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
    med = {name: statistics.median(r["rps"] for r in rs) for name, rs in runs.items()}
    p99 = {name: statistics.median(r["p99"] for r in rs) for name, rs in runs.items()}
    print(blas_line())
    print(f"POST /predict, {a.conns} connections, median of {a.runs} alternating runs of {a.seconds} s\n")
    cpu = {name: statistics.median(r["cpu_us"] for r in rs) for name, rs in runs.items()}
    print("| server | requests/s (median) | runs | p99 ms | ratio of medians | median of the rounds' ratios | "
          "server CPU µs a request | off's CPU ÷ this CPU | target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, target in (("off", ""), ("log", ">= 0.95"), ("shadow", ">= 0.9")):
        paired = statistics.median(x["rps"] / o["rps"] for x, o in zip(runs[name], runs["off"], strict=True))
        print(f"| {name} | {med[name]:,.0f} | {runs_text(runs[name])} | {p99[name]:.2f} | "
              f"{med[name] / med['off']:.3f} | {paired:.3f} | {cpu[name]:.0f} | {cpu['off'] / cpu[name]:.3f} | {target} |")
    log_c, sh_c = counts["log"], counts["shadow"]
    print(f"\npayload log: {log_c[('census_payload_records_total', (('outcome', 'written'),))]:,.0f} records written, "
          f"{log_c[('census_payload_records_total', (('outcome', 'dropped'),))]:,.0f} dropped (queue full), "
          f"{log_c[('census_payload_records_total', (('outcome', 'failed'),))]:,.0f} failed")
    scored = sum(sh_c.get(("census_shadow_records_total", (("agreement", x),)), 0) for x in ("agree", "disagree"))
    print(f"shadow under load: {scored:,.0f} records scored, "
          f"{sh_c[('census_payload_records_total', (('outcome', 'dropped'),))]:,.0f} dropped (queue full)")
    if agreement is not None:
        print(f"\nreplay of {a.replay} through /predict/batch: {agreement['records']:,} records, {agreement['scored']:,.0f} "
              f"scored by the shadow; label agreement {agreement['agreement']:.4f} (in process: {agreement['in_process']:.4f})")
        print("|shadow - served| probability, cumulative records per bound: " +
              ", ".join(f"<= {le}: {v:,.0f}" for le, v in agreement["histogram"].items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
