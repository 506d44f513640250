"""Test-split quality of the MLP and the baselines over 3 training seeds (mean, spread).

Run from the repo root after the pipeline: `.venv/bin/python benchmarks/quality_seeds.py [seeds...]`.
The split and the encoder are the pipeline's (data/train.csv, data/test.csv, model/encoder.json); each seed
changes the dev split, the initial weights, dropout and batch order, and the boosting model's seed.
The MLP uses model/best_params.json. Targets: ROC AUC >= 0.92 and F1 (>50K) >= 0.70, mean over 3 seeds.
"""

import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from census_income.features import load_encoder
from census_income.model import binary_metrics, predict_proba
from census_income.schema import LABEL
from census_income.train import fit_baselines, train_model

if __name__ == "__main__":
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    p = yaml.safe_load(Path("params.yaml").read_text())["train"]
    train = pd.read_csv("data/train.csv", keep_default_na=False)
    test = pd.read_csv("data/test.csv", keep_default_na=False)
    encoder = load_encoder("model/encoder.json")
    params = json.loads(Path("model/best_params.json").read_text())["params"]
    X_test, y_test = encoder.transform(test), encoder.encode_label(test[LABEL])
    rows = []
    for seed in seeds:
        run = train_model(train, encoder, params, p["dev_size"], p["max_epochs"], p["patience"], seed, progress=False)
        rows.append({"model": "mlp", "seed": seed} | binary_metrics(y_test, predict_proba(run["model"], X_test), run["threshold"]))
        for name, m in fit_baselines(run["fit_rows"], run["dev"], test, encoder, seed).items():
            rows.append({"model": name, "seed": seed} | m)
    df = pd.DataFrame(rows)
    cols = ["roc_auc", "f1", "accuracy", "precision", "recall"]
    print(f"params: {params}\nper seed:\n{df[['model', 'seed', *cols, 'threshold']].round(4).to_string(index=False)}\n")
    print("| model | " + " | ".join(cols) + " |\n| --- |" + " ---: |" * len(cols))
    for name, g in df.groupby("model", sort=False):
        cells = [f"{g[c].mean():.4f} ± {g[c].std(ddof=0):.4f} (min {g[c].min():.4f})" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    mlp = df[df.model == "mlp"]
    print(f"\ntargets: mean ROC AUC {mlp.roc_auc.mean():.4f} >= 0.92: {mlp.roc_auc.mean() >= 0.92}; "
          f"mean F1 {mlp.f1.mean():.4f} >= 0.70: {mlp.f1.mean() >= 0.70}")
