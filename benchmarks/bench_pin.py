"""What pinning the CPU kernels to AVX2 costs in training time (census_income.cpu), measured in one run on one machine.

The same network (the tuned shape in model/best_params.json, else tune.stored) trains for a fixed number of epochs
on the training split (data/train.csv, model/encoder.json: run `make pipeline` or `dvc repro preprocess` first),
in alternating processes: pinned (what every stage runs) and on this CPU's own kernels (`CENSUS_CPU_PIN=off`).
Each process prints its seconds; the ratio pinned ÷ own is the cost. On a CPU without AVX-512 both are the same
path and the ratio is 1 within noise.

    .venv/bin/python benchmarks/bench_pin.py [--epochs 3] [--pairs 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import blas_line  # noqa: E402

TRAIN = r"""
import json, sys, time
from census_income.cpu import exec_pinned
exec_pinned([sys.executable, *sys.orig_argv[1:]])
import torch
from census_income.config import HyperParams, load_params
from census_income.features import load_encoder
from census_income.fileio import read_clean
from census_income.model import fit_mlp
from census_income.schema import LABEL
params = load_params("params.yaml")
best = json.loads(open(params.paths.best_params_json).read())["params"] if len(sys.argv) < 3 else None
hp = HyperParams(**best) if best else params.tune.stored
enc = load_encoder(params.paths.encoder_json)
rows = read_clean(params.paths.train_csv)
X, y = enc.transform(rows), enc.encode_label(rows[LABEL])
cut = int(0.8 * len(X))
t0 = time.perf_counter()
fit_mlp(X[:cut], y[:cut], X[cut:], y[cut:], enc.n_onehot, hp, max_epochs=int(sys.argv[1]), patience=1000, seed=0,
        progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def train(epochs: int, pinned: bool) -> dict:
    from census_income.cpu import SWITCH, without_pins

    env = without_pins(os.environ) | ({} if pinned else {SWITCH: "off"})
    args = [sys.executable, "-c", TRAIN, str(epochs)]
    if not (ROOT / "model" / "best_params.json").is_file():
        args.append("stored")
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=3, help="alternating pinned/own pairs (the median is reported)")
    args = ap.parse_args()
    print(blas_line())
    runs = {"pinned": [], "own": []}
    caps = {}
    for _ in range(args.pairs):
        for name in ("pinned", "own"):
            r = train(args.epochs, name == "pinned")
            runs[name].append(r["seconds"])
            caps[name] = r["capability"]
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"training {args.epochs} epochs of one network, median of {args.pairs}: pinned ({caps['pinned']}) "
          f"{med['pinned']:.1f} s, this CPU's own kernels ({caps['own']}) {med['own']:.1f} s; "
          f"pinned / own = {med['pinned'] / med['own']:.2f} (the cost of the same model on any x86-64 CPU)")


if __name__ == "__main__":
    main()
