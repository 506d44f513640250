"""The datasheet of the census extract (reports/datasheet.md): Gebru et al.'s seven sections, each part the pipeline
cannot know marked as written by hand, and every number it measures equal to what pandas reads from the data files."""

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from census_income.pipeline import load_params
from testkit import ROOT

SECTIONS = ("Motivation", "Composition", "Collection process", "Preprocessing, cleaning and labelling", "Uses",
            "Distribution", "Maintenance")
MEASURED = ("Composition", "Preprocessing, cleaning and labelling")  # the sections the pipeline writes from the files


def sections(sheet: str) -> dict[str, str]:
    "Each `## ` section's title (its *(by hand)* mark removed) and body."
    parts = re.split(r"^## (.+)$", sheet, flags=re.M)[1:]
    return {title.replace("*(by hand)*", "").strip(): body for title, body in zip(parts[::2], parts[1::2], strict=True)}


def share(n: int, total: int) -> str:
    return f"{n:,} ({100 * n / total:.2f}%)"


def check_datasheet(paths, census_path: Path) -> str:  # paths: a `Paths` from load_params
    "A datasheet against the files it describes, each number read again with pandas alone."
    sheet = Path(paths.datasheet_md).read_text()
    found = sections(sheet)
    assert list(found) == list(SECTIONS)
    for title in SECTIONS:
        marked = f"## {title} *(by hand)*" in sheet
        assert marked == (title not in MEASURED), title
    raw = pd.read_csv(census_path, skipinitialspace=True, dtype=str, keep_default_na=False)
    clean = pd.read_csv(paths.clean_csv, dtype=str, keep_default_na=False)
    comp, prep = found["Composition"], found["Preprocessing, cleaning and labelling"]
    assert f"**Rows:** {len(clean):,} in the cleaned file, of {len(raw):,} read from `{census_path.name}`" in comp
    assert f"**Duplicates dropped:** {int(raw.duplicated().sum()):,} of the rows" in prep
    for label, n in clean["salary"].value_counts().items():
        assert f"`{label}` {share(n, len(clean))}" in comp, label
    for col in clean.columns:
        unknown = int((clean[col] == "?").sum())
        cells = next(line for line in comp.splitlines() if line.startswith(f"| `{col}` |"))
        assert f"| {share(unknown, len(clean))} |" in cells and f"| {clean[col].nunique():,} |" in cells, col
    rows = [len(pd.read_csv(p)) for p in (paths.train_csv, paths.test_csv)]
    assert f"{rows[0]:,} training rows and {rows[1]:,} test rows" in comp
    assert f"sha256 `{hashlib.sha256(census_path.read_bytes()).hexdigest()}`" in prep
    return sheet


@pytest.mark.skipif(not (ROOT / "reports" / "datasheet.md").is_file(), reason="no pipeline outputs here (make pipeline)")
def test_committed_datasheet_matches_the_data_files(census_path):
    sheet = check_datasheet(load_params(ROOT / "params.yaml").paths, census_path)
    assert "A seeded sample" not in sheet  # the full file


def test_quick_datasheet_says_it_describes_a_sample(quick_run, census_path):
    params, ran = quick_run
    sheet = check_datasheet(params.paths, census_path)
    assert sheet == ran["report"]["datasheet"]
    assert "A seeded sample of the rows was kept" in sheet
    assert f"**Rows:** {params.clean.sample_rows:,} in the cleaned file" in sheet


def test_pipeline_datasheet_matches_its_data_files(pipeline_repo, census_path):
    check_datasheet(load_params(pipeline_repo / "params.yaml").paths, census_path)
