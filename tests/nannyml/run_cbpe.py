"""NannyML's CBPE on two CSV files, run in NannyML's own venv (`make nannyml`): the estimates as JSON on stdout.

Two runs: `as_given`, NannyML's CBPE on the probabilities as they are (its calibrator a `NoopCalibrator`: left to
itself, NannyML recalibrates whenever its cross-validated check on the reference finds that isotonic regression
lowers the calibration error, which it does on this model's test split; `calibrated` says whether it would have);
and `isotonic`, the same after the probabilities of both files were recalibrated by an isotonic regression fitted on
the reference (what NannyML does when it judges calibration needed; the project's estimate corrects by the
reference's calibration gap).

Usage: .venv-nannyml/bin/python tests/nannyml/run_cbpe.py REFERENCE.csv ANALYSIS.csv
Both files hold `p` (probability of >50K) and `pred` (0/1, the model's decision); the reference also `y` (the truth).
"""

import json
import os
import sys

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML reports usage over the network unless told not to

import nannyml  # noqa: E402
import pandas as pd  # noqa: E402
from nannyml.calibration import IsotonicCalibrator, NoopCalibrator, needs_calibration  # noqa: E402
from sklearn.isotonic import IsotonicRegression  # noqa: E402

METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc"]


def cbpe(reference: pd.DataFrame, analysis: pd.DataFrame, **calibrator) -> dict:
    "NannyML's CBPE fitted on the reference, its estimate over the whole analysis file (one chunk); whether it recalibrated."
    estimator = nannyml.CBPE(y_pred_proba="p", y_pred="pred", y_true="y", metrics=METRICS, problem_type="classification_binary",
                             chunk_number=1, **calibrator)
    estimator.fit(reference)
    table = estimator.estimate(analysis).filter(period="analysis").to_df()
    return {"calibrated": bool(estimator.needs_calibration)} | {m: {"estimate": float(table[(m, "value")].iloc[0]),
            "low": float(table[(m, "lower_confidence_boundary")].iloc[0]),
            "high": float(table[(m, "upper_confidence_boundary")].iloc[0])} for m in METRICS}


def main(reference_csv: str, analysis_csv: str) -> dict:
    reference, analysis = pd.read_csv(reference_csv), pd.read_csv(analysis_csv)
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(reference["p"], reference["y"])
    as_given = cbpe(reference, analysis, calibrator=NoopCalibrator()) | {
        "calibrated": bool(needs_calibration(reference["y"].to_numpy(), reference["p"].to_numpy(), IsotonicCalibrator()))}
    return {"nannyml": nannyml.__version__, "rows": len(analysis), "as_given": as_given,
            "isotonic": cbpe(reference.assign(p=iso.predict(reference["p"])), analysis.assign(p=iso.predict(analysis["p"])))}


if __name__ == "__main__":
    json.dump(main(*sys.argv[1:3]), sys.stdout, indent=1)
