"""A stage's outputs reach the workspace by one rename each; a crash between two renames is finished, not left mixed."""

from pathlib import Path

import pytest

from census_income import pipeline
from census_income.pipeline import MOVING, move_into_place


def test_a_move_interrupted_between_renames_is_completed_by_the_next(tmp_path, monkeypatch):
    root, staging = tmp_path / "repo", tmp_path / "repo" / ".census-stage" / "preprocess"
    for name in ("train.csv", "test.csv", "encoder.json"):
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_text("old run")
        (staging / "data").mkdir(parents=True, exist_ok=True)
        (staging / "data" / name).write_text("new run")
    real, calls = pipeline.os.replace, []

    def crash_after_one(src, dest):  # the process dies after its first rename
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(src)
        real(src, dest)

    monkeypatch.setattr(pipeline.os, "replace", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        move_into_place(staging, root)
    monkeypatch.setattr(pipeline.os, "replace", real)
    now = {p.name: p.read_text() for p in (root / "data").iterdir()}
    assert sorted(now.values()) == ["new run", "old run", "old run"]  # the mix a reader would see
    assert (staging / MOVING).is_file()  # ... and the mark that the run had finished
    moved = move_into_place(staging, root)  # what the stage's next run does first
    assert sorted(map(str, moved)) == ["data/test.csv", "data/train.csv"]
    assert {p.name: p.read_text() for p in (root / "data").iterdir()} == dict.fromkeys(now, "new run")
    assert not Path(root / MOVING).exists()
