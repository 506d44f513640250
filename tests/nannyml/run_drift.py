"""NannyML's multivariate drift on CSV files, run in NannyML's own venv (`make nannyml`): its alarms as JSON on stdout.

Both of NannyML's multivariate calculators, fitted on the reference (the training split, chunks of CHUNK rows):
`DataReconstructionDriftCalculator` (PCA reconstruction error at 65% of the variance, NannyML's default, alert outside
3 standard deviations of the reference chunks) and `DomainClassifierCalculator` (LightGBM telling a chunk's rows from
the reference's, cross-validated AUC, alert above 0.65) on every analysis set; each set is cut into chunks of CHUNK rows
(a set of CHUNK rows or fewer: one chunk).

Usage: .venv-nannyml/bin/python tests/nannyml/run_drift.py REFERENCE.csv CHUNK SET.csv [SET.csv ...] [--no-domain]
"""

import json
import os
import sys

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML reports usage over the network unless told not to

import nannyml  # noqa: E402
import pandas as pd  # noqa: E402

FEATURES = ["age", "workclass", "fnlgt", "education", "education-num", "marital-status", "occupation", "relationship",
            "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country"]


def alarms(calculator, key: str, reference: pd.DataFrame, sets: dict) -> dict:
    "Per set, each chunk's value, upper threshold and alert."
    calculator.fit(reference)
    out = {}
    for name, frame in sets.items():
        table = calculator.calculate(frame).filter(period="analysis").to_df()
        out[name] = [{"value": float(v), "upper": float(u), "alert": bool(a)} for v, u, a in
                     zip(table[(key, "value")], table[(key, "upper_threshold")], table[(key, "alert")], strict=True)]
    return out


def main(argv: list[str]) -> dict:
    domain = "--no-domain" not in argv
    argv = [a for a in argv if a != "--no-domain"]
    reference, chunk = pd.read_csv(argv[0]), int(argv[1])
    sets = {os.path.splitext(os.path.basename(p))[0]: pd.read_csv(p) for p in argv[2:]}
    out = {"reconstruction": alarms(nannyml.DataReconstructionDriftCalculator(column_names=FEATURES, chunk_size=chunk),
                                    "reconstruction_error", reference, sets)}
    if domain:
        out["domain_classifier"] = alarms(nannyml.DomainClassifierCalculator(
            feature_column_names=FEATURES, treat_as_categorical=[c for c in FEATURES if reference[c].dtype == object],
            chunk_size=chunk), "domain_classifier_auroc", reference, sets)
    return out


if __name__ == "__main__":
    real_stdout = os.dup(1)
    os.dup2(2, 1)  # LightGBM's C++ code writes to file descriptor 1: its lines go to stderr, the JSON alone to stdout
    result = main(sys.argv[1:])
    sys.stdout.flush()
    os.dup2(real_stdout, 1)
    json.dump(result, sys.stdout)
