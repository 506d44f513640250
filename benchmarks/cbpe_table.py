"""The CBPE table: estimated performance (with its interval) against the truth, on the test split and on shifted files.

Every file still carries its labels: the truth comes from them (`binary_metrics`), the estimate from the
probabilities alone and the test split's counts in the model's manifest, with params.yaml's `batch.performance`
settings, as the batch job's drift report has it. With NannyML's venv (`make nannyml`), NannyML's CBPE of each file
too, fitted on the test split: on the probabilities as given, and after an isotonic recalibration on the test split.

Run from the repo root after `make pipeline`:

    .venv/bin/python benchmarks/cbpe_table.py [--no-nannyml]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from machine import blas_line

from census_income.cbpe import METRICS, estimate_performance, score_counts
from census_income.config import load_params
from census_income.drift import shifted
from census_income.fileio import read_clean
from census_income.metrics import binary_metrics
from census_income.predict import Predictor
from census_income.schema import LABEL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))
from testkit import nannyml_cbpe  # noqa: E402  (testkit.py at the repo root: NannyML's CBPE in .venv-nannyml)


def files(test: pd.DataFrame, model: Predictor) -> dict:
    "Name → (rows, labels): covariate shifts first, then the two concept shifts."
    y = model.encoder.encode_label(test[LABEL])
    out = {"test split": test, "Craft-repair doubled": shifted(test, years=0),
           "Exec-managerial doubled": shifted(test, "Exec-managerial", years=0)}
    out |= {f"occupation {o} only": test[test["occupation"] == o] for o in ("Craft-repair", "Prof-specialty", "Exec-managerial")}
    out |= {f"ages {a}-{b} only": test[test["age"].between(a, b)] for a, b in ((25, 34), (35, 49), (50, 64))}
    out = {k: (v, model.encoder.encode_label(v[LABEL])) for k, v in out.items()}
    out["concept: ages +15, labels kept (drift tests' shift)"] = (d := shifted(test, years=15), model.encoder.encode_label(d[LABEL]))
    out["concept: every Exec-managerial >50K"] = (test, np.where(test["occupation"] == "Exec-managerial", 1, y))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-nannyml", action="store_true", help="leave NannyML out")
    a = ap.parse_args()
    print(blas_line())
    s = load_params(ROOT / "params.yaml").batch.performance
    model, test = Predictor.load(ROOT / "model"), read_clean(ROOT / "data" / "test.csv")
    ref = model.manifest["metrics"]["test_scores"]
    print(f"model {model.version}; {s.n_sim} simulations, seed {s.seed}, {s.ci_level:.0%} intervals\n")
    print("| file | rows | " + " | ".join(METRICS) + " |\n|---|---:|" + "---|" * len(METRICS))
    nml_rows, missed, judged = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (df, y) in files(test, model).items():
            p = model.predict_proba(df)
            est = estimate_performance(score_counts(p, model.threshold), ref, s.n_sim, s.seed, s.ci_level)
            truth = binary_metrics(y, p, model.threshold)
            inside = {m: est[m]["low"] <= truth[m] <= est[m]["high"] for m in METRICS}
            if not name.startswith("concept"):
                missed, judged = missed + sum(not v for v in inside.values()), judged + len(METRICS)
            print(f"| {name} | {len(df):,} | " + " | ".join(
                f"{est[m]['estimate']:.3f} [{est[m]['low']:.3f}, {est[m]['high']:.3f}] vs **{truth[m]:.3f}**"
                + ("" if inside[m] else " (outside)") for m in METRICS) + " |")
            if not a.no_nannyml and not name.startswith("concept"):
                theirs = nannyml_cbpe(model, test, df, Path(tmp))
                raw = estimate_performance(score_counts(p, model.threshold), None, s.n_sim, s.seed, s.ci_level)
                nml_rows.append(f"| {name} | " + " | ".join(
                    f"{theirs['as_given'][m]['estimate']:.4f} / {raw[m]['estimate']:.4f}; "
                    f"{theirs['isotonic'][m]['estimate']:.4f} / {est[m]['estimate']:.4f}" for m in METRICS) + " |")
    print(f"\ncovariate shifts: {judged - missed} of {judged} true values inside their interval")
    if nml_rows:
        print("\nNannyML 0.13.1 CBPE (fitted on the test split) / this project, as given (no correction); "
              "after isotonic recalibration / as the batch report has it (corrected by the test split's gaps)\n")
        print("| file | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
        print("\n".join(nml_rows))


if __name__ == "__main__":
    main()
