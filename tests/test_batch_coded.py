"""The batch job's Arrow path (each block kept in Arrow, each column's distinct values judged and encoded once) gives the
outputs the column path gives, byte for byte: on a file with every kind of bad line, the scored rows, their probabilities,
the rejects with their reasons and the drift counts are those of `read_blocks` + `column_problems` + `predict_proba`."""

import csv
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from census_income.batch import score_csv
from census_income.batch_blocks import DriftCheck
from census_income.clean import read_blocks
from census_income.reference import fit_reference, tally
from census_income.schema import CATEGORICAL, CATEGORIES, CONTINUOUS, FEATURES, RANGES
from census_income.toy import toy_predictor
from census_income.validation import as_numbers, column_problems
from testkit import ROOT

SPOILS = [  # what a line can get wrong: (field index or None for the whole line, how)
    (None, lambda r: r[:-2]), (8, "Martian"), (0, "130"), (12, "forty"), (0, "39.5"), (2, "1e3"), (1, "?"), (6, "?"),
    (None, lambda r: [f" {v}  " for v in r]), (3, ""), (10, "-5"), (0, "nan"), (0, "inf"), (0, "0x1F"), (5, "married"),
    (0, "1" * 400), (None, lambda r: [*r, "extra"]), (14, "maybe"), (0, "٣٩"), (0, "+39"), (0, "039"), (0, "-0"),
    (12, "40.0"), (None, lambda r: [*r[:8], "Other", "Female", *r[10:]]), (0, '"39"'),
]
_ROW = b"39,State-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States,<=50K"
RAW_LINES = [b"", b"   ", b",,,,,,,,,,,,,,", b"x" * 70_000,  # blank, empty fields, overlong
             _ROW.replace(b"State", b"St\xffate"), b"39,St\xffate,77516",  # bytes that are not UTF-8, with 15 fields and with 3
             _ROW.replace(b"Private", b"Pri\rvate").replace(b"State", b"St\rate"), _ROW + b"\r\r",  # carriage returns inside
             _ROW.replace(b"-gov", b"\x00gov"), _ROW.replace(b"State", b'St"ate'), b'"' + _ROW]  # a NUL, lone quotes


def fault_file(path: Path, rows: int, seed: int) -> None:
    "A census CSV of `rows` lines drawn from data/census.csv, a third of them spoiled in one of every way, CRLF ends among them."
    with open(ROOT / "data" / "census.csv", newline="") as f:
        header, *source = list(csv.reader(f, skipinitialspace=True))
    rng = random.Random(seed)
    with open(path, "wb") as out:
        out.write(b"\xef\xbb\xbf" + ",".join(header).encode() + b"\n")
        for i in range(rows):
            row = list(rng.choice(source))
            kind = rng.randrange(3 * (len(SPOILS) + len(RAW_LINES)))
            if kind < len(RAW_LINES):
                out.write(RAW_LINES[kind] + b"\n")
                continue
            if kind < len(RAW_LINES) + len(SPOILS):
                at, how = SPOILS[kind - len(RAW_LINES)]
                row = how(row) if at is None else [*row[:at], how, *row[at + 1:]]
            out.write(",".join(row).encode() + (b"\r\n" if i % 97 == 0 else b"\n"))


def column_path(path: Path, predictor, block_bytes: int) -> tuple[pd.DataFrame, list[list[str]], dict]:
    "What the job must write, built as the column path builds it: pandas frames, `column_problems`, `predict_proba`."
    scored, rejects, counts = [], [], []
    for frame, malformed in read_blocks(path, FEATURES, block_bytes):
        rejects += [[str(r["line"]), r["reason"], r["row"]] for r in malformed]
        problems = {}
        for i, _, message in column_problems(frame):
            problems.setdefault(i, []).append(message)
        rejects += [[str(frame.index[i]), "; ".join(m), ",".join(frame.iloc[i])] for i, m in problems.items()]
        good = frame.drop(index=frame.index[list(problems)])
        columns = {c: good[c].tolist() for c in CATEGORICAL} | {c: as_numbers(good[c].tolist()) for c in CONTINUOUS}
        p = predictor.predict_proba(columns)
        scored.append(good.assign(prediction=predictor.labels(p), probability=[repr(float(v)) for v in p]))
        counts.append(columns)
    return pd.concat(scored), sorted(rejects, key=lambda r: int(r[0])), counts


@pytest.mark.parametrize("block_bytes", [16384, 1 << 20])  # 16 KiB: 70 blocks, and 70 KB lines across them
def test_the_arrow_path_writes_what_the_column_path_computes(tmp_path, params, block_bytes):
    predictor = toy_predictor()
    path = tmp_path / "faults.csv"
    fault_file(path, 6000, seed=block_bytes)
    every = pd.DataFrame({c: (list(CATEGORIES[c]) * 42)[:42] if c in CATEGORICAL else np.linspace(*RANGES[c], 42).round()
                          for c in FEATURES})
    profile = fit_reference(every)
    report = score_csv(path, tmp_path / "scored.csv", tmp_path / "rejects.csv", predictor, block_bytes,
                       DriftCheck(profile, params.batch.drift))
    expected, rejects, blocks = column_path(path, predictor, block_bytes)

    got = pd.read_csv(tmp_path / "scored.csv", dtype=str, keep_default_na=False)
    assert len(got) > 4000 and len(rejects) > 1000  # the file holds every kind of line, in number
    assert got["line"].astype(int).tolist() == expected.index.tolist()
    for col in [*expected.columns[:-2], "prediction"]:
        assert got[col].tolist() == expected[col].tolist(), col
    assert [repr(float(v)) for v in got["probability"]] == expected["probability"].tolist()  # every bit of every probability
    with open(tmp_path / "rejects.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f))[1:] == rejects
    cells = {c: [sum(x) for x in zip(*(tally(profile, b)["cells"][c] for b in blocks), strict=True)] for c in FEATURES}
    assert report["drift_counts"]["cells"] == cells
    assert report["rows_read"] == len(expected) + len(rejects)
    assert Counter(r[1].split(":")[0] for r in rejects)["race"] > 0
    reasons = " ".join(r[1] for r in rejects)  # each kind of unreadable line is a reject of its own, with its reason
    for words in ("a carriage return (\\r) inside the line", "(and bytes that are not UTF-8)", "byte 0xff is not UTF-8",
                  "'State\\x00gov' is not an allowed value", "'St\"ate-gov' is not an allowed value", "is longer than"):
        assert words in reasons, words
