"""Slice metrics: the vectorised bootstrap against scikit-learn, the coverage of its intervals, and the pipeline's slices."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from census_income.clean import clean_census
from census_income.metrics import percentile_ci, rates_from_counts, readable
from census_income.predict import Predictor
from census_income.schema import CATEGORICAL, LABEL
from census_income.slice_stats import bootstrap_weights, disparity, group_counts, slice_metrics
from census_income.slices import slice_lines

KW = {"level": 0.95, "min_support": 50, "min_class": 10}  # the settings params.yaml gives the slices stage


@pytest.fixture(scope="module")
def census_rows(census_path):
    "2000 real census rows with a simple rule as the 'model' (no trained model needed)."
    df = clean_census(census_path)[0].sample(2000, random_state=0).reset_index(drop=True)
    y = (df[LABEL] == ">50K").to_numpy().astype(int)
    pred = ((df["education-num"] >= 13) | (df["marital-status"] == "Married-civ-spouse") & (df["age"] > 40)).to_numpy().astype(int)
    return df, y, pred


def test_every_slice_matches_scikit_learn(census_rows):
    df, y, pred = census_rows
    table = slice_metrics(df, y, pred, CATEGORICAL, n_boot=50, seed=0, **KW)
    for f in CATEGORICAL:
        assert set(table.loc[table["feature"] == f, "value"]) == set(df[f]), f
    for r in table.iloc[1:].itertuples():
        sel = (df[r.feature] == r.value).to_numpy()
        yy, pp = y[sel], pred[sel]
        assert r.n == sel.sum() and r.positives == yy.sum()
        want = {"precision": precision_score(yy, pp, zero_division=np.nan), "recall": recall_score(yy, pp, zero_division=np.nan),
                "f1": f1_score(yy, pp, zero_division=np.nan), "accuracy": np.mean(yy == pp), "selection_rate": pp.mean()}
        for m, v in want.items():
            assert np.isclose(getattr(r, m), v, equal_nan=True), (r.feature, r.value, m)
    row = table.iloc[0]
    assert row["feature"] == "overall" and np.isclose(row["f1"], f1_score(y, pred))


def test_small_flag_follows_support_and_class_counts(census_rows):
    df, y, pred = census_rows
    table = slice_metrics(df, y, pred, ["race", "native-country"], n_boot=20, seed=0, **KW)
    for r in table.iloc[1:].itertuples():  # counts taken from the rows themselves, not from the table
        sel = (df[r.feature] == r.value).to_numpy()
        n, pos = int(sel.sum()), int(y[sel].sum())
        assert r.small == (n < KW["min_support"] or pos < KW["min_class"] or n - pos < KW["min_class"]), r
    assert table["small"].any() and not table["small"].all()
    assert bool(table.loc[(table["feature"] == "native-country") & (table["value"] == "United-States"), "small"].item()) is False


def test_intervals_are_seeded_and_bracket_the_estimate(census_rows):
    df, y, pred = census_rows
    a = slice_metrics(df, y, pred, ["sex", "race"], n_boot=300, seed=1, **KW)
    b = slice_metrics(df, y, pred, ["sex", "race"], n_boot=300, seed=1, **KW)
    c = slice_metrics(df, y, pred, ["sex", "race"], n_boot=300, seed=2, **KW)
    assert a.equals(b) and not np.allclose(a["f1_lo"], c["f1_lo"])
    judged = a[~a["small"]]
    for m in ("precision", "recall", "f1", "accuracy", "fpr", "fnr"):
        assert (judged[f"{m}_lo"] <= judged[m]).all() and (judged[m] <= judged[f"{m}_hi"]).all(), m


def test_bootstrap_interval_covers_the_true_recall_about_95_percent_of_the_time():
    "Simulate: a model with true recall 0.7 on samples of 400 rows; the 95% interval should hold it ~95% of the time."
    rng = np.random.default_rng(123)
    hits, runs = 0, 200
    for i in range(runs):
        y = (rng.random(400) < 0.3).astype(int)
        pred = np.where(y == 1, rng.random(400) < 0.7, rng.random(400) < 0.1).astype(int)
        counts = group_counts(y, pred, np.zeros(400, int), 1, bootstrap_weights(400, 400, seed=i))
        lo, hi = percentile_ci(rates_from_counts(*counts)["recall"], 0.95)
        hits += bool(lo[0] <= 0.7 <= hi[0])
    assert 0.90 <= hits / runs <= 0.99, hits / runs


def test_disparity_is_the_spread_of_the_eligible_groups(census_rows):
    df, y, pred = census_rows
    table = slice_metrics(df, y, pred, ["race"], n_boot=200, seed=0, **KW)
    d = disparity(df, y, pred, "race", table, bootstrap_weights(len(y), 200, 0), level=0.95)
    eligible = table.loc[(table["feature"] == "race") & ~table["small"], "value"].tolist()
    assert sorted(d["groups"]) == sorted(eligible) and set(d["excluded_small"]).isdisjoint(eligible)
    rec = {g: recall_score(y[df["race"] == g], pred[df["race"] == g]) for g in eligible}
    assert np.isclose(d["recall"]["gap"], max(rec.values()) - min(rec.values()))
    assert d["recall"]["max_group"] == max(rec, key=rec.get) and d["recall"]["min_group"] == min(rec, key=rec.get)
    lo, hi = d["recall"]["gap_ci"]
    assert 0 <= lo <= d["recall"]["gap"] <= hi


def test_slice_lines_one_per_slice(census_rows):
    df, y, pred = census_rows
    table = slice_metrics(df, y, pred, ["sex"], n_boot=20, seed=0, **KW)
    lines = slice_lines(table)
    assert [ln.split()[0] for ln in lines] == ["overall=all", "sex=Female", "sex=Male"]
    assert all("f1=" in ln and "[" in ln for ln in lines)


# --- on the pipeline's real outputs ---------------------------------------------------------------

def test_pipeline_slices_cover_the_test_split_and_agree_with_the_model(pipeline_repo):
    test = pd.read_csv(pipeline_repo / "data/test.csv", keep_default_na=False)
    report = json.loads((pipeline_repo / "metrics/slices.json").read_text())
    test_metrics = json.loads((pipeline_repo / "metrics/test.json").read_text())
    for f in CATEGORICAL:
        assert set(report["slices"][f]) == set(test[f].astype(str)), f
        assert sum(s["n"] for s in report["slices"][f].values()) == len(test)
    for m in ("precision", "recall", "f1", "accuracy"):
        assert report["overall"][m] == pytest.approx(test_metrics[m], abs=1e-9), m
    # one slice recomputed from scratch with the numpy predictor and scikit-learn
    predictor = Predictor.load(pipeline_repo / "model")
    women = test[test["sex"] == "Female"]
    pred = (predictor.predict_proba(women) >= predictor.threshold).astype(int)
    y = (women[LABEL] == ">50K").to_numpy().astype(int)
    assert report["slices"]["sex"]["Female"]["f1"] == readable(f1_score(y, pred))  # at the files' precision
    lo, hi = report["slices"]["sex"]["Female"]["f1_ci"]
    assert lo < report["slices"]["sex"]["Female"]["f1"] < hi and hi - lo < 0.1
    assert report["settings"]["n_boot"] >= 500 and report["counts"]["slices"] == sum(len(v) for v in report["slices"].values())


def test_pipeline_slice_output_lists_every_slice(pipeline_repo):
    report = json.loads((pipeline_repo / "metrics/slices.json").read_text())
    text = (pipeline_repo / "reports/slice_output.txt").read_text()
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert len(header) == 4 and "n/a: undefined" in header[2] and "nan" not in text
    assert header[3].startswith("# Intersections: ") and all(f in header[3] for f in report["settings"]["intersections"])
    assert len(lines) == 1 + report["counts"]["slices"]
    listed = {ln.split("  ")[0] for ln in lines[1:]}
    assert listed == {f"{f}={v}" for f, vals in report["slices"].items() for v in vals}
    small = {f"{f}={v}" for f, vals in report["slices"].items() for v, s in vals.items() if s["small"]}
    assert {ln.split("  ")[0] for ln in lines if ln.endswith("SMALL")} == small
