"""The one metrics module (numpy only) against scikit-learn and fairlearn, on real census rows."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from census_income.clean import clean_census
from census_income.metrics import RATES, best_threshold, binary_metrics, decide, roc_auc
from census_income.metrics import log_loss as our_log_loss
from census_income.schema import CATEGORICAL, LABEL
from census_income.slice_stats import slice_metrics
from testkit import fairlearn_metrics


@pytest.fixture(scope="module")
def scored(census_path):
    "Real census rows, their labels, and a noisy score that depends on them (ties included: it is rounded)."
    df = clean_census(census_path)[0].sample(5000, random_state=1).reset_index(drop=True)
    y = (df[LABEL] == ">50K").to_numpy().astype(int)
    rng = np.random.default_rng(0)
    p = np.round(np.clip(0.25 * y + 0.08 * (df["education-num"].to_numpy() - 9) / 4 + rng.random(len(y)) * 0.6, 0, 1), 3)
    return df, y, p


def test_threshold_free_metrics_equal_scikit_learn(scored):
    _, y, p = scored
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert our_log_loss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.linspace(0, 1, 5)))


def test_best_threshold_is_scikit_learns_f1_maximum(scored):
    _, y, p = scored
    precision, recall, cuts = precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    assert best_threshold(y, p) == cuts[int(np.argmax(f1))]


def test_rates_at_a_threshold_equal_scikit_learn(scored):
    _, y, p = scored
    t = best_threshold(y, p)
    pred = decide(p, t)
    m = binary_metrics(y, p, t)
    want = {"accuracy": accuracy_score(y, pred), "precision": precision_score(y, pred), "recall": recall_score(y, pred),
            "f1": f1_score(y, pred)}
    for k, v in want.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k
    assert m["n"] == len(y) and m["threshold"] == t


def test_every_slice_equals_fairlearns_metric_frame(scored):
    "The cross-check that used to run as an assert inside the stage: every slice of every feature."
    df, y, p = scored
    pred, fairlearn = decide(p, 0.5).astype(int), fairlearn_metrics()
    table = slice_metrics(df, y, pred, CATEGORICAL, n_boot=10, seed=0, level=0.95, min_support=50, min_class=10)
    for feature in CATEGORICAL:
        frame = MetricFrame(metrics=fairlearn, y_true=y, y_pred=pred, sensitive_features=pd.Series(df[feature], name="v"))
        ours = table[table["feature"] == feature].set_index("value")
        assert list(ours.index) == list(frame.by_group.index), feature
        for m in ("n", "share_positive", *RATES):
            np.testing.assert_allclose(ours[m].to_numpy(float), frame.by_group[m].to_numpy(float), rtol=0, atol=1e-12,
                                       err_msg=f"{feature}: {m}")
    overall = MetricFrame(metrics=fairlearn, y_true=y, y_pred=pred, sensitive_features=df["sex"]).overall
    for m in RATES:
        assert table.iloc[0][m] == pytest.approx(overall[m], abs=1e-12), m


def test_metrics_module_imports_neither_torch_nor_scikit_learn():
    code = "import sys, census_income.metrics; print(sorted(m for m in ('torch', 'sklearn', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
