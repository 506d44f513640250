"""Intersections, calibration by group and the cross-fitted comparison with fairlearn's ThresholdOptimizer (slices stage)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from census_income.clean import clean_census
from census_income.config import Mitigation
from census_income.metrics import calibration_error, decide, sigmoid
from census_income.pipeline import load_params
from census_income.schema import CATEGORIES, LABEL
from census_income.slice_stats import (
    CROSS,
    add_intersections,
    bootstrap_weights,
    disparity,
    group_calibration,
    slice_metrics,
)
from census_income.slices import cross_fit_thresholds, fairness_comparison, run_slices, stratified_folds

KW = {"level": 0.95, "min_support": 50, "min_class": 10}  # the settings params.yaml gives the slices stage
MITIGATION = Mitigation(sensitive=["sex"], folds=2, constraints=["equalized_odds", "demographic_parity"], objective="accuracy_score",
                        grid_size=200)
SEX_RACE = f"sex{CROSS}race"


@pytest.fixture(scope="module")
def census_rows(census_path):
    "3000 real census rows with sex×race, and a logistic formula of a few columns as the 'model' (no trained model needed)."
    df = add_intersections(clean_census(census_path)[0].sample(3000, random_state=1).reset_index(drop=True), [["sex", "race"]])
    y = (df[LABEL] == ">50K").to_numpy().astype(int)
    married = (df["marital-status"] == "Married-civ-spouse").to_numpy()
    p = sigmoid(0.6 * (df["education-num"].to_numpy() - 11) + 2.2 * married + 0.03 * (df["age"].to_numpy() - 40) - 1.6)
    return df, y, p, decide(p, 0.4).astype(int)


def planted(n: int, seed: int, shift: float = 0.8) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    "Rows of two groups where b's scores are pushed down by `shift`: at one threshold, b's recall is lower."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": rng.choice(["a", "b"], n, p=[0.6, 0.4])})
    y = (rng.random(n) < 0.3).astype(int)
    p = sigmoid(rng.normal(2.0 * y, 1.0) - 1 - shift * (df["g"] == "b").to_numpy())
    return df, y, p, decide(p, 0.5).astype(int)


# --- intersections -----------------------------------------------------------------------------------

def test_no_category_holds_the_cross_sign():
    "An intersection's value splits back into its parts ('&' would not do: native-country has Trinadad&Tobago)."
    assert not [v for values in CATEGORIES.values() for v in values if CROSS in v]
    assert any("&" in v for values in CATEGORIES.values() for v in values)


def test_intersection_slices_partition_the_rows_and_match_scikit_learn(census_rows):
    df, y, _, pred = census_rows
    table = slice_metrics(df, y, pred, ["sex", "race", SEX_RACE], n_boot=50, seed=0, **KW)
    cells = table[table["feature"] == SEX_RACE]
    assert cells["n"].sum() == len(df) and cells["positives"].sum() == y.sum()
    expected = {f"{s}{CROSS}{r}": n for (s, r), n in df.groupby(["sex", "race"]).size().items()}
    assert dict(zip(cells["value"], cells["n"], strict=True)) == expected
    for sex in ("Female", "Male"):  # the cells of one sex add up to that sex's slice
        assert cells.loc[cells["value"].str.startswith(sex + CROSS), "n"].sum() == table.loc[table["value"] == sex, "n"].item()
    sel = ((df["sex"] == "Female") & (df["race"] == "White")).to_numpy()
    row = cells[cells["value"] == f"Female{CROSS}White"].iloc[0]
    assert np.isclose(row["recall"], recall_score(y[sel], pred[sel])) and np.isclose(row["f1"], f1_score(y[sel], pred[sel]))
    for r in cells.itertuples():  # counts taken from the rows themselves, not from the table
        s, race = r.value.split(CROSS)
        sel = ((df["sex"] == s) & (df["race"] == race)).to_numpy()
        n, pos = int(sel.sum()), int(y[sel].sum())
        assert r.small == (n < KW["min_support"] or pos < KW["min_class"] or n - pos < KW["min_class"]), r
    assert cells["small"].any() and not cells["small"].all()
    assert bool(cells.loc[cells["value"] == f"Female{CROSS}Other", "small"].item())


def test_intersection_disparity_compares_only_the_cells_large_enough(census_rows):
    df, y, _, pred = census_rows
    table = slice_metrics(df, y, pred, [SEX_RACE], n_boot=100, seed=0, **KW)
    d = disparity(df, y, pred, SEX_RACE, table, bootstrap_weights(len(y), 100, 0), level=0.95)
    cells = table[table["feature"] == SEX_RACE]
    assert d["groups"] == sorted(cells.loc[~cells["small"], "value"]) and d["excluded_small"] == sorted(cells.loc[cells["small"], "value"])
    rec = {g: recall_score(y[df[SEX_RACE] == g], pred[df[SEX_RACE] == g]) for g in d["groups"]}
    assert np.isclose(d["recall"]["gap"], max(rec.values()) - min(rec.values()))


# --- calibration by group ------------------------------------------------------------------------------

def test_group_calibration_agrees_with_the_metrics_module_and_the_slices(census_rows):
    df, y, p, pred = census_rows
    table = slice_metrics(df, y, pred, ["sex", "race", SEX_RACE], n_boot=200, seed=3, **KW)
    cal = group_calibration(df, y, p, ["sex", "race", SEX_RACE], table, bootstrap_weights(len(y), 200, 3), level=0.95, seed=3)
    assert cal[["feature", "value"]].equals(table[["feature", "value"]])  # overall first, then every group in the table's order
    merged = cal.merge(table, on=["feature", "value"], suffixes=("", "_table"))
    assert merged["small"].equals(merged["small_table"]) and merged["n"].equals(merged["n_table"])
    assert np.allclose(merged["share_positive_lo"], merged["share_positive_lo_table"])  # the same resamples
    for r in cal.iloc[1:].itertuples():
        sel = (df[r.feature] == r.value).to_numpy()
        assert np.isclose(r.ece, calibration_error(y[sel], p[sel])) and np.isclose(r.mean_probability, p[sel].mean())
        assert np.isclose(r.gap, y[sel].mean() - p[sel].mean()) and r.ece_chance > 0
    judged = cal[~cal["small"]]
    for m in ("mean_probability", "share_positive", "gap"):
        assert (judged[f"{m}_lo"] <= judged[m]).all() and (judged[m] <= judged[f"{m}_hi"]).all(), m


def test_group_calibration_finds_a_planted_miscalibration_and_not_a_calibrated_group():
    rng = np.random.default_rng(11)
    df = pd.DataFrame({"g": rng.choice(["a", "b"], 4000)})
    truth = rng.uniform(0.05, 0.95, 4000)
    y = (rng.random(4000) < truth).astype(int)
    p = np.where(df["g"] == "b", truth * 0.7, truth)  # b underrated by 30%
    table = slice_metrics(df, y, decide(p, 0.5), ["g"], n_boot=300, seed=1, **KW)
    a = group_calibration(df, y, p, ["g"], table, bootstrap_weights(4000, 300, 1), level=0.95, seed=2)
    b = group_calibration(df, y, p, ["g"], table, bootstrap_weights(4000, 300, 1), level=0.95, seed=2)
    assert a.equals(b)
    by = a.set_index("value")
    assert by.loc["b", "gap_lo"] > 0 and by.loc["a", "gap_lo"] < 0 < by.loc["a", "gap_hi"]
    assert by.loc["b", "ece"] > by.loc["b", "ece_chance"] and by.loc["a", "ece"] < by.loc["a", "ece_chance"]


# --- cross-fitted ThresholdOptimizer -------------------------------------------------------------------

def test_stratified_folds_balance_every_stratum_and_follow_the_seed():
    strata = np.repeat(["a|0", "a|1", "b|0", "b|1", "c|1"], [500, 131, 77, 9, 1])
    for k in (2, 3):
        folds = stratified_folds(strata, k, seed=4)
        counts = pd.crosstab(strata, folds).reindex(columns=range(k), fill_value=0)
        assert set(np.unique(folds)) == set(range(k)) and (counts.max(axis=1) - counts.min(axis=1) <= 1).all()
        assert np.array_equal(folds, stratified_folds(strata, k, seed=4))
    assert not np.array_equal(stratified_folds(strata, 2, seed=4), stratified_folds(strata, 2, seed=5))


@pytest.mark.parametrize("n_folds", [2, 3])
def test_cross_fitting_never_fits_on_the_rows_it_scores(n_folds):
    "Turning one fold's labels upside down changes the decisions of the other folds, never its own."
    df, y, p, _ = planted(3000, seed=1)
    groups = df["g"].to_numpy()
    folds = stratified_folds([f"{g}|{t}" for g, t in zip(groups, y, strict=True)], n_folds, seed=2)
    kw = {"constraints": "equalized_odds", "objective": "accuracy_score", "grid_size": 200, "seed": 3}
    base = cross_fit_thresholds(p, y, groups, folds, **kw)
    for k in range(n_folds):
        own = folds == k
        again = cross_fit_thresholds(p, np.where(own, 1 - y, y), groups, folds, **kw)
        assert np.array_equal(again[own], base[own]), f"fold {k} was decided with its own labels"
        assert (again[~own] != base[~own]).mean() > 0.02, f"fold {k}'s labels fitted nothing"


def test_cross_fitting_is_seeded_and_refuses_a_group_unseen_by_the_fit():
    df, y, p, _ = planted(2000, seed=5)
    groups = df["g"].to_numpy()
    folds = stratified_folds([f"{g}|{t}" for g, t in zip(groups, y, strict=True)], 2, seed=0)
    kw = {"constraints": "demographic_parity", "objective": "accuracy_score", "grid_size": 200}
    a, b, c = (cross_fit_thresholds(p, y, groups, folds, seed=s, **kw) for s in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)  # randomised decisions, drawn from the seed
    with pytest.raises(ValueError, match="missing from the rows that fit"):
        cross_fit_thresholds(p, y, groups, (groups == "b").astype(int), seed=7, **kw)


def test_equalized_odds_narrows_a_planted_recall_gap_and_parity_the_selection_gap():
    df, y, p, pred = planted(6000, seed=9)
    table = slice_metrics(df, y, pred, ["g"], n_boot=300, seed=1, **KW)
    out = fairness_comparison(df, y, p, pred, "g", table, bootstrap_weights(len(y), 300, 1), 0.95, MITIGATION, seed=2)
    v = out["variants"]
    assert list(v) == ["as_trained", "one_threshold", "equalized_odds", "demographic_parity"]
    assert out["groups"] == ["a", "b"] and out["excluded_small"] == []
    t = v["as_trained"]
    assert np.isclose(t["accuracy"], accuracy_score(y, pred)) and np.isclose(t["f1"], f1_score(y, pred))
    rec = {g: recall_score(y[df["g"] == g], pred[df["g"] == g]) for g in ("a", "b")}
    assert np.isclose(t["recall_gap"], rec["a"] - rec["b"]) and t["recall_gap"] > 0.2, "the planted gap"
    assert v["equalized_odds"]["recall_gap"] < t["recall_gap"] / 3
    assert v["equalized_odds"]["recall_gap_ci"][1] < t["recall_gap_ci"][0], "narrower beyond sampling noise"
    assert v["demographic_parity"]["selection_rate_gap"] < t["selection_rate_gap"] / 3
    for name, s in v.items():
        for m in ("accuracy", "f1", "selection_rate"):
            assert s[f"{m}_ci"][0] <= s[m] <= s[f"{m}_ci"][1], (name, m)
        for m in ("recall_gap", "selection_rate_gap"):  # a spread is never negative: near zero, its resamples lie above it
            assert 0 <= s[f"{m}_ci"][0] <= s[f"{m}_ci"][1] and s[m] <= s[f"{m}_ci"][1], (name, m)


def test_fairness_comparison_gives_the_same_bytes_for_the_same_seed(census_rows):
    df, y, p, pred = census_rows
    table = slice_metrics(df, y, pred, ["sex"], n_boot=100, seed=0, **KW)
    w = bootstrap_weights(len(y), 100, 0)
    a, b, c = (json.dumps(fairness_comparison(df, y, p, pred, "sex", table, w, 0.95, MITIGATION, seed=s), allow_nan=False)
               for s in (1, 1, 2))
    assert a == b and a != c


# --- on the pipeline's real outputs ---------------------------------------------------------------------

def test_pipeline_fairness_json_compares_the_served_model_with_the_mitigated_variants(pipeline_repo):
    fairness = json.loads((pipeline_repo / "metrics/fairness.json").read_text())
    test = json.loads((pipeline_repo / "metrics/test.json").read_text())
    settings = fairness["settings"]
    assert settings["n_boot"] >= 500 and set(fairness) == {"settings", *settings["mitigation"]["sensitive"]} and "sex" in fairness
    v = fairness["sex"]["variants"]
    assert list(v) == ["as_trained", "one_threshold", "equalized_odds", "demographic_parity"]
    assert v["as_trained"]["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    assert v["as_trained"]["f1"] == pytest.approx(test["f1"], abs=1e-9)
    assert v["equalized_odds"]["recall_gap"] <= v["as_trained"]["recall_gap"] + 0.02
    assert v["demographic_parity"]["selection_rate_gap"] < 0.05 < v["as_trained"]["selection_rate_gap"]
    slices = json.loads((pipeline_repo / "metrics/slices.json").read_text())
    assert slices["settings"]["intersections"] == [SEX_RACE]
    assert sum(s["n"] for s in slices["slices"][SEX_RACE].values()) == slices["overall"]["n"]
    assert set(slices["calibration"]["groups"]) == {"sex", "race", SEX_RACE}
    assert slices["calibration"]["overall"]["ece"] == pytest.approx(test["ece"], abs=1e-6)  # numpy vs torch: float32 apart
    assert SEX_RACE in json.loads((pipeline_repo / "metrics/disparity.json").read_text())


def test_pipeline_slices_outputs_are_the_same_bytes_when_run_again(pipeline_repo, tmp_path):
    "Same params, same model, same bytes: run_slices outside DVC writes what the stage wrote."
    params = load_params(pipeline_repo / "params.yaml")
    keys = ("slice_txt", "slices_json", "disparity_json", "fairness_json")
    wrote = {k: getattr(params.paths, k) for k in keys}
    run_slices(params.slices, params.paths.model_copy(update={k: str(tmp_path / f"{k}.out") for k in keys}))
    for k in keys:
        assert (tmp_path / f"{k}.out").read_bytes() == open(wrote[k], "rb").read(), k
