"""Every cheaper candidate tried for the served model (issue 23): cost per row, and test-split quality over seeds.

Run from the repo root after the pipeline: `.venv/bin/python benchmarks/candidates.py [--cost-only] [seeds...]`
(cost: seconds; quality: about 5 minutes per seed on one core). The split, the encoder and the tuned params are the
pipeline's. The candidates:

- **fewer members**: the first k members of the train stage's ensemble (`train_ensemble`), k = 1, 2, 3 and all 5,
  their mean logit with the ensemble's out-of-fold threshold;
- **distilled students** (`train_student`, exactly as the train stage makes the served one) of several shapes, and the
  student taught by the labels and the ensemble's out-of-fold probabilities alone (`transfer: 0`, no synthetic rows).

Cost is measured first, on networks of each shape as initialised (the cost of a row does not depend on the weights),
each packaged and loaded as the API loads it: microseconds per row of the numpy engine (`Network.forward`) on 10,000
test rows and on one record (best of 7 repeats), and multiply-adds per row (`Network.multiply_adds`). One thread.
"""

import sys

from census_income.cpu import exec_pinned

exec_pinned([sys.executable, *sys.orig_argv[1:]])  # trains as the pipeline does: the pinned CPU kernels, one thread

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from machine import blas_line  # noqa: E402  (benchmarks/machine.py)

from census_income.config import HyperParams  # noqa: E402
from census_income.explain import typical_record  # noqa: E402
from census_income.features import load_encoder  # noqa: E402
from census_income.fileio import read_clean  # noqa: E402
from census_income.model import IncomeEnsemble, IncomeMLP, seed_everything  # noqa: E402
from census_income.pipeline import load_params  # noqa: E402
from census_income.schema import CONTINUOUS  # noqa: E402
from census_income.train import measure_served, package_model, train_ensemble, train_student  # noqa: E402

K_MEMBERS = (1, 2, 3, 5)
SHAPES = ((3, 64, 4), (2, 64, 4), (2, 32, 4), (4, 122, 4), (3, 64, 0))  # (depth, hidden, transfer) of the students


def best_of(f, repeats: int = 7) -> float:
    "The fastest of `repeats` calls, in seconds."
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def costs(params, hp: HyperParams, encoder, test: pd.DataFrame) -> pd.DataFrame:
    "Microseconds per row (10,000 rows, and one record) and multiply-adds per row, for every candidate's shape."
    paths, rows = params.paths, []
    X = encoder.transform(test.iloc[:10_000])
    one = X[:1]
    shapes = [(f"ensemble of {k}", hp.depth, hp.hidden, k) for k in K_MEMBERS]
    shapes += [(f"student {d}x{h}", d, h, 1) for d, h in sorted({(d, h) for d, h, _ in SHAPES})]
    for name, depth, hidden, k in shapes:
        seed_everything(0)
        arch = hp.model_dump() | {"depth": depth, "hidden": hidden}
        nets = [IncomeMLP(encoder.n_onehot, len(CONTINUOUS), **{a: arch[a] for a in
                ("n_frequencies", "sigma", "d_embedding", "depth", "hidden", "dropout")}) for _ in range(k)]
        _, served = package_model(IncomeEnsemble(nets, 1.0), paths.encoder_json, 0.5, arch, None, paths.reference_json)
        rows.append({"candidate": name, "networks": k, "multiply_adds": served.net.multiply_adds,
                     "us_per_row_10k": 1e6 * best_of(lambda n=served.net: n.forward(X)) / len(X),
                     "us_one_record": 1e6 * best_of(lambda n=served.net: n.forward(one), 200)})
    return pd.DataFrame(rows)


def quality(params, hp: HyperParams, encoder, train, test, seed: int) -> list[dict]:
    "Every candidate trained with this seed, scored on the test split by the served engine."
    cfg = params.train.model_copy(update={"seed": seed})
    paths, rows = params.paths, []
    ensemble = train_ensemble(train, encoder, hp, cfg, progress=False)

    def score(name, model, threshold, made_by):
        _, served = package_model(model, paths.encoder_json, threshold, made_by, typical_record(train),
                                  paths.reference_json)
        rows.append({"candidate": name, "seed": seed} | measure_served(served, {"threshold": threshold}, test)["test"])

    for k in K_MEMBERS:
        score(f"ensemble of {k}", IncomeEnsemble(list(ensemble["model"].members[:k]), 1.0), ensemble["threshold"], hp.model_dump())
    for depth, hidden, transfer in SHAPES:
        c = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"depth": depth, "hidden": hidden, "transfer": transfer})})
        student = train_student(train, encoder, hp, c, ensemble, progress=False)
        name = f"student {depth}x{hidden}" + ("" if transfer else ", no synthetic rows")
        score(name, student["model"], student["threshold"], student["hp"].model_dump())
        print(f"seed {seed}: {name}: ROC AUC {rows[-1]['roc_auc']:.4f}, F1 {rows[-1]['f1']:.4f}, ECE {rows[-1]['ece']:.4f}",
              flush=True)
    return rows


if __name__ == "__main__":
    print(blas_line())
    args = sys.argv[1:]
    cost_only = "--cost-only" in args
    seeds = [int(s) for s in args if s != "--cost-only"] or [0, 1, 2]
    params = load_params("params.yaml")
    hp = HyperParams.model_validate(json.loads(Path(params.paths.best_params_json).read_text())["params"])
    encoder = load_encoder(params.paths.encoder_json)
    train, test = read_clean(params.paths.train_csv), read_clean(params.paths.test_csv)
    cost = costs(params, hp, encoder, test)
    print("\n| candidate | networks | multiply-adds per row | µs per row (10,000 rows) | µs per record (one) |\n|---|---:|---:|---:|---:|")
    for r in cost.itertuples():
        print(f"| {r.candidate} | {r.networks} | {r.multiply_adds:,} | {r.us_per_row_10k:.2f} | {r.us_one_record:.1f} |")
    if cost_only:
        sys.exit(0)
    rows = [r for seed in seeds for r in quality(params, hp, encoder, train, test, seed)]
    df = pd.DataFrame(rows)
    cols = ["roc_auc", "f1", "accuracy", "ece", "brier"]
    print(f"\nper seed:\n{df[['candidate', 'seed', *cols, 'threshold']].round(4).to_string(index=False)}\n")
    print(f"| candidate ({len(seeds)} seeds) | " + " | ".join(cols) + " |\n| --- |" + " ---: |" * len(cols))
    for name, g in df.groupby("candidate", sort=False):
        print(f"| {name} | " + " | ".join(f"{g[c].mean():.4f} ± {g[c].std(ddof=0):.4f}" for c in cols) + " |")
