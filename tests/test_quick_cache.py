"""The quick runs' cache of upstream stages (`census_income.pipeline.call_stage_quick`): a stage reused only when it
would read exactly what the run that kept it read, and then the same bytes as running it gives."""

import logging
import shutil
from pathlib import Path

import pytest
import yaml

from census_income.pipeline import QUICK_CACHE_ENV, call_stage, call_stage_quick, load_params, prepare, quick_stage_key
from testkit import ROOT


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def quick(workdir: Path, root: Path = ROOT):
    return load_params(root / "params.yaml", quick=True, workdir=workdir)


def test_a_reused_stage_leaves_the_bytes_running_it_leaves(tmp_path, caplog):
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="census_income.pipeline")
    ran, reused, plain = quick(tmp_path / "ran"), quick(tmp_path / "reused"), quick(tmp_path / "plain")
    assert [call_stage_quick(s, ran, ROOT, cache) for s in ("clean", "preprocess")] == [False, False]
    assert [call_stage_quick(s, reused, ROOT, cache) for s in ("clean", "preprocess")] == [True, True]
    assert sum("from the cache" in r.message for r in caplog.records) == 2
    for stage in ("clean", "preprocess"):
        call_stage(stage, plain)
    assert files(tmp_path / "reused") == files(tmp_path / "ran") == files(tmp_path / "plain")
    assert len(files(tmp_path / "plain")) >= 4  # the clean file, both splits, the encoder and the profile at least


@pytest.fixture
def small_repo(tmp_path) -> Path:
    "A repository of one stage whose code is one file: params.yaml and the raw file as the project's."
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", root)
    (root / "data" / "census.csv").symlink_to(ROOT / "data" / "census.csv")
    (root / "code.py").write_text("version = 1\n")
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stages = {s: {"cmd": "true", "deps": ["code.py", *[d for d in deps[s]["deps"] if "${" in d]]} for s in deps}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return root


def test_what_a_stage_reads_moves_its_key_and_nothing_else_does(small_repo, tmp_path, monkeypatch):
    params = quick(tmp_path / "out", small_repo)
    key = quick_stage_key("preprocess", params, small_repo)
    assert quick_stage_key("preprocess", params, small_repo) == key
    monkeypatch.setenv("UNRELATED_VARIABLE", "1")
    assert quick_stage_key("preprocess", params, small_repo) == key
    (small_repo / "code.py").write_text("version = 2\n")  # its code
    assert quick_stage_key("preprocess", params, small_repo) not in (key, None)
    (small_repo / "code.py").write_text("version = 1\n")
    assert quick_stage_key("preprocess", params, small_repo) == key
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")  # another CPU kernel
    assert quick_stage_key("preprocess", params, small_repo) != key
    monkeypatch.undo()
    (tmp_path / "out" / "data").mkdir(parents=True)
    (tmp_path / "out" / "data" / "census_clean.csv").write_text("age\n1\n")  # what the stage before it wrote
    upstream = quick_stage_key("preprocess", params, small_repo)
    assert upstream != key
    (tmp_path / "out" / "data" / "census_clean.csv").write_text("age\n2\n")
    assert quick_stage_key("preprocess", params, small_repo) not in (key, upstream)
    clean = quick_stage_key("clean", params, small_repo)
    raw = small_repo / "data" / "census.csv"
    raw.unlink()
    raw.write_bytes((ROOT / "data" / "census.csv").read_bytes() + b"\n")  # the raw file clean reads
    assert quick_stage_key("clean", params, small_repo) not in (clean, None)


def test_a_damaged_entry_is_run_again_and_kept_whole(tmp_path, caplog):
    cache = tmp_path / "cache"
    assert not call_stage_quick("clean", quick(tmp_path / "a"), ROOT, cache)
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    (kept,) = [p for p in (entry / "files").rglob("*") if p.is_file()]
    kept.unlink()
    caplog.set_level(logging.WARNING, logger="census_income.pipeline")
    assert not call_stage_quick("clean", quick(tmp_path / "b"), ROOT, cache)  # ran: the entry lost a file
    assert "cannot be used" in caplog.text and kept.is_file()  # and kept again, whole
    assert call_stage_quick("clean", quick(tmp_path / "c"), ROOT, cache)
    assert files(tmp_path / "c") == files(tmp_path / "a")


def test_without_a_cache_or_a_dvc_yaml_the_stage_runs(tmp_path):
    params = quick(tmp_path / "a")
    assert not call_stage_quick("clean", params, ROOT, None)
    assert not call_stage_quick("clean", params, tmp_path, tmp_path / "cache")  # no dvc.yaml in tmp_path
    assert not (tmp_path / "cache").exists()


def test_a_quick_runs_prepare_takes_the_cache_its_environment_names(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(QUICK_CACHE_ENV, str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="census_income.pipeline")
    prepare(ROOT / "params.yaml", "preprocess", True, tmp_path / "first")
    assert "from the cache" not in caplog.text and any((tmp_path / "cache").iterdir())
    params = prepare(ROOT / "params.yaml", "preprocess", True, tmp_path / "second")
    assert "clean's outputs from the cache" in caplog.text and Path(params.paths.clean_csv).is_file()
    assert files(tmp_path / "second") == files(tmp_path / "first")
