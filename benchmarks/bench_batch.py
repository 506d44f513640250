"""Speed and memory of batch scoring (`census_income.batch.score_csv`) on generated census files of growing size.

Each size runs in a fresh process pinned to one core; peak RSS that does not grow with the file shows that
the file is streamed. With `--papermill`, the same file is also scored through the guide's papermill command (the
notebook 07_batch: kernel start-up included), pinned to the same core. With `--peer`, the same file is scored as a
user would without this project: pandas' reader, scikit-learn's HistGradientBoostingClassifier (trained beforehand on
data/train.csv, the pipeline's training split, not timed), `predict_proba`, and the rows with their probability
written back with `to_csv`, in a fresh process on the same core with one thread. With `--dask-workers`, the same files are then scored on a Dask LocalCluster of each
number of workers (`census_income.batch.score_dask`, partitions of `--partition-bytes`). Prints markdown tables.
Run from the repo root after the pipeline:

    .venv/bin/python benchmarks/bench_batch.py --model-dir model --data data/test.csv --rows 100000 1000000
    .venv/bin/python benchmarks/bench_batch.py --rows 1000000 --dask-workers 1 2
    .venv/bin/python benchmarks/bench_batch.py --rows 1000000 --papermill --cli --peer
    .venv/bin/python benchmarks/bench_batch.py --rows 10000000 --dask-workers 1 2 --repeats 3

Every run also times pyarrow's own single-thread parse of each file (the limit of any CSV job) and prints
each target of the cost issue as a ratio of two rates measured in that run, with the rates it came from. Runs on
machines of this kind differ by a tenth from one minute to the next: `--repeats N` measures everything N times, round
after round, and takes the median of the rounds' ratios.
"""

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

from census_income.config import load_params


def generate(data: Path, rows: int, path: Path) -> None:
    "A census CSV of `rows` rows drawn from `data`, one in 200 with an unknown category."
    with open(data, newline="") as f:
        src = list(csv.reader(f))
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(src[0])
        for i in range(rows):
            row = list(rng.choice(src[1:]))
            if i % 200 == 0:
                row[8] = "Martian"
            out.writerow(row)


def drift_check(model_dir: str, encoder=None):
    "The training profile beside the model and params.yaml's drift thresholds: the job runs its drift checks, as the notebook does."
    from census_income.batch_blocks import DriftCheck
    from census_income.reference import load_reference

    return DriftCheck(load_reference(Path(model_dir) / "reference.json", encoder), load_params("params.yaml").batch.drift)


def worker(path: str, model_dir: str, chunk_bytes: int) -> None:
    "Score one file in this process; print seconds, report and peak RSS as JSON."
    from threadpoolctl import threadpool_limits

    from census_income.batch import score_csv
    from census_income.predict import Predictor

    threadpool_limits(1)
    predictor = Predictor.load(model_dir)
    check = drift_check(model_dir, predictor.encoder)
    out = Path(path).with_suffix(".scored.csv")
    t = time.perf_counter()
    report = score_csv(path, out, out.with_suffix(".rejects.csv"), predictor, chunk_bytes=chunk_bytes, check=check)
    secs = time.perf_counter() - t
    print(json.dumps(report | {"seconds": secs, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def parse_rate(path: str, repeats: int = 3) -> float:
    "Rows per second of pyarrow's CSV reader parsing the whole file on one thread (median of `repeats`): the limit."

    import pyarrow as pa
    import pyarrow.csv as pacsv

    pa.set_cpu_count(1)
    secs = []
    for _ in range(repeats):
        t = time.perf_counter()
        rows = pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False)).num_rows
        secs.append(time.perf_counter() - t)
    return rows / statistics.median(secs)


def peer(path: str, train_csv: str) -> None:
    "What a user would write instead: pandas, gradient boosting, to_csv. Print seconds (the fit not counted) as JSON."
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = pd.read_csv(train_csv)
    features = [c for c in train.columns if c != "salary"]
    cats = {c: pd.CategoricalDtype(sorted(train[c].unique())) for c in features if train[c].dtype == object or
            pd.api.types.is_string_dtype(train[c])}
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(train[features].astype(cats), train["salary"].str.strip() == ">50K")
    out = Path(path).with_suffix(".peer.csv")
    t = time.perf_counter()
    df = pd.read_csv(path, skipinitialspace=True)
    df["probability"] = model.predict_proba(df[features].astype(cats))[:, 1]
    df.to_csv(out, index=False)
    print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(df)}))


def measured_run(cmd: list, **kw) -> subprocess.CompletedProcess:
    """`subprocess.run` of one measure, once the disk has what earlier runs wrote (`os.sync`): otherwise the kernel writes
    back the gigabyte an earlier run left in memory during the next run, on the cores that run is measured on."""
    os.sync()
    return subprocess.run(cmd, **kw)


def papermill_run(path: Path, core: int) -> float:
    "Seconds of the guide's papermill command on `path`, pinned to `core` (kernel start-up included)."
    t = time.perf_counter()
    measured_run(["taskset", "-c", str(core), str(Path(sys.executable).parent / "papermill"), "-k", "python3", "--cwd", "nbs", "nbs/07_batch.ipynb",
                    str(path.with_suffix(".ipynb")), "-p", "input_path", str(path), "-p", "output_path",
                    str(path.with_suffix(".pm.csv")), "-p", "reject_path", str(path.with_suffix(".pm.rejects.csv"))],
                   capture_output=True, text=True, check=True, env=os.environ | {"OPENBLAS_NUM_THREADS": "1"})
    return time.perf_counter() - t


def cli_run(path: Path, core: int, model_dir: str) -> float:
    "Seconds of the guide's `census-batch` command on `path`, pinned to `core` (start-up included)."
    t = time.perf_counter()
    measured_run(["taskset", "-c", str(core), str(Path(sys.executable).parent / "census-batch"), str(path), "--output",
                    str(path.with_suffix(".cli.csv")), "--model-dir", model_dir], capture_output=True, text=True, check=True,
                   env=os.environ | {"OPENBLAS_NUM_THREADS": "1"})
    return time.perf_counter() - t


TARGETS = [  # (what, over what, at least): the targets, each a ratio of two rates of the same run
    ("score_csv in process", "pyarrow.csv.read_csv alone, 1 thread", 0.3),
    ("score_csv in process", "the peer (pandas + HistGradientBoosting + to_csv)", 3.0),
    ("the guide's papermill command", "the peer (pandas + HistGradientBoosting + to_csv)", 2.0),
    ("the guide's census-batch command", "the peer (pandas + HistGradientBoosting + to_csv)", 2.0),
    ("Dask, 1 worker", "score_csv in process", 0.9),  # the issue sets the two Dask targets at 10,000,000 rows
    ("Dask, 2 workers", "Dask, 1 worker", 1.6),
]


def ratios(rounds: list[dict], rows: int) -> None:
    """Print each target whose two rates were measured: the ratio, the numbers it came from, met or not. With several
    rounds, the ratio is the median of the rounds' own ratios (each of two rates measured minutes apart, not hours), each
    shown, and the rates are medians."""
    n = len(rounds)
    print(f"\n| at {rows:,} rows{f', {n} rounds' if n > 1 else ''} | rows/s | ÷ | rows/s | ratio | "
          f"{'each round | ' if n > 1 else ''}target | |\n| --- | ---: | --- | ---: | ---: | {'--- | ' if n > 1 else ''}---: | --- |")
    for what, over, target in TARGETS:
        if what in rounds[0] and over in rounds[0]:
            each = [r[what] / r[over] for r in rounds]
            r = statistics.median(each)
            print(f"| {what} | {statistics.median(x[what] for x in rounds):,.0f} | {over} | "
                  f"{statistics.median(x[over] for x in rounds):,.0f} | {r:.2f} | "
                  f"{', '.join(f'{e:.2f}' for e in each) + ' | ' if n > 1 else ''}≥ {target} | {'met' if r >= target else 'NOT met'} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="model")
    ap.add_argument("--data", default="data/test.csv")
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--chunk-bytes", type=int, help="bytes read at a time (default: batch.chunk_bytes of params.yaml)")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--dask-workers", type=int, nargs="*", default=[], help="also score on Dask with these many workers")
    ap.add_argument("--partition-bytes", type=int, default=16 << 20, help="bytes of input per Dask task")
    ap.add_argument("--papermill", action="store_true", help="also score through the guide's papermill command")
    ap.add_argument("--peer", action="store_true", help="also score with pandas + HistGradientBoostingClassifier")
    ap.add_argument("--cli", action="store_true", help="also score through the guide's census-batch command")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of every measure; each ratio is the median of the rounds' ratios")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--peer-run", help=argparse.SUPPRESS)
    ap.add_argument("--parse-run", help=argparse.SUPPRESS)
    ap.add_argument("--dask-run", nargs=3, help=argparse.SUPPRESS)  # path, rows, workers
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.model_dir, a.chunk_bytes)
    if a.peer_run:
        return peer(a.peer_run, "data/train.csv")
    if a.parse_run:
        return print(json.dumps({"rows_per_second": parse_rate(a.parse_run)}))
    if a.dask_run:
        return dask_run(Path(a.dask_run[0]), int(a.dask_run[1]), int(a.dask_run[2]), a, Path(a.dask_run[0]).parent / f"dask{a.dask_run[2]}")
    a.chunk_bytes = a.chunk_bytes or load_params("params.yaml").batch.chunk_bytes
    print(f"\nscore_csv with drift checks, blocks of {a.chunk_bytes:,} bytes, 1 BLAS thread on core {a.core}; "
          f"model {a.model_dir}\n")
    print("| rows | file MiB | seconds | rows/s | scored | rejected | peak RSS MiB |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in a.rows:
            path = Path(tmp) / f"people_{rows}.csv"
            generate(Path(a.data), rows, path)
            ratios([measure(path, rows, a) for _ in range(a.repeats)], rows)  # whole rounds, one after the other
            for p in Path(tmp).glob("people_*"):
                p.unlink()


def measure(path: Path, rows: int, a) -> dict:
    "One round of every measure asked for on one file: print a table row each, return the rates."
    proc = measured_run(["taskset", "-c", str(a.core), sys.executable, __file__, "--worker", str(path),
                           "--model-dir", a.model_dir, "--chunk-bytes", str(a.chunk_bytes)],
                          capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"| {rows:,} | {path.stat().st_size / 2**20:,.0f} | {r['seconds']:.1f} | {rows / r['seconds']:,.0f} | "
          f"{r['rows_scored']:,} | {r['rows_rejected']:,} | {r['peak_rss_mib']:.0f} |")
    rates = {"score_csv in process": rows / r["seconds"]}
    proc = measured_run(["taskset", "-c", str(a.core), sys.executable, __file__, "--parse-run", str(path)],
                          capture_output=True, text=True, check=True)
    rates["pyarrow.csv.read_csv alone, 1 thread"] = json.loads(proc.stdout.strip().splitlines()[-1])["rows_per_second"]
    print(f"| {rows:,} parsed by pyarrow alone (1 thread, median of 3) | | {rows / rates['pyarrow.csv.read_csv alone, 1 thread']:.1f} | "
          f"{rates['pyarrow.csv.read_csv alone, 1 thread']:,.0f} | | | |")
    if a.papermill:
        secs = papermill_run(path, a.core)
        rates["the guide's papermill command"] = rows / secs
        print(f"| {rows:,} through papermill (07_batch) | | {secs:.1f} | {rows / secs:,.0f} | | | |")
    if a.cli:
        secs = cli_run(path, a.core, a.model_dir)
        rates["the guide's census-batch command"] = rows / secs
        print(f"| {rows:,} through census-batch | | {secs:.1f} | {rows / secs:,.0f} | | | |")
    if a.peer:
        proc = measured_run(["taskset", "-c", str(a.core), sys.executable, __file__, "--peer-run", str(path)],
                              capture_output=True, text=True, check=True,
                              env=os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        p = json.loads(proc.stdout.strip().splitlines()[-1])
        rates["the peer (pandas + HistGradientBoosting + to_csv)"] = rows / p["seconds"]
        print(f"| {rows:,} by the peer (pandas + HistGradientBoosting) | | {p['seconds']:.1f} | "
              f"{rows / p['seconds']:,.0f} | {p['rows']:,} | | |")
    for workers in a.dask_workers:  # in a process of its own: the client's threads outlive a cluster and took
        # half of core 0 from the next single-process run (1,000,000 rows measured 26,717 rows/s, alone 48,131)
        proc = measured_run([sys.executable, __file__, "--dask-run", str(path), str(rows), str(workers),
                               "--model-dir", a.model_dir, "--chunk-bytes", str(a.chunk_bytes),
                               "--partition-bytes", str(a.partition_bytes)], capture_output=True, text=True, check=True)
        row, last = proc.stdout.strip().splitlines()[-2:]
        print(row)
        rates[f"Dask, {workers} worker{'s' if workers > 1 else ''}"] = json.loads(last)["rows_per_second"]
    return rates


def dask_run(path: Path, rows: int, workers: int, a, out: Path) -> None:
    "Score the file on a LocalCluster of `workers` processes; print one table row (start-up included)."
    from census_income.batch_dask import score_dask

    t = time.perf_counter()
    r = score_dask(str(path), out, a.model_dir, a.chunk_bytes, a.partition_bytes, n_workers=workers,
                   check=drift_check(a.model_dir))
    secs = time.perf_counter() - t
    print(f"| {rows:,} on Dask, {workers} worker(s), {r['partitions']} partitions | | {secs:.1f} | {rows / secs:,.0f} | "
          f"{r['rows_scored']:,} | {r['rows_rejected']:,} | |")
    print(json.dumps({"rows_per_second": rows / secs}))


if __name__ == "__main__":
    print(blas_line())
    main()
