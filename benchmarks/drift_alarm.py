"""The multivariate drift alarm on shifts no column shows, and its false alarms, beside NannyML's two multivariate
calculators on the same chunks (issue 37: drift that marginals cannot hide).

Chunks of `batch.drift.min_rows` rows (2,000) drawn without replacement from the test split (`data/test.csv`, rows the
profile never saw): 100 unshifted chunks measure the false-alarm rate; ten chunks of each shifted copy of the test split
measure what each method sees. Shifts: `census_income.drift.swapped` (one column, or all, shuffled among the rows: every
marginal unchanged) and `shifted` (ages +15; one occupation doubled). The project's side reads the pipeline's profile
(`model/reference.json`) exactly as a batch job does (`tally`, `compare`); NannyML (its own venv, `make nannyml`) is
fitted on the training split (`data/train.csv`) with its defaults, chunks of the same size. NannyML's domain classifier
(LightGBM, 5-fold cross-validation per chunk) is slow: it runs on the shifts and the first ten clean chunks only.

Usage (after `make pipeline` and `make nannyml`): .venv/bin/python benchmarks/drift_alarm.py [--chunks 100] [--no-domain]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

from census_income.config import DriftThresholds, load_params
from census_income.drift import compare, shifted, swapped
from census_income.fileio import read_clean
from census_income.reference import load_reference, tally
from census_income.schema import FEATURES

ROOT = Path(__file__).resolve().parent.parent
NANNYML = ROOT / ".venv-nannyml" / "bin" / "python"


def chunks_of(frame: pd.DataFrame, n: int, rows: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    return [frame.iloc[rng.choice(len(frame), rows, replace=False)] for _ in range(n)]


def ours(reference: dict, chunks: list[pd.DataFrame], thresholds: DriftThresholds) -> list[dict]:
    out = []
    for chunk in chunks:
        r = compare(reference, tally(reference, chunk), thresholds)
        out.append({"alarm": r["multivariate"]["alarm"], "error": r["multivariate"]["error"],
                    "threshold": r["multivariate"]["threshold"], "flagged": bool(r["flagged"]),
                    "psi": max(a["psi"] for a in r["attributes"].values())})
    return out


def nannyml(train: pd.DataFrame, sets: dict[str, list[pd.DataFrame]], rows: int, domain: bool, folder: Path) -> dict:
    train[list(FEATURES)].to_csv(folder / "reference.csv", index=False)
    paths = []
    for name, chunks in sets.items():
        paths.append(folder / f"{name}.csv")
        pd.concat(chunks)[list(FEATURES)].to_csv(paths[-1], index=False)  # NannyML cuts it back into the same chunks
    proc = subprocess.run([str(NANNYML), str(ROOT / "tests" / "nannyml" / "run_drift.py"), str(folder / "reference.csv"),
                           str(rows), *map(str, paths), *([] if domain else ["--no-domain"])], capture_output=True, text=True,
                          env=os.environ | {"NML_DISABLE_USAGE_LOGGING": "1"}, timeout=3600)
    if proc.returncode:
        sys.exit(f"NannyML failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100, help="unshifted chunks for the false-alarm rate")
    ap.add_argument("--no-domain", action="store_true", help="leave NannyML's domain classifier out")
    a = ap.parse_args()
    print(blas_line())
    params = load_params(ROOT / "params.yaml")
    thresholds, rows, seed = params.batch.drift, params.batch.drift.min_rows, params.profile.seed
    reference = load_reference(params.paths.reference_json)
    train, test = read_clean(params.paths.train_csv), read_clean(params.paths.test_csv)
    rng = np.random.default_rng(seed)
    clean = chunks_of(test, a.chunks, rows, rng)
    shifts = {"sex shuffled": swapped(test, ["sex"], seed), "relationship shuffled": swapped(test, ["relationship"], seed),
              "every attribute shuffled": swapped(test, list(FEATURES), seed), "ages +15": shifted(test, None, 15),
              "Craft-repair doubled": shifted(test, "Craft-repair", seed=seed)}
    shifted_chunks = {k: chunks_of(v, 10, rows, rng) for k, v in shifts.items()}
    mine = {k: ours(reference, v, thresholds) for k, v in {"clean": clean, **shifted_chunks}.items()}
    with tempfile.TemporaryDirectory() as tmp:
        recon = nannyml(train, {"clean": clean}, rows, False, Path(tmp))["reconstruction"]
        theirs = nannyml(train, {"ten_clean": clean[:10], **{k.replace(" ", "_"): v for k, v in shifted_chunks.items()}},
                         rows, not a.no_domain, Path(tmp))
    domain = theirs.get("domain_classifier", {})

    def count(rs: list[dict], key: str = "alarm") -> str:
        return f"{sum(r[key] for r in rs)}/{len(rs)}"

    print(f"## Shifts: ten chunks of {rows:,} test rows each\n")
    print("| shift | largest PSI (median) | flagged by an attribute | multivariate alarm (ours) | NannyML reconstruction "
          "| NannyML domain classifier |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, rs in mine.items():
        if name == "clean":
            continue
        key = name.replace(" ", "_")
        print(f"| {name} | {np.median([r['psi'] for r in rs]):.3f} | {count(rs, 'flagged')} | {count(rs)} | "
              f"{count(theirs['reconstruction'][key], 'alert')} | "
              f"{count(domain[key], 'alert') if domain else 'not run'} |")
    print(f"\n## Unshifted: chunks of {rows:,} test rows\n")
    print("| chunk | mean error (ours) | threshold | alarm | NannyML reconstruction error | upper | alert | "
          "NannyML domain AUC | alert |\n| ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |")
    for i, r in enumerate(mine["clean"][:10]):
        n, d = theirs["reconstruction"]["ten_clean"][i], domain.get("ten_clean", [None] * 10)[i]
        auc, alert = ("", "") if d is None else (f"{d['value']:.3f}", d["alert"])
        print(f"| {i} | {r['error']:.4f} | {r['threshold']:.4f} | {r['alarm']} | {n['value']:.4f} | {n['upper']:.4f} | "
              f"{n['alert']} | {auc} | {alert} |")
    print(f"\nfalse alarms over {len(clean)} unshifted chunks: ours {count(mine['clean'])} "
          f"(level {thresholds.multivariate_level}), flagged by an attribute {count(mine['clean'], 'flagged')}, "
          f"NannyML reconstruction {count(recon['clean'], 'alert')}"
          + (f", NannyML domain classifier {count(domain['ten_clean'], 'alert')} (ten chunks)" if domain else ""))


if __name__ == "__main__":
    main()
