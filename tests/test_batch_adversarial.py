"""Adversarial batch jobs (issue 22, continued from tests/test_batch_faults.py, whose toy model and helpers these
share): one job's completion record and outputs stay its own, a job whose every row is rejected still writes its drift
report, a sealed profile whose numbers overflow is refused, and the command refuses an output that names nothing, each
as the `census-batch` command in a real subprocess or the job in this process, on both engines.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from census_income.batch import score_csv
from census_income.batch_blocks import DriftCheck, drift_outputs, no_rows
from census_income.batch_dask import score_dask
from census_income.batch_outputs import drift_path, read_done
from census_income.config import load_params
from census_income.drift import ALARM_STATUS
from census_income.fileio import atomic_file
from census_income.reference import checksum, fit_reference, load_reference, save_reference, tally
from testkit import ROOT, tool_env

from .conftest import every_value
from .test_batch_faults import NEGATIVE_AGE, lines
from .test_csv_faults import GOOD, HEADER, OTHER

# --- adversarial batch: one job's record and outputs stay its own ---------------------------------------------

def census_batch_run(*args, model: Path) -> subprocess.CompletedProcess:
    "The `census-batch` command run to its end in a real subprocess, on this worktree's package, with `model`."
    return subprocess.run([str(Path(sys.executable).parent / "census-batch"), *map(str, args), "--model-dir", str(model),
                           "--params", str(ROOT / "params.yaml")], cwd=ROOT, env=tool_env(PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=300)


def refused(proc: subprocess.CompletedProcess, says: str) -> None:
    "A refusal: exit status 2 and one line naming the problem."
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr[-2000:]


def test_a_job_never_writes_another_jobs_completion_record_or_the_files_it_names(tmp_path, toy_model_dir):
    "`--rejects a.done.json` replaced job a's record with a CSV, after which a's rejects were anyone's: both refused."
    source, own = tmp_path / "s.csv", tmp_path / "own"
    source.write_bytes(lines(GOOD, OTHER))
    assert census_batch_run(source, "--output", own / "a.csv", model=toy_model_dir).returncode in (0, ALARM_STATUS)
    before = {p.name: p.read_bytes() for p in own.iterdir()}
    for args, says in [(("--output", own / "b.csv", "--rejects", own / "a.done.json"), "a.done.json is named as a batch "
                         "job's completion record (*.done.json), which only its own job writes: choose a name"),
                       (("--output", own / "X.done.json"), "X.done.json is named as a batch job's completion record"),
                       (("--output", own / "c.csv", "--rejects", own / "a.rejects.csv"),
                        "a.rejects.csv is an output of the job recorded in")]:
        refused(census_batch_run(source, *args, model=toy_model_dir), says)
    assert {p.name: p.read_bytes() for p in own.iterdir()} == before and read_done(own / "a.done.json")
    (own / "a.done.json").write_text("line,reason,row\n")  # a record written over, or torn by hand: it cannot be read
    refused(census_batch_run(source, "--output", own / "c.csv", "--rejects", own / "a.rejects.csv", model=toy_model_dir),
            "a.rejects.csv is named as an output of the job recorded in")
    assert {p.name: p.read_bytes() for p in own.iterdir()} == before | {"a.done.json": b"line,reason,row\n"}
    assert census_batch_run(source, "--output", own / "a.csv", model=toy_model_dir).returncode in (0, ALARM_STATUS)
    assert read_done(own / "a.done.json")["rows_read"] == 2  # job a itself runs again and writes its record anew


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("min_rows", [0, 1, 2000])
def test_a_job_whose_every_row_is_rejected_writes_its_drift_report_whatever_min_rows(engine, min_rows, tmp_path,
                                                                                      toy_model_dir, toy_predictor, thresholds):
    "No row scored: no PSI to judge. `min_rows: 0` once judged the missing PSI (a TypeError on both engines)."
    (tmp_path / "in.csv").write_bytes(lines(*[NEGATIVE_AGE] * 3))
    check = DriftCheck(load_reference(toy_model_dir / "reference.json"), thresholds.model_copy(update={"min_rows": min_rows}))
    if engine == "local":
        report = score_csv(tmp_path / "in.csv", tmp_path / "s.csv", tmp_path / "r.csv", toy_predictor, 65_536,
                           check)
        written = drift_path(tmp_path / "s.csv")
    else:
        report = score_dask(str(tmp_path / "in.csv"), tmp_path / "out", toy_model_dir, chunk_bytes=65_536,
                            partition_bytes=65_536, n_workers=1, check=check)
        written = tmp_path / "out" / "drift.json"
    assert (report["rows_read"], report["rows_scored"], report["rows_rejected"]) == (3, 0, 3)
    drift = json.loads(written.read_text(), parse_constant=lambda c: pytest.fail(f"drift.json holds {c}"))
    assert drift == report["drift"] and not drift["judged"] and drift["flagged"] == ["age"]  # unseen: judged at any size
    assert all(a["psi"] is None for a in drift["attributes"].values())



def toy_profile() -> dict:
    "A profile of `every_value` with its multivariate part, as the preprocess stage writes one (params.yaml: profile)."
    profile = fit_reference(every_value(), load_params(ROOT / "params.yaml").profile)
    # these 42 rows hold each category equally often: a constant attribute's scale, float noise, rounds to 0 (refused)
    profile["multivariate"]["scale"] = [s or 1.0 for s in profile["multivariate"]["scale"]]
    return profile | {"checksum": checksum({k: v for k, v in profile.items() if k != "checksum"})}


@pytest.mark.parametrize("part", [{"scale": [1e-320] * 14}, {"components": [[1e308] * 14]}], ids=["scale", "components"])
def test_a_sealed_profile_whose_numbers_overflow_is_refused_before_any_work(part, tmp_path, toy_model_dir):
    "Finite numbers, the checksum right: the job once overflowed every row's error and wrote a bare NaN into drift.json."
    profile = toy_profile()
    profile["multivariate"] |= part
    profile["checksum"] = checksum({k: v for k, v in profile.items() if k != "checksum"})
    save_reference(profile, tmp_path / "reference.json")
    (tmp_path / "in.csv").write_bytes(lines(GOOD, OTHER))
    proc = census_batch_run(tmp_path / "in.csv", "--output", tmp_path / "out" / "s.csv", "--reference",
                            tmp_path / "reference.json", model=toy_model_dir)
    refused(proc, f"ReferenceFileError: reference profile {tmp_path / 'reference.json'} is unusable: the multivariate "
                  f"part's {next(iter(part))} holds ")
    assert "RuntimeWarning" not in proc.stderr and not (tmp_path / "out").exists()


def test_a_drift_report_holding_nan_is_never_written(tmp_path, toy_model_dir, toy_predictor, thresholds):
    "drift.json is strict JSON: a report whose numbers went wrong is refused, naming where, and no file is left."
    profile = toy_profile()
    counts = tally(profile, every_value().iloc[:5]) | {"error_sum": float("nan")}
    check = DriftCheck(profile, thresholds.model_copy(update={"min_rows": 1}))
    with pytest.raises(ValueError, match=r"the drift report's multivariate\.error is nan, which JSON cannot hold: nothing written"):
        with atomic_file(tmp_path / "drift.json") as tmp:
            drift_outputs(counts, check, [tmp], toy_predictor)
    assert list(tmp_path.iterdir()) == []
    assert json.loads((drift_outputs(no_rows(profile, toy_predictor), check, [tmp_path / "ok.json"], toy_predictor),
                       (tmp_path / "ok.json").read_text())[1])["rows_scored"] == 0


# --- adversarial batch: messages say what is wrong, where, and what to give ------------------------------------

@pytest.mark.parametrize("given", ["psi", 0.25, ["psi_flag", 0.25], b"x" * 5000], ids=["text", "number", "list", "long bytes"])
def test_drift_thresholds_that_are_not_a_mapping_say_what_they_must_be(given, toy_model_dir):
    "`DriftCheck(ref, thresholds='psi')` said 'dictionary update sequence element #0 has length 1; 2 is required'."
    with pytest.raises(ValueError) as err:
        DriftCheck(load_reference(toy_model_dir / "reference.json"), given)
    said = str(err.value)
    assert said.startswith(f"drift thresholds {repr(given)[:60]}") and "are not a mapping: give params.yaml's batch.drift" in said
    assert "psi_flag, ratio_flag" in said and len(said) < 400 and "\n" not in said


@pytest.mark.parametrize("pinned", ["f" * 5000, "0" * 16 + "\n" + "0" * 16, "\x1b[2J" + "f" * 32],
                         ids=["5000 characters", "a newline", "a terminal escape"])
def test_a_pinned_version_is_echoed_on_one_line_and_cut(pinned, tmp_path, toy_model_dir, toy_predictor):
    "`--model-version` came back whole and raw: 5,000 characters, or a line split in two, in the refusal."
    (tmp_path / "in.csv").write_bytes(lines(GOOD))
    proc = census_batch_run(tmp_path / "in.csv", "--output", tmp_path / "s.csv", "--model-version", pinned, model=toy_model_dir)
    refused(proc, f"but the files are version {toy_predictor.version}: they were changed or replaced")
    shown = proc.stderr.split("expected model version ", 1)[1].split(" but the files", 1)[0]
    assert shown == (pinned[:60] + "... (5,000 characters)" if len(pinned) > 60 else repr(pinned))
    assert len(proc.stderr) < 500 and "\x1b" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize(("engine", "output", "says"), [
    ("local", "", "the output path '' names no file: give a file for the scored rows (census-batch --output out/scored.csv)"),
    ("local", ".", "the output path '.' names no file: give a file"),
    ("dask", "", "the output folder '' names no folder: give a folder for engine dask's outputs"),
])
def test_an_output_that_names_nothing_is_refused_saying_what_to_give(engine, output, says, tmp_path, toy_model_dir):
    "`--output ''` said \"PosixPath('.') has an empty name\"; with Dask it wrote into the working folder."
    (tmp_path / "in.csv").write_bytes(lines(GOOD))
    proc = subprocess.run([str(Path(sys.executable).parent / "census-batch"), str(tmp_path / "in.csv"), "--output", output,
                           "--engine", engine, "--model-dir", str(toy_model_dir), "--params", str(ROOT / "params.yaml")],
                          cwd=tmp_path, env=tool_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    refused(proc, f"census-batch: ValueError: {says}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_header_only_file_gives_zero_row_outputs_on_dask_as_in_one_process(tmp_path, toy_model_dir):
    "Dask exited 2 with 'All `iterables` must have a non-zero length' where the local engine wrote 0-row outputs, exit 0."
    (tmp_path / "h.csv").write_bytes(HEADER + b"\n")
    local = census_batch_run(tmp_path / "h.csv", "--output", tmp_path / "one" / "s.csv", model=toy_model_dir)
    dask = census_batch_run(tmp_path / "h.csv", "--output", tmp_path / "dask", "--engine", "dask", "--n-workers", "1",
                            model=toy_model_dir)
    assert local.returncode == dask.returncode == 0, (local.stderr, dask.stderr[-3000:])
    assert "0 rows read, 0 scored, 0 rejected" in local.stderr and "0 rows read, 0 scored, 0 rejected" in dask.stderr
    one, many = tmp_path / "one", tmp_path / "dask"
    assert [p.read_bytes() for p in (one / "s.csv", one / "s.rejects.csv")] == \
        [p.read_bytes() for p in (*many.glob("scored-h-*.csv"), *many.glob("rejects-h-*.csv"))] == [b"", b"line,reason,row\n"]
    assert json.loads((one / "s.drift.json").read_text()) == json.loads((many / "drift.json").read_text())
    assert read_done(one / "s.done.json")["rows_read"] == read_done(many / "done.json")["rows_read"] == 0
