"""The real census file: its schema, ranges and categories match census_income.schema."""

import pandas as pd

from census_income.clean import clean_census, find_problems, read_census
from census_income.schema import CATEGORICAL, CATEGORIES, CLASSES, COLUMNS, CONTINUOUS, RANGES


def test_raw_file_has_the_schema_columns_and_row_count(census_path):
    df = read_census(census_path)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 32_561
    assert find_problems(df) == {}


def test_every_category_in_the_schema_occurs_in_the_data(census_path):
    df = read_census(census_path)
    for col in CATEGORICAL:
        assert set(df[col]) == set(CATEGORIES[col]), col


def test_clean_file_is_typed_stripped_and_deduplicated(census_path):
    clean, report = clean_census(census_path)
    assert report["duplicates_dropped"] == 24
    assert len(clean) == report["rows_written"] == 32_537
    assert not clean.duplicated().any()
    for col in CONTINUOUS:
        lo, hi = RANGES[col]
        assert pd.api.types.is_integer_dtype(clean[col]) and clean[col].between(lo, hi).all(), col
    for col in CATEGORICAL + ("salary",):
        assert (clean[col] == clean[col].str.strip()).all(), col
    assert set(clean["salary"]) == set(CLASSES)
    assert report["missing_marked"] == {"workclass": 1836, "occupation": 1843, "native-country": 582}
