"""Test-split quality of the MLP and the baselines over 3 training seeds (mean, spread).

Run from the repo root after the pipeline: `.venv/bin/python benchmarks/quality_seeds.py [seeds...]`.
Each seed reruns the pipeline's own train stage (`census_income.train.run_train`) with `train.seed` changed and
its outputs sent to a temporary folder: the split, the encoder and the tuned params are the pipeline's
(data/train.csv, data/test.csv, model/encoder.json, model/best_params.json); the seed changes the dev split,
the initial weights, dropout, batch order and the boosting model's seed.
Targets: ROC AUC >= 0.92 and F1 (>50K) >= 0.70, mean over 3 seeds.
"""

import sys
import tempfile

import pandas as pd

from census_income.pipeline import load_params
from census_income.train import run_train

if __name__ == "__main__":
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    params = load_params("params.yaml")
    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            run = run_train(params | {"train": params["train"] | {"seed": seed},
                                      "paths": params["paths"] | {"model_dir": f"{d}/model", "metrics_dir": f"{d}/metrics"}})
        rows.append({"model": "mlp", "seed": seed} | run["test"])
        rows += [{"model": name, "seed": seed} | m for name, m in run["baselines"].items()]
    df = pd.DataFrame(rows)
    cols = ["roc_auc", "f1", "accuracy", "precision", "recall"]
    print(f"params: {run['params']}\nper seed:\n{df[['model', 'seed', *cols, 'threshold']].round(4).to_string(index=False)}\n")
    print("| model | " + " | ".join(cols) + " |\n| --- |" + " ---: |" * len(cols))
    for name, g in df.groupby("model", sort=False):
        cells = [f"{g[c].mean():.4f} ± {g[c].std(ddof=0):.4f} (min {g[c].min():.4f})" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    mlp = df[df.model == "mlp"]
    print(f"\ntargets: mean ROC AUC {mlp.roc_auc.mean():.4f} >= 0.92: {mlp.roc_auc.mean() >= 0.92}; "
          f"mean F1 {mlp.f1.mean():.4f} >= 0.70: {mlp.f1.mean() >= 0.70}")
