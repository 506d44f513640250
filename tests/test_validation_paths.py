"""A few values are judged one by one, a long column in vectorised passes: the two give the same problems, word for word."""

import numpy as np
import pytest

from census_income.schema import CONTINUOUS, LABEL
from census_income.validation import EXAMPLE, FEW_VALUES, RULES, RecordError, column_problems, record_columns

# numbers, near misses and non-numbers, as JSON clients, Python callers and CSV fields give them
VALUES = [41, 41.0, 41.5, -3, 0, 99, 100, 1e300, 10**400, -(10**400), 10**5000, float("nan"), float("inf"), -float("inf"), True, False,
          None, "41", "41.0", "4.1e1", " 41", "41 ", "0x29", "", "abc", "١٢", [41], {"a": 1}, np.int64(41), np.float64(41.0),
          np.float32(41.5), "1e400", "-0", "007", 2**53 + 1, 17, 90, 16, "0.999999999999999999999", "41.00000000000000000001",
          "410e-1", "4100000000000000000001e-20", "1e-9999999999999999999", "0e-9999999999999999999", "1.5e9999999999999999999"]


@pytest.mark.parametrize("text", [True, False])
@pytest.mark.parametrize("column", CONTINUOUS)
def test_value_by_value_and_vectorised_judge_alike(column, text):
    assert len(VALUES) > FEW_VALUES  # the whole list goes through the vectorised pass
    cols = {c: ["x"] * len(VALUES) for c in RULES if c not in CONTINUOUS and c != LABEL}  # categories: judged apart
    long = column_problems({**cols, **{c: [RULES[c].low] * len(VALUES) for c in CONTINUOUS}, column: VALUES}, text=text)
    one_by_one = []
    for i, v in enumerate(VALUES):  # each value alone: the value-by-value path
        single = {**{c: ["x"] for c in cols}, **{c: [RULES[c].low] for c in CONTINUOUS}, column: [v]}
        one_by_one += [(i, c, m) for _, c, m in column_problems(single, text=text)]
    assert [p for p in long if p[1] == column] == [p for p in one_by_one if p[1] == column]
    assert sum(p[1] == column for p in long) >= 15  # most of the list is wrong: the comparison covers every kind of problem


def test_one_record_is_checked_as_before():
    with pytest.raises(RecordError, match=r"record 0: age: 200 is outside the allowed range 0\.\.120"):
        record_columns([EXAMPLE | {"age": 200}])
    with pytest.raises(RecordError, match=r"record 0: age: '41' is not a whole number"):
        record_columns([EXAMPLE | {"age": "41"}])
    assert record_columns([EXAMPLE])["age"] == [EXAMPLE["age"]]


def test_a_number_too_long_to_write_is_described_not_a_crash():
    "10**5000 from a Python caller: Python refuses to write an int of over 4,300 digits; the message describes it."
    with pytest.raises(RecordError, match=r"^record 0: age: a number of about 5,001 digits is not a whole number"):
        record_columns([EXAMPLE | {"age": 10**5000}])


@pytest.mark.parametrize("column", [c for c in RULES if c != LABEL])
def test_a_record_taken_as_plain_is_one_the_rules_accept(column):
    "The few-records shortcut (`plainly_valid`) never lets through what `column_problems` refuses, for any value of any column."
    from census_income.schema import FEATURES
    from census_income.validation import plainly_valid

    values = VALUES + list(RULES[column].allowed) + ["?", "Martian", RULES[column].allowed[:1] * 2, b"Private"]
    rows = [(v, [v if c == column else EXAMPLE[c] for c in FEATURES]) for v in values]
    plain = [(v, row) for v, row in rows if plainly_valid(row)]
    assert len(plain) >= 1  # the example's own value at least
    for v, row in plain:
        assert column_problems({c: [x] for c, x in zip(FEATURES, row, strict=True)}, text=False) == [], (column, v)
    assert plainly_valid([EXAMPLE[c] for c in FEATURES])


@pytest.mark.parametrize(("text", "whole"), [("0.999999999999999999999", False), ("41.00000000000000000001", False),
                                             ("4100000000000000000001e-20", False), ("41.0", True), ("410e-1", True),
                                             ("41e-9999999999999999999", False)])
def test_a_csv_number_is_judged_by_its_digits_not_by_its_float(text, whole):
    "A float reads 0.999999999999999999999 as 1.0: a CSV field is a whole number only if its digits are one."
    assert float(text).is_integer()  # what a check of the float alone would accept (41e-9999999999999999999: 0.0)
    found = column_problems({c: [text if c == "age" else EXAMPLE[c]] for c in RULES if c != LABEL})
    assert found == ([] if whole else [(0, "age", f"age: '{text}' is not a whole number (allowed: 0..120)")])
