"""Batch scoring through papermill, as documented: 100,000 rows with bad ones mixed in; drift against the training split."""

import csv
import html
import json
import random
import re

import numpy as np
import pandas as pd
import pytest

from census_income.batch import score_csv
from census_income.batch_blocks import DriftCheck
from census_income.batch_outputs import done_path, drift_path, page_path, read_done
from census_income.batch_page import SHOWN_REJECTS
from census_income.drift import shifted
from census_income.fileio import read_clean, write_csv
from census_income.reference import load_reference, tally
from census_income.schema import CATEGORICAL, CONTINUOUS
from testkit import ROOT, VENV_BIN, run

N_ROWS = 100_000


def spoil(row: list[str], kind: int) -> tuple[list[str], str]:
    "A bad copy of a row, and the start of the reason the reject file must give."
    row = list(row)
    if kind == 0:
        return row[:-2], "expected 15 fields, found 13"
    if kind == 1:
        row[8] = "Martian"
        return row, "race: 'Martian' is not an allowed value"
    if kind == 2:
        row[0] = "130"
        return row, "age: 130 is outside the allowed range 0..120"
    row[12] = "forty"
    return row, "hours-per-week: 'forty' is not a whole number"


@pytest.fixture(scope="module")
def generated(artifacts, tmp_path_factory):
    "A census CSV of 100,000 data rows drawn from the test split, 1% of them spoiled, a few blank lines between."
    with open(artifacts / "data" / "test.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("batch") / "people.csv"
    good, bad, line = {}, {}, 1
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        for i in range(N_ROWS):
            row = rng.choice(rows)
            if rng.random() < 0.002:
                f.write("\n")
                line += 1
            line += 1
            if i % 100 == 37:
                row, reason = spoil(row, rng.randrange(4))
                bad[line] = reason
            else:
                good[line] = row
            out.writerow(row)
    return path, header, good, bad


def test_papermill_batch_scores_good_rows_and_rejects_bad_ones(artifacts, predictor, generated, tmp_path):
    path, header, good, bad = generated
    scored, rejects, executed = tmp_path / "scored.csv", tmp_path / "rejects.csv", tmp_path / "07_batch.ipynb"
    run([str(VENV_BIN / "papermill"), "-k", "python3", "--log-level", "WARNING", "--no-progress-bar", "07_batch.ipynb",
         str(executed), "-p", "input_path", str(path), "-p", "output_path", str(scored), "-p", "reject_path",
         str(rejects), "-p", "model_dir", str(artifacts / "model"), "-p", "chunk_bytes", "300000"], ROOT / "nbs")
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    printed = "".join(t for o in outputs for t in o.get("text", []))
    assert f"{N_ROWS} rows read, {len(good)} scored" in printed and f"{len(bad)} rejected" in printed
    assert len(bad) == N_ROWS // 100
    shown = "".join("".join(o.get("data", {}).get("text/markdown", [])) + "".join(o.get("data", {}).get("text/html", []))
                    for o in outputs)
    assert "No attribute flagged" in shown and "<th>PSI</th>" in shown and "<th>native-country</th>" in shown  # the drift table

    out = pd.read_csv(scored, dtype=str, keep_default_na=False)
    assert out["line"].astype(int).tolist() == sorted(good)  # every good row, in file order, none lost
    assert out[header].values.tolist() == [good[k] for k in sorted(good)]

    rej = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    assert rej["line"].astype(int).tolist() == sorted(bad)
    for line, reason in zip(rej["line"].astype(int), rej["reason"], strict=True):
        assert reason.startswith(bad[line]), (line, reason)

    typed = pd.DataFrame([good[k] for k in sorted(good)], columns=header)
    cols = {c: typed[c].tolist() for c in CATEGORICAL} | {c: typed[c].astype(int).to_numpy() for c in CONTINUOUS}
    p = predictor.predict_proba(cols)
    assert np.abs(out["probability"].astype(float).to_numpy() - p).max() < 1e-6  # float32 products in other chunkings
    assert out["prediction"].tolist() == predictor.labels(p)

    # drift.json beside the scores: the scored rows counted in the training profile's cells, the rejects per attribute
    drift = json.loads(drift_path(scored).read_text())
    reference = load_reference(artifacts / "model" / "reference.json")
    checked = len(good) + sum(not r.startswith("expected") for r in bad.values())  # a malformed line has no attributes
    assert (drift["rows_scored"], drift["rows_checked"], drift["flagged"]) == (len(good), checked, [])
    for col, a in drift["attributes"].items():
        assert [b for _, b in a["cells"].values()] == tally(reference, typed.astype({c: int for c in CONTINUOUS}))["cells"][col]
        wrong = sum(r.startswith(f"{col}: ") for r in bad.values())
        assert a["rejected_share"] == pytest.approx(wrong / checked, abs=1e-6) and (wrong > 0) == (col in ("age", "race", "hours-per-week"))

    # the report page beside the scores, in the run's record: its counts and verdict at the top, the first rejected lines
    page = page_path(scored).read_text(encoding="utf-8")
    assert str(page_path(scored).resolve()) in read_done(done_path(scored))["outputs"]
    summary = dict(page_table(page, "summary"))
    assert (summary["rows read"], summary["drift"]) == (f"{N_ROWS:,}", "no attribute flagged")
    assert summary["rows scored"].startswith(f"{len(good):,} (") and summary["rows rejected"].startswith(f"{len(bad):,} (")
    shown = page_table(page, "rejects")
    assert [where for where, _ in shown] == [f"line {line:,}" for line in sorted(bad)[:SHOWN_REJECTS]]
    assert all(reason.startswith(bad[line]) for (_, reason), line in zip(shown, sorted(bad), strict=False))


def page_table(page: str, table_id: str) -> list[list[str]]:
    "The rows of one of a report page's own tables (`census_income.batch_page`), as the text of their cells."
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.S)] for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_drift_flags_a_shifted_file_and_not_the_test_split(artifacts, predictor, params, tmp_path):
    "The test split raises no flag; the test split with ages +15 years and Craft-repair's share doubled flags age and occupation."
    reference = load_reference(artifacts / "model" / "reference.json", predictor.encoder)
    test = artifacts / "data" / "test.csv"
    moved = write_csv(shifted(read_clean(test), years=15), tmp_path / "moved.csv")
    flagged = {}
    for name, path in (("test", test), ("moved", moved)):
        report = score_csv(path, tmp_path / name / "scored.csv", tmp_path / name / "rejects.csv", predictor,
                           params.batch.chunk_bytes // 64, DriftCheck(reference, params.batch.drift))  # many blocks
        assert json.loads((tmp_path / name / "scored.drift.json").read_text()) == report["drift"]
        assert report["drift"]["rows_scored"] == report["rows_scored"] == len(read_clean(path)) and report["drift"]["judged"]
        flagged[name] = {c: a["reasons"] for c, a in report["drift"]["attributes"].items() if a["flag"]}
    assert flagged["test"] == {}
    assert list(flagged["moved"]) == ["age", "occupation"]
    assert flagged["moved"]["age"][0].startswith("PSI ") and "'Craft-repair' holds" in " ".join(flagged["moved"]["occupation"])


def test_a_profile_of_another_model_is_refused_before_any_work(artifacts, predictor, quick_run, params, tmp_path):
    "The quick run's profile (3,000 rows) with the pipeline's model: refused, nothing written."
    other = load_reference(quick_run[0].paths.reference_json)
    with pytest.raises(ValueError, match="does not fit the model .*the encoder was fitted on"):
        score_csv(artifacts / "data" / "test.csv", tmp_path / "out" / "scored.csv", tmp_path / "rejects.csv", predictor,
                  params.batch.chunk_bytes, DriftCheck(other, params.batch.drift))
    assert not list(tmp_path.iterdir())
