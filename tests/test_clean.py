"""Bad census files are refused with the line, column and value named, and nothing is written."""

import subprocess
from pathlib import Path

import pytest
import yaml

from census_income.clean import CensusDataError, clean_census
from census_income.fileio import write_csv
from testkit import ROOT, tool_env

HEADER = (
    "age, workclass, fnlgt, education, education-num, marital-status, occupation, relationship, race, sex, "
    "capital-gain, capital-loss, hours-per-week, native-country, salary\n"
)
GOOD = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        (HEADER, "no data rows"),
        (HEADER.replace(" education-num,", ""), "missing column(s) ['education-num']"),
        (HEADER + GOOD.replace("39,", "thirty-nine,"), "line 2: age: 'thirty-nine' is not a whole number (allowed: 0..120)"),
        (HEADER + GOOD + GOOD.replace("39,", "-4,"), "line 3: age: -4 is outside the allowed range 0..120"),
        (HEADER + GOOD.replace("State-gov", "Stat-gov"), "line 2: workclass: 'Stat-gov' is not an allowed value"),
        (HEADER + GOOD.replace("<=50K", "50K"), "line 2: salary: '50K' is not an allowed value; allowed: <=50K, >50K"),
        (HEADER + GOOD + "39, State-gov, 77516\n", "line 3: expected 15 fields, found 3"),
        (HEADER + GOOD.replace(" 13,", " ,"), "line 2: education-num: '' is not a whole number"),
        (HEADER + GOOD.replace(" 40,", " 40.5,"), "line 2: hours-per-week: '40.5' is not a whole number"),
    ],
)
def test_bad_files_name_the_place_of_the_problem(tmp_path, text, expected):
    with pytest.raises(CensusDataError) as err:
        clean_census(write(tmp_path, text))
    assert expected in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CensusDataError, match="no such file"):
        clean_census(tmp_path / "nope.csv")


def test_many_problems_are_counted_and_the_first_ones_shown(tmp_path):
    bad = GOOD.replace("White", "Green")
    with pytest.raises(CensusDataError) as err:
        clean_census(write(tmp_path, HEADER + bad * 25))
    assert "25 problem(s)" in str(err.value) and "and 15 more" in str(err.value)


def test_question_mark_is_kept_as_a_category(tmp_path):
    row = GOOD.replace("State-gov", "?").replace("Adm-clerical", "?").replace("United-States", "?")
    clean, report = clean_census(write(tmp_path, HEADER + row))
    assert clean.loc[0, "workclass"] == clean.loc[0, "occupation"] == clean.loc[0, "native-country"] == "?"
    assert report["missing_marked"] == {"workclass": 1, "occupation": 1, "native-country": 1}


def test_clean_stage_writes_nothing_for_a_bad_file(tmp_path):
    "The clean notebook run by papermill on a bad file fails and leaves no output behind."
    bad = write(tmp_path, HEADER + GOOD + GOOD.replace("Male", "M"))
    out = tmp_path / "out" / "clean.csv"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"] = params["paths"] | {"raw_csv": str(bad), "clean_csv": "out/clean.csv"}  # outputs: relative to the file
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        ["papermill", "-k", "python3", "--cwd", str(ROOT / "nbs"), "--no-progress-bar", str(ROOT / "nbs/01_clean.ipynb"),
         str(tmp_path / "run.ipynb"), "-p", "params_file", str(tmp_path / "params.yaml"), "-y", "quick: false"],
        env=tool_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "line 3: sex: 'M' is not an allowed value" in proc.stdout + proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out/*"))


def test_write_csv_leaves_no_temporary_file_on_failure(tmp_path):
    class Boom:
        def to_csv(self, path, **kwargs):
            Path(path).write_text("partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_csv(Boom(), tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []
