"""Time a full `dvc repro` from a clean state: default params (tuning included), and with tuning skipped.

Run from the repo root: `.venv/bin/python benchmarks/bench_pipeline.py`. Each run uses a fresh scratch copy
of the repo (no DVC cache, no outputs), as a fresh clone would. Targets on 2 cores: tuning skipped < 2 min,
default tuning budget < 4 min (issue 23).
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

from testkit import copy_repo, run, set_params  # noqa: E402  (testkit.py at the repo root, shared with the tests)


def timed_repro(skip_tuning: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        repo = copy_repo(Path(d))
        if skip_tuning:
            set_params(repo, tune={"enabled": False})
        start = time.perf_counter()
        run(["dvc", "repro"], repo, timeout=3600)
        return time.perf_counter() - start


if __name__ == "__main__":
    print(blas_line())
    rows = [("tuning skipped", timed_repro(True), 120), ("default params (tuning on)", timed_repro(False), 240)]
    print("| dvc repro from a clean copy | seconds | target | met |\n| --- | ---: | ---: | --- |")
    for name, secs, target in rows:
        print(f"| {name} | {secs:.1f} | < {target} | {'yes' if secs < target else 'NO'} |")
