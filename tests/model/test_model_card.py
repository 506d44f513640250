"""The model card: every number in it is found in the files it is generated from, and its tables say the right thing."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from census_income.card_markdown import model_card
from census_income.pipeline import load_params
from census_income.report import load_results, result_files
from census_income.slice_stats import bootstrap_weights, disparity, slice_metrics
from census_income.slices import slices_report

SECTIONS = ("Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
            "Quantitative analyses", "Ethical considerations", "Caveats and recommendations")
# Numbers of the prose that no metrics file holds, each with its reason.
NOT_METRICS = {"1994": "year of the census extract (UCI Adult)"}
NUMBER = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?)(%?)(?![.]?\w)")


def numbers_in(card: str) -> list[str]:
    "Every number token in the card, code spans (versions, file names, `>50K`) left out."
    text = re.sub(r"`[^`]*`", " ", card)
    return [num + pct for num, pct in NUMBER.findall(text)]


def numeric_leaves(obj) -> list[float]:
    "Every number in a JSON document."
    if isinstance(obj, dict):
        return [x for k, v in obj.items() if k != "feature_names" for x in numeric_leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in numeric_leaves(v)]
    return [float(obj)] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


def untraced(card: str, sources: list[float]) -> list[str]:
    "Numbers of the card that no source value gives when rounded as printed."
    bad = []
    for token in numbers_in(card):
        text, pct = token.rstrip("%"), token.endswith("%")
        digits = len(text.split(".")[1]) if "." in text else 0
        if text in NOT_METRICS:
            continue
        if digits == 0 and not pct:
            ok = any(s == int(text) for s in sources)
        else:
            ok = any(f"{(100 * s if pct else s):.{digits}f}" == text for s in sources)
        if not ok:
            bad.append(token)
    return bad


def row(card: str, first: str) -> list[str]:
    "The cells of the Markdown table row starting with `first`."
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            return cells
    raise AssertionError(f"no table row {first!r}")


@pytest.fixture(scope="module")
def toy_results() -> dict:
    "Results in the shape of the real files, the slice part made by census_income.slices on random rows."
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"sex": rng.choice(["Female", "Male"], 800), "race": rng.choice(["White", "Black", "Other"], 800, p=[0.6, 0.36, 0.04])})
    y = (rng.random(800) < 0.3).astype(int)
    pred = np.where(rng.random(800) < 0.8, y, 1 - y)
    table = slice_metrics(df, y, pred, ["sex", "race"], n_boot=200, seed=0, level=0.95, min_support=50, min_class=10)
    w = bootstrap_weights(800, 200, 0)
    disp = {a: disparity(df, y, pred, a, table, w, level=0.95) for a in ("sex", "race")}
    m = {"accuracy": 0.8123, "precision": 0.6234, "recall": 0.7345, "f1": 0.6745, "roc_auc": 0.8812, "log_loss": 0.3456,
         "brier": 0.1123, "ece": 0.0211, "threshold": 0.4123, "n": 800}
    return {
        "manifest": {"version": "abc123def456", "threshold": 0.4123,
                     "architecture": {"class": "IncomeEnsemble", "members": 1, "n_in": 31, "n_numeric": 6, "temperature": 1.3456,
                                      "n_frequencies": 12, "sigma": 7.89, "d_embedding": 5, "depth": 2, "hidden": 17, "dropout": 0.1234},
                     "params": {"lr": 0.0012345, "weight_decay": 0.00012, "batch_size": 256, "patience": 6, "max_epochs": 23,
                                "seed": 3, "n_folds": 4, "served": "student", "distill": {"transfer": 3, "swap": 0.25, "alpha": 0.4, "depth": 1, "hidden": 11}},
                     "metrics": {"epochs": [13]},
                     "baseline": {"age": 37, "education": "HS-grad", "marital-status": "Married-civ-spouse",
                                  "occupation": "Prof-specialty", "sex": "Male", "hours-per-week": 40}},
        "training": {"rows": 3200},
        "test": m, "dev": m | {"n": 150, "f1": 0.6611}, "baselines": {"logistic_regression": m | {"roc_auc": 0.8711},
                                                                      "hist_gradient_boosting": m | {"roc_auc": 0.9011}},
        "calibration": {"temperature": 1.3456, "n_bins": 15, "test": {"before": m | {"ece": 0.0567, "brier": 0.1187}, "after": m},
                        "held_out": {"before": m | {"ece": 0.0432}, "after": m | {"ece": 0.0101}},
                        "reliability": {w: {"mean_probability": [0.1, 0.5], "share_positive": [0.12, 0.45], "rows": [10, 5]} for w in ("before", "after")}},
        "comparison": {"served": "student", "first_member": m | {"roc_auc": 0.8634},
                       "candidates": {"ensemble": {"networks": 4, "depth": 2, "hidden": 17, "multiply_adds": 29876, "epochs": [9, 11, 8, 10],
                                                   "test": m | {"roc_auc": 0.8856, "f1": 0.6812}, "held_out": m},
                                      "student": {"networks": 1, "depth": 1, "hidden": 11, "multiply_adds": 7469, "epochs": [13], "test": m, "held_out": m}},
                       "auc_gap": {"hist_gradient_boosting": {"gap": -0.0199, "low": -0.0312, "high": -0.0088, "level": 0.95,
                                                              "n_boot": 200},
                                   "ensemble": {"gap": -0.0044, "low": -0.0091, "high": 0.0002, "level": 0.95, "n_boot": 200}}},
        "slices": slices_report(table, disp, {"threshold": 0.4123, "n_boot": 200, "seed": 0, "ci_level": 0.95,
                                              "min_support": 50, "min_class": 10}),
        "disparity": {},
        "importance": {"metric": "roc_auc drop", "repeats": 7, "ci_level": 0.95,
                       "attributes": [{"attribute": "capital-gain", "auc_drop": 0.0612, "low": 0.0534, "high": 0.0701},
                                      {"attribute": "race", "auc_drop": 0.0003, "low": -0.0004, "high": 0.0009}]},
        "fairness": {"settings": {"mitigation": {"sensitive": ["sex"], "folds": 2}},
                   "sex": {"variants": {k: {key: x for m, v in zip(("accuracy", "f1", "recall_gap", "selection_rate_gap"), vals, strict=True)
                                            for key, x in ((m, v), (f"{m}_ci", [round(v - 0.0211, 4), round(v + 0.0123, 4)]))}
                                        for k, vals in {"as_trained": (0.8512, 0.7401, 0.0874, 0.2489), "one_threshold": (0.8756, 0.7151, 0.0959, 0.1709),
                                                        "equalized_odds": (0.8663, 0.6737, 0.0166, 0.0987), "demographic_parity": (0.8581, 0.6622, 0.3251, 0.0031)}.items()}}},
    }


def sources_of(res: dict) -> list[float]:
    return [x for doc in res.values() for x in numeric_leaves(doc)]


def test_every_number_of_a_card_is_traced_to_its_inputs(toy_results):
    card = model_card(toy_results)
    assert len(numbers_in(card)) > 60
    assert untraced(card, sources_of(toy_results)) == []
    for s in SECTIONS:
        assert f"\n## {s}\n" in card, s


def test_the_check_catches_a_number_that_is_not_in_the_inputs(toy_results):
    card = model_card(toy_results)
    f1 = f"{toy_results['slices']['overall']['f1']:.3f}"
    wrong = f"{toy_results['slices']['overall']['f1'] + 0.0123:.3f}"
    assert f"| F1 | {f1} [" in card
    assert untraced(card.replace(f"| F1 | {f1} [", f"| F1 | {wrong} ["), sources_of(toy_results)) == [wrong]
    assert untraced(card + "\nAccuracy was 99.9% in production.\n", sources_of(toy_results)) == ["99.9%"]


def test_the_card_counts_training_and_held_out_rows_and_says_whether_the_baseline_leads(toy_results):
    card = model_card(toy_results)
    training = card.split("\n## Training data\n")[1].split("\n## ")[0]
    assert "3200 rows, cut into 4 stratified folds" in training and "that fold (150 rows)" in training
    # the toy baseline: ROC AUC 0.901 above the served 0.881, F1 equal
    assert "baseline leads the served model on the test split (ROC AUC 0.901 against 0.881)" in card
    behind = toy_results | {"baselines": {"hist_gradient_boosting": toy_results["test"] | {"roc_auc": 0.8711, "f1": 0.6611}}}
    card = model_card(behind)
    assert "baseline does not lead the served model on the test split (ROC AUC 0.871 against 0.881, F1 0.661 against 0.674)" in card
    assert "leads the served" not in card


def test_number_parser_skips_identifiers():
    assert numbers_in("`>50K` 10th 1st-4th abc123 0.719 [0.701, 0.735] 24.1% seed 42. n=185") == [
        "0.719", "0.701", "0.735", "24.1%", "42", "185"]


def test_pipeline_model_card_matches_the_metrics_files(pipeline_repo):
    card = (pipeline_repo / "reports/model_card.md").read_text()
    paths = load_params(pipeline_repo / "params.yaml").paths
    res = load_results(paths)
    assert untraced(card, sources_of(res)) == []
    assert all(path.is_relative_to(pipeline_repo) and path.is_file() for path in result_files(paths).values())
    train_rows = sum(1 for _ in open(paths.train_csv)) - 1  # the training split as the preprocess stage wrote it
    assert f"{train_rows} rows, cut into" in card
    for s in SECTIONS:
        assert f"\n## {s}\n" in card, s
    # the headline table, cell by cell, against the files themselves
    test = json.loads((pipeline_repo / "metrics/test.json").read_text())
    dev = json.loads((pipeline_repo / "metrics/dev.json").read_text())
    base = json.loads((pipeline_repo / "metrics/baselines.json").read_text())
    overall = json.loads((pipeline_repo / "metrics/slices.json").read_text())["overall"]
    comparison = json.loads((pipeline_repo / "metrics/comparison.json").read_text())
    other = next(name for name in comparison["candidates"] if name != comparison["served"])
    assert row(card, "ROC AUC")[1:] == [f"{x['roc_auc']:.3f}" for x in (test, dev, comparison["candidates"][other]["test"],
                                                                       base["logistic_regression"], base["hist_gradient_boosting"])]
    f1 = row(card, "F1")
    lo, hi = overall["f1_ci"]
    assert f1[1] == f"{test['f1']:.3f} [{lo:.3f}, {hi:.3f}]" and f1[2] == f"{dev['f1']:.3f}"
    manifest = json.loads((pipeline_repo / "model/manifest.json").read_text())
    assert f"`{manifest['version']}`" in card and f"at least {manifest['threshold']:.3f}" in card
    # the disparity rows
    disp = json.loads((pipeline_repo / "metrics/disparity.json").read_text())
    for attr in ("sex", "race"):
        cells = [c for c in card.splitlines() if c.startswith(f"| `{attr}` | recall |")]
        g = disp[attr]["recall"]
        assert len(cells) == 1 and f"| {g['gap']:.3f} [{g['gap_ci'][0]:.3f}, {g['gap_ci'][1]:.3f}] |" in cells[0]
