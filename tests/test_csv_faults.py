"""Fault injection for CSV files: one bad line costs that line only, in the batch job and in the cleaning stage.

Each hostile file is built from good census lines with one kind of damage; the batch job (with a small real model,
`quick_model_dir`) must reject exactly the damaged lines with their true line numbers and score every other line, and
`clean_census` must name the same lines. Paths that collide are refused before any work; no temporary file
outlives a job, even one that fails.
"""

import csv
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from census_income.batch import score_csv
from census_income.clean import MAX_LINE_BYTES, CensusDataError, clean_census
from census_income.predict import Predictor
from census_income.schema import COLUMNS, FEATURES
from census_income.validation import EXAMPLE, RecordError, category_error, whole_error

HEADER = ", ".join(COLUMNS).encode()
GOOD = b"39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K"
OTHER = b"50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, <=50K"


def build(tmp_path: Path, bad: dict[int, bytes], n: int = 40, header: bytes = HEADER, prefix: bytes = b"") -> Path:
    "A file of n data lines (lines 2..n+1), good but for the lines in `bad` (line number → its bytes)."
    lines = [header] + [bad.get(i, GOOD if i % 2 else OTHER) for i in range(2, n + 2)]
    path = tmp_path / "in.csv"
    path.write_bytes(prefix + b"\n".join(lines) + b"\n")
    return path


def run_batch(path: Path, predictor: Predictor, chunk_bytes: int = 2048) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    out, rej = path.parent / "out" / "scored.csv", path.parent / "rejects.csv"
    report = score_csv(path, out, rej, predictor, chunk_bytes=chunk_bytes)
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    rejects = pd.read_csv(rej, dtype=str, keep_default_na=False)
    assert not list(path.parent.rglob("*.tmp")), "a temporary file outlived the job"
    return report, scored, rejects


HOSTILE = {  # name: (the damaged lines, the start of each reject's reason)
    "a stray quote before 128 KB of rows": ({5: GOOD.replace(b"State-gov", b'"State-gov')},
                                             {5: "workclass: '\"State-gov' is not an allowed value"}),
    "a Latin-1 byte": ({7: GOOD.replace(b"United-States", b"M\xe9xico")},
                       {7: "native-country: byte 0xe9 is not UTF-8; save the file as UTF-8"}),
    "a record spanning two lines": ({9: b'39, "State-', 10: b'gov", 77516, Bachelors'},
                                    {9: "expected 15 fields, found 2", 10: "expected 15 fields, found 3"}),
    "an overlong field": ({11: GOOD.replace(b"Bachelors", b"B" * (MAX_LINE_BYTES + 10))},
                          {11: f"the line is longer than {MAX_LINE_BYTES} bytes"}),
    "a short line and a long one": ({3: b"39, State-gov", 4: GOOD + b", extra"},
                                    {3: "expected 15 fields, found 2", 4: "expected 15 fields, found 16"}),
    "a NUL byte and a bad number": ({6: GOOD.replace(b"Male", b"Ma\x00le"), 8: GOOD.replace(b" 40,", b" 4e400,")},
                                    {6: "sex: 'Ma\\x00le' is not an allowed value", 8: "hours-per-week: '4e400' is not a whole number"}),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_the_batch_job_rejects_each_damaged_line_alone(tmp_path, quick_predictor, case):
    bad, reasons = HOSTILE[case]
    n = 1200 if "128 KB" in case else 40  # 1,200 lines of ~130 bytes after the stray quote
    report, scored, rejects = run_batch(build(tmp_path, bad, n), quick_predictor)
    assert rejects["line"].astype(int).tolist() == sorted(reasons)
    for line, reason in zip(rejects["line"].astype(int), rejects["reason"], strict=True):
        assert reason.startswith(reasons[line]), (line, reason)
    expected_good = [i for i in range(2, n + 2) if i not in bad]
    assert scored["line"].astype(int).tolist() == expected_good
    assert report["rows_read"] == n == report["rows_scored"] + report["rows_rejected"]


@pytest.mark.parametrize("case", [c for c in HOSTILE if "128 KB" not in c])
def test_the_cleaning_stage_names_the_same_lines(tmp_path, case):
    bad, reasons = HOSTILE[case]
    with pytest.raises(CensusDataError) as err:
        clean_census(build(tmp_path, bad))
    for line in reasons:
        assert f"line {line}: " in str(err.value), str(err.value)


def test_a_byte_order_mark_and_blank_lines_are_fine(tmp_path, quick_predictor):
    path = build(tmp_path, {5: b"", 6: b"\r"}, prefix=b"\xef\xbb\xbf")
    report, scored, rejects = run_batch(path, quick_predictor)
    assert rejects.empty and report["rows_read"] == report["rows_scored"] == 38
    assert clean_census(path)[1]["rows_read"] == 38


@pytest.mark.parametrize(("header", "message"), [
    (HEADER.replace(b"race", b"age"), "column(s) ['age'] named more than once"),
    (HEADER.replace(b", education-num", b""), "missing column(s) ['education-num']"),
    (b"", "the file is empty"),
    (HEADER + b", " + b"x" * 70_000, "line 1 (header): longer than 65,536 bytes"),  # was: its tail read as line 2
    (b"cr-only", "line 1 (header): holds a carriage return inside the line: the file's lines end with CR alone"),
])
def test_a_bad_header_is_one_clear_error(tmp_path, quick_predictor, header, message):
    "A header the job cannot read says why: CR-only line ends made the whole file one header 'naming columns twice'."
    path = build(tmp_path, {}, header=header) if header not in (b"", b"cr-only") else tmp_path / "in.csv"
    if not header:
        path.write_bytes(b"")
    if header == b"cr-only":
        path.write_bytes(b"\r".join([HEADER, GOOD, OTHER]) + b"\r")
    for run in (lambda: run_batch(path, quick_predictor), lambda: clean_census(path)):
        with pytest.raises(CensusDataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            run()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_colliding_paths_are_refused_before_any_work(tmp_path, quick_predictor):
    path = build(tmp_path, {})
    before = path.read_bytes()
    for out, rej, says in [(path, tmp_path / "r.csv", "the output path"), (tmp_path / "o.csv", path, "the rejects path"),
                           (tmp_path / "same.csv", tmp_path / "same.csv", "the output path")]:
        with pytest.raises(ValueError, match=says):
            score_csv(path, out, rej, quick_predictor, chunk_bytes=2048)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("node", ["fifo", "device"])
def test_an_output_that_is_a_fifo_or_a_device_is_refused_and_left_alone(tmp_path, quick_predictor, node):
    "An adversarial run, as root: `--output /dev/null` replaced the device with a plain file. The rename never reaches it."
    path = build(tmp_path, {})
    out = tmp_path / "d" / "out.csv"
    out.parent.mkdir()
    os.mkfifo(out) if node == "fifo" else out.symlink_to("/dev/null")  # a link to a device: what resolve() sees
    for target, rej in ((out, tmp_path / "r.csv"), (tmp_path / "o.csv", out)):
        with pytest.raises(ValueError, match="is not a regular file \\(a FIFO or a device\\)"):
            score_csv(path, target, rej, quick_predictor, chunk_bytes=2048)
    assert (out.is_fifo() if node == "fifo" else Path("/dev/null").is_char_device())
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.csv"] and not (tmp_path / "o.csv").exists()


def test_a_job_that_fails_midway_leaves_nothing_behind(tmp_path, quick_predictor, monkeypatch):
    path = build(tmp_path, {}, n=400)
    calls = []

    def fail_on_the_third_block(columns):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine ran out of memory")
        return Predictor.predict_coded(quick_predictor, columns)

    monkeypatch.setattr(quick_predictor, "predict_coded", fail_on_the_third_block)
    with pytest.raises(RuntimeError, match="out of memory"):
        score_csv(path, tmp_path / "out" / "scored.csv", tmp_path / "rejects.csv", quick_predictor, chunk_bytes=4096)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["in.csv", "out"]


def test_predict_records_refuses_non_finite_numbers(quick_predictor):
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(RecordError, match="age: .* is not a whole number"):
            quick_predictor.predict_records([EXAMPLE | {"age": value}])


def test_the_scored_file_keeps_every_column_of_the_input(tmp_path, quick_predictor):
    report, scored, _ = run_batch(build(tmp_path, {}), quick_predictor)
    assert list(scored.columns) == ["line", *COLUMNS, "prediction", "probability"]
    with open(tmp_path / "in.csv", newline="") as f:
        first = [v.strip() for v in list(csv.reader(f))[1]]
    assert scored.loc[0, list(COLUMNS)].tolist() == first and set(FEATURES) < set(scored.columns)


OTHER_SPACES = ["\x1c", "\x85", "\u00a0", "\u3000", "\u2028", "\x0b", "\x0c"]  # white space to str.strip, not to a CSV


@pytest.mark.parametrize("space", OTHER_SPACES, ids=repr)
def test_only_spaces_and_tabs_are_trimmed_around_a_value(tmp_path, quick_predictor, space):
    "`\\x1c44`, `\\u00a044`, `44\\u3000` were read as 44 (Unicode trimming) where the API refuses them: now a reject each."
    bad = {3: GOOD.replace(b"39,", f"{space}44,".encode(), 1), 4: GOOD.replace(b" 77516,", f" 77516{space},".encode()),
           5: GOOD.replace(b" State-gov", f" {space}State-gov".encode())}
    reasons = {3: whole_error("age", f"{space}44"), 4: whole_error("fnlgt", f"77516{space}"),
               5: category_error("workclass", f"{space}State-gov")}
    path = build(tmp_path, bad | {6: GOOD.replace(b"39,", b"\t44\t,", 1)})  # a tab is trimmed as a space is
    report, scored, rejects = run_batch(path, quick_predictor)
    assert dict(zip(rejects["line"].astype(int), rejects["reason"], strict=True)) == reasons
    assert scored.loc[scored["line"] == "6", "age"].tolist() == ["44"] and report["rows_scored"] == 37
    with pytest.raises(CensusDataError) as err:
        clean_census(path)
    assert err.value.problems == [f"line {line}: {reason}" for line, reason in reasons.items()]
