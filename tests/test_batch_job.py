"""The batch job as a function (`run_batch`) and as a command (`census-batch`), on the quick run's model."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from census_income.batch import run_batch
from census_income.batch_blocks import OUTPUT_COLUMNS
from census_income.batch_outputs import read_done
from census_income.clean import CensusDataError
from census_income.drift import ALARM_STATUS, shifted
from census_income.fileio import read_clean
from census_income.network import ModelFilesError
from census_income.pipeline import load_params
from testkit import ROOT, VENV_BIN, tool_env


def census_batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "census-batch"), *args], cwd=ROOT, env=tool_env(), capture_output=True,
                          text=True, timeout=300)


def test_run_batch_scores_with_the_params_knobs_and_the_models_profile(quick_run, tmp_path):
    params = quick_run[0]
    report = run_batch(params.batch, params.paths, params.paths.test_csv, str(tmp_path / "out" / "scored.csv"))
    assert report["rows_read"] == report["rows_scored"] + report["rows_rejected"] > 0
    assert report["outputs"] == [str(tmp_path / "out" / n) for n in ("scored.csv", "scored.rejects.csv", "scored.drift.json",
                                                                    "scored.report.html")]
    assert all(Path(p).is_file() for p in report["outputs"])
    assert json.loads(Path(report["outputs"][2]).read_text()) == report["drift"]
    assert report["drift"]["thresholds"] == params.batch.drift.model_dump()


def test_a_folder_without_a_model_is_refused_before_any_work(quick_run, tmp_path):
    params = quick_run[0]
    with pytest.raises(ModelFilesError, match="manifest.json"):
        run_batch(params.batch, params.paths, params.paths.test_csv, str(tmp_path / "out" / "scored.csv"), model_dir=str(tmp_path))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="engine 'spark'"):
        run_batch(params.batch, params.paths, params.paths.test_csv, str(tmp_path / "s.csv"), engine="spark")


def test_the_command_scores_and_says_what_it_wrote(quick_run, quick_model_dir, tmp_path):
    params = quick_run[0]
    out = tmp_path / "scored.csv"
    proc = census_batch(params.paths.test_csv, "--output", str(out), "--model-dir", str(quick_model_dir),
                        "--chunk-bytes", "65536")  # the smallest block allowed (params.yaml: batch)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr.startswith("census-batch: ") and len(proc.stderr.splitlines()) == 1
    rows = len(Path(params.paths.test_csv).read_text().splitlines()) - 1
    assert f"{rows:,} rows read" in proc.stderr and str(out) in proc.stderr
    assert out.is_file() and (tmp_path / "scored.rejects.csv").is_file() and (tmp_path / "scored.drift.json").is_file()


def test_a_drift_alarm_ends_the_command_with_its_own_status_and_one_line(quick_run, quick_model_dir, tmp_path):
    "A file whose people are 80 years older (ages the model never saw): every output written, the alarm status (not 0, not a refusal's 2), one line why."
    older = tmp_path / "older.csv"
    shifted(read_clean(quick_run[0].paths.test_csv), occupation=None, years=80).to_csv(older, index=False)
    out = tmp_path / "scored.csv"
    proc = census_batch(str(older), "--output", str(out), "--model-dir", str(quick_model_dir))
    assert proc.returncode == ALARM_STATUS != 2, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("census-batch: drift alarm (") and "age" in last, proc.stderr
    assert json.loads((tmp_path / "scored.drift.json").read_text())["alarm"] is True
    assert read_done(tmp_path / "scored.done.json")["outputs"], "an alarm is not a failure: the run is recorded"


def test_the_command_refuses_a_missing_model_in_one_line(quick_run, tmp_path):
    proc = census_batch(quick_run[0].paths.test_csv, "--output", str(tmp_path / "s.csv"),
                        "--model-dir", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("census-batch: ModelFilesError: model file missing")
    assert str(tmp_path / "nowhere") in proc.stderr and not (tmp_path / "s.csv").exists()


def test_the_params_file_names_what_the_job_reads():
    "params.yaml's batch section, as the file writes it, is what the job is given (typed)."
    written = yaml.safe_load((ROOT / "params.yaml").read_text())["batch"]  # the file as written, to compare with
    batch = load_params(ROOT / "params.yaml").batch
    assert (batch.chunk_bytes, batch.partition_bytes) == (written["chunk_bytes"], written["partition_bytes"])
    assert batch.drift.model_dump() == written["drift"] and batch.performance.model_dump() == written["performance"]


def test_two_jobs_in_one_folder_keep_their_own_files(quick_run, tmp_path):
    "Each job names its companions from its whole output name, and never writes a file another job's record names."
    params, out = quick_run[0], tmp_path / "o"
    test_csv = params.paths.test_csv
    a, b, txt = (run_batch(params.batch, params.paths, test_csv, str(out / name)) for name in ("a.csv", "b.csv", "a.txt"))
    assert a["outputs"][1:] == [str(out / "a.rejects.csv"), str(out / "a.drift.json"), str(out / "a.report.html")]
    assert b["outputs"][1:] == [str(out / "b.rejects.csv"), str(out / "b.drift.json"), str(out / "b.report.html")]
    assert txt["outputs"][1:] == [str(out / "a.txt.rejects.csv"), str(out / "a.txt.drift.json"), str(out / "a.txt.report.html")]
    assert txt["record"] == str(out / "a.txt.done.json")
    for job in (a, b, txt):  # every record still vouches for its files
        assert read_done(job["record"])["rows_read"] == job["rows_read"]
    with pytest.raises(FileExistsError, match=r"a\.rejects\.csv is an output of the job recorded in .*a\.done\.json"):
        run_batch(params.batch, params.paths, test_csv, str(out / "c.csv"), reject_path=str(out / "a.rejects.csv"))
    assert read_done(a["record"]) and not (out / "c.csv").exists()


def test_an_input_column_named_as_an_output_column_is_refused(quick_run, tmp_path):
    params = quick_run[0]
    text = Path(params.paths.test_csv).read_text()
    for name in OUTPUT_COLUMNS:
        path = tmp_path / f"{name}.csv"
        path.write_text(text.replace("salary", name, 1))
        with pytest.raises(CensusDataError, match=f"a column named '{name}', a column the scored file writes"):
            run_batch(params.batch, params.paths, str(path), str(tmp_path / name / "scored.csv"))
        assert not (tmp_path / name / "scored.csv").exists()


def test_a_cluster_of_no_workers_is_refused_at_once(quick_run, quick_model_dir, tmp_path):
    proc = census_batch(quick_run[0].paths.test_csv, "--output", str(tmp_path / "o"), "--engine", "dask",
                        "--n-workers", "0", "--model-dir", str(quick_model_dir))
    assert proc.returncode == 2 and "n_workers '0' cannot start a LocalCluster: give 1 to 256 workers" in proc.stderr
