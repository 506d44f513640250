"""The machine-readable model card (reports/model_card.json): valid CycloneDX 1.6 by the library's own validator (and
a tampered card is not), tied to the model's version, every metric with an interval around it, the threshold-free
metrics recomputed by scikit-learn from the test split's predictions, and the same facts as the Markdown card."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from sklearn.metrics import brier_score_loss, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from census_income.card import USES, CardError, card_text, validate_card
from census_income.fileio import read_clean
from census_income.pipeline import load_params
from census_income.predict import Predictor
from census_income.schema import LABEL, POSITIVE
from census_income.slice_stats import bootstrap_weights
from testkit import ROOT


def library_errors(card: dict) -> str | None:
    "What cyclonedx-python-lib's strict 1.6 validator says about a card (None: valid)."
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(card))
    return None if error is None else str(error)


def model_of(card: dict) -> dict:
    return next(c for c in card["components"] if c["type"] == "machine-learning-model")


def metrics_of(card: dict) -> list[dict]:
    return model_of(card)["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]


def overall(card: dict, kind: str) -> tuple[float, float, float]:
    "Value, low and high of an overall metric (the whole test split)."
    m = next(m for m in metrics_of(card) if m["type"] == kind and m["slice"].startswith("test split ("))
    ci = m["confidenceInterval"]
    return float(m["value"]), float(ci["lowerBound"]), float(ci["upperBound"])


def prop(card: dict, name: str) -> str:
    return next(p["value"] for p in model_of(card)["modelCard"]["properties"] if p["name"] == "census-income:" + name)


def is_size(kind: str) -> bool:
    "Whether a metric is a non-negative size that resampling biases upward: a gap between groups, or ECE."
    return kind == "ECE" or kind.endswith("gap") or kind.endswith("gap between groups")


def check_outputs(root: Path) -> None:
    "A repository's card against its own outputs: schema, version, intervals, and the numbers of the files it reads."
    paths = load_params(root / "params.yaml").paths
    text = Path(paths.card_json).read_text()
    card = json.loads(text)
    assert library_errors(card) is None
    manifest = json.loads(Path(paths.model_dir, "manifest.json").read_text())
    assert model_of(card)["version"] == manifest["version"] == Predictor.load(paths.model_dir).version
    assert float(prop(card, "decision_threshold")) == pytest.approx(manifest["threshold"], rel=1e-3)
    for m in metrics_of(card):  # every metric: an interval that holds its point estimate, but for a size
        v, lo, hi = float(m["value"]), float(m["confidenceInterval"]["lowerBound"]), float(m["confidenceInterval"]["upperBound"])
        # a gap between groups taken as its size, or ECE: resamples lean above the estimate, so near 0 a percentile
        # interval can lie wholly above it (a scratch run's ThresholdOptimizer recall gap: 0.000773 in [0.001313, 0.07581])
        holds = (0 <= lo <= hi and 0 <= v <= hi) if is_size(m["type"]) else lo <= v <= hi
        assert holds, m
    test = json.loads(Path(paths.test_json).read_text())  # the train stage's point estimates
    for kind, key in (("ROC AUC", "roc_auc"), ("log-loss", "log_loss"), ("Brier score", "brier"), ("ECE", "ece")):
        assert overall(card, kind)[0] == pytest.approx(test[key], rel=1e-3), kind
    slices = json.loads(Path(paths.slices_json).read_text())
    for kind in ("F1", "precision", "recall", "accuracy"):
        o = slices["overall"][kind.lower()]
        lo, hi = slices["overall"][kind.lower() + "_ci"]
        assert overall(card, kind) == pytest.approx((o, lo, hi), rel=1e-3), kind
    disparity = json.loads(Path(paths.disparity_json).read_text())
    gaps = {m["slice"]: float(m["value"]) for m in metrics_of(card) if m["type"] == "largest recall gap between groups"}
    for attr in slices["settings"]["protected"]:
        g = disparity[attr]["recall"]
        assert gaps[f"test split, {attr}: {g['max_group']} minus {g['min_group']}"] == pytest.approx(g["gap"], rel=1e-3)
    fairness = json.loads(Path(paths.fairness_json).read_text())
    for attr in fairness["settings"]["mitigation"]["sensitive"]:
        assert any(m["slice"].startswith(f"test split, {attr}, ThresholdOptimizer") for m in metrics_of(card))
    md = Path(paths.card_md).read_text()
    assert all(sentence in md for sentence in USES.values())  # one source of facts: the same sentences in both cards
    considerations = model_of(card)["modelCard"]["considerations"]
    assert considerations["users"] == [USES["users"]] and considerations["useCases"] == [USES["use"]]
    index = Path(paths.index_html).read_text()
    assert f'href="{Path(paths.card_json).name}"' in index and f'href="{Path(paths.datasheet_md).name}"' in index


@pytest.mark.skipif(not (ROOT / "reports" / "model_card.json").is_file(), reason="no pipeline outputs here (make pipeline)")
def test_committed_card_matches_the_committed_outputs():
    check_outputs(ROOT)


def test_pipeline_card_matches_its_outputs(pipeline_repo):
    check_outputs(pipeline_repo)


@pytest.fixture(scope="module")
def quick_card(quick_run) -> tuple[dict, dict, str]:
    "The quick run's params, what its report stage returned, and the card it wrote."
    params, ran = quick_run
    return params, ran["report"], Path(params.paths.card_json).read_text()


def test_quick_card_validates_with_the_library_and_names_its_model(quick_card, quick_predictor):
    params, report, text = quick_card
    assert text == report["card_json"]
    card = json.loads(text)
    assert library_errors(card) is None
    validate_card(text)  # the stage's own check agrees
    assert card["specVersion"] == "1.6" and model_of(card)["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    assert model_of(card)["version"] == quick_predictor.version
    assert model_of(card)["bom-ref"].endswith(quick_predictor.version)


@pytest.mark.parametrize("tamper", [
    lambda c: c.pop("bomFormat"),
    lambda c: c.update(specVersion="1.6", components=[{**c["components"][0], "type": "machine-learning-modle"}]),
    lambda c: metrics_of(c)[0].update(value=0.93),  # a number where the schema wants text
    lambda c: metrics_of(c)[0]["confidenceInterval"].update(level="0.95"),  # a property the schema does not define
    lambda c: model_of(c)["modelCard"].update(threshold="0.4"),
])
def test_a_tampered_card_fails_validation(quick_card, tamper):
    bad = json.loads(quick_card[2])
    tamper(bad)
    assert library_errors(bad) is not None
    with pytest.raises(CardError, match="CycloneDX 1.6"):
        validate_card(json.dumps(bad))


def test_card_refuses_results_of_another_model(quick_card):
    res = copy.deepcopy(quick_card[1]["results"])
    res["slices"]["settings"]["model_version"] = "0" * 32
    with pytest.raises(CardError, match="different models"):
        card_text(res)


def test_quick_card_metrics_come_from_the_test_split_predictions(quick_card, quick_predictor):
    "Point estimates and intervals recomputed by scikit-learn from the quick model's probabilities on its test split."
    params, _, text = quick_card
    card, paths = json.loads(text), params.paths
    predictor = quick_predictor
    test = read_clean(paths.test_csv)
    y, p = (test[LABEL] == POSITIVE).to_numpy().astype(int), predictor.predict_proba(test)
    pred = (p >= predictor.threshold).astype(int)
    assert prop(card, "test_rows") == str(len(y))
    settings = json.loads(Path(paths.slices_json).read_text())["settings"]
    weights = bootstrap_weights(len(y), settings["n_boot"], settings["seed"])  # the resamples the card says it used
    assert (prop(card, "n_boot"), prop(card, "seed")) == (str(settings["n_boot"]), str(settings["seed"]))
    q = 100 * (1 - settings["ci_level"]) / 2
    for kind, f in (("ROC AUC", roc_auc_score), ("log-loss", log_loss), ("Brier score", brier_score_loss)):
        boot = [f(y[i], p[i]) for i in (np.repeat(np.arange(len(y)), w.astype(int)) for w in weights)]
        want = (f(y, p), *np.percentile(boot, [q, 100 - q]))
        assert overall(card, kind) == pytest.approx(want, rel=2e-3, abs=1e-4), kind
    for kind, f in (("F1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        v, lo, hi = overall(card, kind)
        assert v == pytest.approx(f(y, pred), abs=1e-4) and lo <= v <= hi, kind


def test_a_card_with_a_link_that_is_no_iri_is_refused(quick_card):
    # the formats are checked, not only the structure: jsonschema-rs parses IRIs without jsonschema's IRI extra
    bad = json.loads(quick_card[2])
    model_of(bad)["externalReferences"] = [{"type": "website", "url": "ht tp://census income"}]
    with pytest.raises(CardError, match="externalReferences/0/url"):
        validate_card(json.dumps(bad))


def test_papermill_starts_without_compiling_an_iri_grammar():
    # constraints.txt holds jsonschema below 4.25, whose format-nongpl extra (pulled in by jupyter-events) would add
    # rfc3987-syntax: a grammar compiled at `import jsonschema`, two thirds of papermill's start (nbformat imports it)
    code = "import sys, papermill.cli; print(sorted(m for m in ('rfc3987_syntax', 'lark') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
