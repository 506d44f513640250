"""Why the slice intervals use a vectorised bootstrap rather than fairlearn's `MetricFrame(n_boot=...)`.

Times, on the test split (or any CSV with the census columns and the label), fairlearn's own
bootstrap for a few resamples of one feature, and the vectorised one of census_income.slices
for all resamples of every categorical feature; prints a table with the extrapolated cost of
fairlearn's for the pipeline's settings. Predictions come from a seeded random rule, so no
trained model is needed; the cost does not depend on them.

    python benchmarks/bench_slices.py [--csv data/test.csv] [--n-boot 1000]
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

from census_income.metrics import percentile_ci, rates_from_counts
from census_income.schema import CATEGORICAL, LABEL
from census_income.slice_stats import bootstrap_weights, group_counts

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from testkit import fairlearn_metrics  # noqa: E402  (testkit.py at the repo root: the slice metrics as fairlearn + scikit-learn compute them)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default="data/test.csv")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--fairlearn-boot", type=int, default=10, help="resamples actually run with fairlearn (then extrapolated)")
    args = ap.parse_args()
    df = pd.read_csv(args.csv, keep_default_na=False)
    y = (df[LABEL] == ">50K").to_numpy().astype(int)
    pred = np.where(np.random.default_rng(0).random(len(y)) < 0.85, y, 1 - y)
    rows, fairlearn = [], fairlearn_metrics()

    started = time.perf_counter()
    for f in CATEGORICAL:
        assert len(MetricFrame(metrics=fairlearn, y_true=y, y_pred=pred, sensitive_features=df[f].astype(str)).by_group) > 1
    rows.append(("MetricFrame point estimates, all features", 1, time.perf_counter() - started))

    started = time.perf_counter()
    w = bootstrap_weights(len(y), args.n_boot, 42)
    for f in CATEGORICAL:
        values, codes = np.unique(df[f].astype(str), return_inverse=True)
        boot = rates_from_counts(*group_counts(y, pred, codes, len(values), w))
        percentile_ci(boot["f1"], 0.95)
    vec = time.perf_counter() - started
    rows.append(("vectorised bootstrap, all features", args.n_boot, vec))

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MetricFrame(metrics=fairlearn, y_true=y, y_pred=pred, sensitive_features=df["education"].astype(str),
                    n_boot=args.fairlearn_boot, ci_quantiles=[0.025, 0.975], random_state=42)
    fl = time.perf_counter() - started
    rows.append(("fairlearn MetricFrame(n_boot), education only", args.fairlearn_boot, fl))
    per = fl / args.fairlearn_boot
    rows.append(("fairlearn, extrapolated to all features", args.n_boot, per * args.n_boot * len(CATEGORICAL)))

    print(f"{len(y)} rows, {len(CATEGORICAL)} features")
    print(f"{'what':52} {'resamples':>9} {'seconds':>9}")
    for what, n, s in rows:
        print(f"{what:52} {n:9d} {s:9.2f}")
    print(f"speed-up of the vectorised bootstrap: {per * args.n_boot * len(CATEGORICAL) / vec:,.0f}x")


if __name__ == "__main__":
    print(blas_line())
    main()
