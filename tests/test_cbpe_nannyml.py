"""The batch report's estimated performance against NannyML's own CBPE on the same data.

NannyML runs in its own venv (`make nannyml`: .venv-nannyml, pinned by constraints-nannyml.txt): it pulls lightgbm,
xgboost, plotly and cloud clients the project does not need. The reference is the test split (probabilities,
decisions, labels), the analysis a file scored by the model; both estimates cover the whole file. The model and its test
split are the ones this test session's own pipeline run built (`predictor`, `artifacts`), never the committed model/:
the quick run's 600-row test split is too small for the two calibrations to agree within 0.01.

Two comparisons: NannyML on the probabilities as given (its calibrator a no-op: left to itself it recalibrates them,
its check finding that isotonic regression helps on this test split) against the project's estimate without a reference (`estimate_performance(..., None, ...)`, the
same rule: within 0.002, and 0.005 for the ROC AUC, which the project takes from 300 bins); and NannyML after an
isotonic recalibration fitted on the reference against the project's estimate as the batch job reports it (corrected
by the test split's calibration gap in 15 bins: two ways to calibrate, within 0.01).
"""

import pytest

from census_income.cbpe import METRICS, estimate_performance, score_counts
from census_income.drift import shifted
from census_income.fileio import read_clean
from testkit import nannyml_cbpe

pytestmark = pytest.mark.integration  # a second venv and a process per file (and a pipeline run): not in test-fast

FILES = {
    "test split": lambda t: t,
    "Craft-repair doubled": lambda t: shifted(t, "Craft-repair", years=0),
    "occupation Exec-managerial only": lambda t: t[t["occupation"] == "Exec-managerial"],
    "ages 50-64 only": lambda t: t[t["age"].between(50, 64)],
}


@pytest.mark.parametrize("name", list(FILES))
def test_the_estimate_agrees_with_nannymls_cbpe(params, artifacts, predictor, tmp_path, name):
    model = predictor
    test = read_clean(artifacts / "data" / "test.csv")
    analysis = FILES[name](test)
    theirs = nannyml_cbpe(model, test, analysis, tmp_path)
    s = params.batch.performance
    counts = score_counts(model.predict_proba(analysis), model.threshold)
    raw = estimate_performance(counts, None, s.n_sim, s.seed, s.ci_level)
    ours = estimate_performance(counts, model.manifest["metrics"]["test_scores"], s.n_sim, s.seed, s.ci_level)
    assert theirs["rows"] == ours["rows"] == len(analysis)
    for m in METRICS:  # NannyML on the probabilities as given (no calibrator): the same rule as ours without a reference
        tol = 0.005 if m == "roc_auc" else 0.002
        assert abs(theirs["as_given"][m]["estimate"] - raw[m]["estimate"]) < tol, (m, theirs["as_given"][m], raw[m])
    for m in METRICS:
        assert abs(theirs["isotonic"][m]["estimate"] - ours[m]["estimate"]) < 0.01, (m, theirs["isotonic"][m], ours[m])
