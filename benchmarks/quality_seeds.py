"""Test-split quality of the MLP, of each of its ingredients alone, and of the baselines, over 3 seeds (mean, spread).

Run from the repo root after the pipeline: `.venv/bin/python benchmarks/quality_seeds.py [seeds...]` (about 4 minutes
per seed on 2 cores). Each seed reruns the pipeline's own train stage (`census_income.train.run_train`) twice with
`train.seed` changed and its outputs sent to a temporary folder: once with the tuned params (periodic embeddings), once
with the same params but `n_frequencies: 0` (the numbers fed in as they are). The split, the encoder and the tuned
params are the pipeline's (data/train.csv, data/test.csv, model/encoder.json, model/best_params.json); the seed changes
the folds, the initial weights, dropout, batch order and the boosting model's seed. From the two runs:

| row | embeddings | ensemble | calibration |
| --- | --- | --- | --- |
| plain MLP (one member) | no | no | no |
| + calibration alone | no | no | yes |
| + ensemble alone | no | yes | no |
| + embeddings alone | yes | no | no |
| the served model | yes | yes | yes |

"One member" is the first fold's member (trained on 80% of the training split, early-stopped on the other 20%), its
threshold chosen on the out-of-fold predictions of its run. Targets (issue 12): ROC AUC at least the gradient-boosting
baseline's of the same run and >= 0.932, F1 (>50K) >= 0.74, ECE <= 0.02 after calibration, means over 3 seeds.
"""

import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

from census_income.pipeline import load_params
from census_income.train import run_train


def train_once(params: dict, seed: int, hp: dict, folder: str, baselines: bool) -> dict:
    best = Path(folder, "best_params.json")
    best.write_text(json.dumps({"params": hp}))
    paths = params["paths"] | {"model_dir": f"{folder}/model", "metrics_dir": f"{folder}/metrics", "best_params_json": str(best)}
    return run_train(params | {"train": params["train"] | {"seed": seed, "baselines": baselines}, "paths": paths})


if __name__ == "__main__":
    print(blas_line())
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    params = load_params("params.yaml")
    hp = json.loads(Path(params["paths"]["best_params_json"]).read_text())["params"]
    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            emb = train_once(params, seed, hp, d, baselines=True)
        with tempfile.TemporaryDirectory() as d:
            plain = train_once(params, seed, hp | {"n_frequencies": 0}, d, baselines=False)
        variants = {
            "plain MLP (one member)": plain["comparison"]["first_member"]["uncalibrated"],
            "+ calibration alone": plain["comparison"]["first_member"]["calibrated"],
            "+ ensemble alone": plain["calibration"]["test"]["before"],
            "+ embeddings alone": emb["comparison"]["first_member"]["uncalibrated"],
            "embeddings + ensemble (uncalibrated)": emb["calibration"]["test"]["before"],
            "served: embeddings + ensemble + calibration": emb["test"],
        } | {f"baseline: {name}": m for name, m in emb["baselines"].items()}
        rows += [{"model": name, "seed": seed} | m for name, m in variants.items()]
        gap = emb["comparison"]["auc_gap"]["hist_gradient_boosting"]
        print(f"seed {seed}: served ROC AUC {emb['test']['roc_auc']:.4f}, gap to gradient boosting {gap['gap']:+.4f} "
              f"[{gap['low']:+.4f}, {gap['high']:+.4f}], temperature {emb['calibration']['temperature']:.3f}, "
              f"{emb['seconds']:.0f} s to train", flush=True)
    df = pd.DataFrame(rows)
    cols = ["roc_auc", "f1", "accuracy", "ece", "brier", "log_loss"]
    print(f"\nparams: {hp}\nper seed:\n{df[['model', 'seed', *cols, 'threshold']].round(4).to_string(index=False)}\n")
    print("| model | " + " | ".join(cols) + " |\n| --- |" + " ---: |" * len(cols))
    for name, g in df.groupby("model", sort=False):
        cells = [f"{g[c].mean():.4f} ± {g[c].std(ddof=0):.4f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    served = df[df.model == "served: embeddings + ensemble + calibration"]
    hgb = df[df.model == "baseline: hist_gradient_boosting"]
    checks = {
        "mean ROC AUC >= gradient boosting's": served.roc_auc.mean() >= hgb.roc_auc.mean(),
        "mean ROC AUC >= 0.932": served.roc_auc.mean() >= 0.932,
        "mean F1 >= 0.74": served.f1.mean() >= 0.74,
        "mean ECE <= 0.02": served.ece.mean() <= 0.02,
    }
    print(f"\nserved: ROC AUC {served.roc_auc.mean():.4f} (gradient boosting {hgb.roc_auc.mean():.4f}), F1 {served.f1.mean():.4f}, "
          f"ECE {served.ece.mean():.4f}")
    print("targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()))
