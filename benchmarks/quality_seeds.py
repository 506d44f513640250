"""Test-split quality of the served model, of the ensemble it was distilled from, and of the baselines, over 3 seeds.

Run from the repo root after the pipeline: `.venv/bin/python benchmarks/quality_seeds.py [seeds...]` (about 3 minutes
per seed on 2 cores). Each seed reruns the pipeline's own train stage (`census_income.train.run_train`) with
`train.seed` changed and its outputs sent to a temporary folder. The split, the encoder and the tuned params are the
pipeline's (data/train.csv, data/test.csv, model/encoder.json, model/best_params.json); the seed changes the folds, the
initial weights, dropout, batch order, the student's synthetic rows and the boosting model's seed. From each run:

| row | what |
| --- | --- |
| ensemble (reference) | the 5 members' mean logit, no temperature, threshold out of fold |
| first member alone | one member of the ensemble, trained on the labels only, the ensemble's threshold |
| student before its temperature | the served network without its temperature, its own held-out threshold |
| served: distilled student | what `train.serve` names, as the API serves it |
| baselines | logistic regression and gradient boosting on the same folds |

Targets (issue 23): the served model's mean ROC AUC within 0.0015 of the ensemble's in the same runs and >= 0.932,
F1 (>50K) >= 0.735, ECE <= 0.02, means over 3 seeds.
"""

import sys
import tempfile
from pathlib import Path

from census_income.cpu import exec_pinned

exec_pinned([sys.executable, *sys.orig_argv[1:]])  # trains as the pipeline does: on the pinned CPU kernels

import pandas as pd  # noqa: E402
from machine import blas_line  # noqa: E402  (benchmarks/machine.py; the folder of the script is on sys.path)

from census_income.pipeline import load_params  # noqa: E402
from census_income.train import run_train  # noqa: E402

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from testkit import paths_elsewhere  # noqa: E402  (testkit.py at the repo root: every output of the stage elsewhere)


def train_once(params, seed: int, folder: str) -> dict:
    "The train stage with `train.seed` set and every output in `folder`."
    inputs = ("train_csv", "test_csv", "encoder_json", "reference_json", "best_params_json")
    return run_train(params.train.model_copy(update={"seed": seed}), paths_elsewhere(params.paths, Path(folder), keep=inputs))


if __name__ == "__main__":
    print(blas_line())
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    params = load_params("params.yaml")
    served_name = params.train.serve
    other = "ensemble" if served_name == "student" else "student"
    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            run = train_once(params, seed, d)
        c = run["comparison"]
        variants = {
            f"{other} (reference)" if other == "ensemble" else other: c["candidates"][other]["test"],
            "first member alone": c["first_member"],
            f"{served_name} before its temperature": run["calibration"]["test"]["before"],
            f"served: {served_name}": run["test"],
        } | {f"baseline: {name}": m for name, m in run["baselines"].items()}
        rows += [{"model": name, "seed": seed} | m for name, m in variants.items()]
        gap, hgb_gap = c["auc_gap"][other], c["auc_gap"]["hist_gradient_boosting"]
        print(f"seed {seed}: served ROC AUC {run['test']['roc_auc']:.4f}, minus the {other} {gap['gap']:+.4f} "
              f"[{gap['low']:+.4f}, {gap['high']:+.4f}], minus gradient boosting {hgb_gap['gap']:+.4f} "
              f"[{hgb_gap['low']:+.4f}, {hgb_gap['high']:+.4f}]; temperature {run['calibration']['temperature']:.3f}; "
              f"multiply-adds per row {c['candidates'][served_name]['multiply_adds']:,} against "
              f"{c['candidates'][other]['multiply_adds']:,}; {run['seconds']:.0f} s to train both", flush=True)
    df = pd.DataFrame(rows)
    cols = ["roc_auc", "f1", "accuracy", "ece", "brier", "log_loss"]
    print(f"\nper seed:\n{df[['model', 'seed', *cols, 'threshold']].round(4).to_string(index=False)}\n")
    print("| model | " + " | ".join(cols) + " |\n| --- |" + " ---: |" * len(cols))
    for name, g in df.groupby("model", sort=False):
        cells = [f"{g[c].mean():.4f} ± {g[c].std(ddof=0):.4f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    served = df[df.model == f"served: {served_name}"]
    ensemble = df[df.model.str.startswith("ensemble")] if served_name == "student" else served
    hgb = df[df.model == "baseline: hist_gradient_boosting"]
    checks = {
        "mean ROC AUC within 0.0015 of the ensemble's": served.roc_auc.mean() >= ensemble.roc_auc.mean() - 0.0015,
        "mean ROC AUC >= 0.932": served.roc_auc.mean() >= 0.932,
        "mean F1 >= 0.735": served.f1.mean() >= 0.735,
        "mean ECE <= 0.02": served.ece.mean() <= 0.02,
        "mean ROC AUC >= gradient boosting's (issue 12)": served.roc_auc.mean() >= hgb.roc_auc.mean(),
    }
    print(f"\nserved: ROC AUC {served.roc_auc.mean():.4f} (ensemble {ensemble.roc_auc.mean():.4f}, gradient boosting "
          f"{hgb.roc_auc.mean():.4f}), F1 {served.f1.mean():.4f}, ECE {served.ece.mean():.4f}")
    print("targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()))
