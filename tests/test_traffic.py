"""census-monitor on payload logs written with the API's own line writer, on the quick run's model: the same drift
and CBPE report census-batch writes for the same records, the window, the exit statuses, and what a bad log does."""

import csv
import json
import subprocess
from pathlib import Path

import pytest

from census_income.batch import run_batch
from census_income.drift import ALARM_STATUS, alarm_line, shifted
from census_income.features import ROW_ORDER
from census_income.fileio import read_clean
from census_income.predict import Predictor
from census_income.schema import CONTINUOUS, FEATURES
from census_income.serving.payload import RotatingLog, payload_lines
from census_income.traffic import LogError, log_files, run_monitor
from testkit import ROOT, VENV_BIN, tool_env

START = 1.8e9  # the first record's time: 2027-01-15T08:00:00Z


def census_monitor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "census-monitor"), *args], cwd=ROOT, env=tool_env(), capture_output=True,
                          text=True, timeout=300)


def split_rows(params, n: int) -> list[dict]:
    "The first n rows of the quick run's test split, as records (numbers as numbers, no label)."
    with open(params.paths.test_csv, newline="") as f:
        rows = [r for _, r in zip(range(n), csv.DictReader(f), strict=False)]
    return [{c: int(r[c]) if c in CONTINUOUS else r[c] for c in FEATURES} for r in rows]


def write_log(path: Path, records: list[dict], predictor: Predictor, max_bytes: int = 1 << 30, files: int = 8,
              version: str | None = None, start: float = START) -> Path:
    "A payload log of these records, one /predict request each, one second apart, as the API writes it."
    log = RotatingLog(path, max_bytes, files)
    rows = [tuple(r[c] for c in ROW_ORDER) for r in records]
    for k, (row, a) in enumerate(zip(rows, predictor.answers(predictor.predict_rows(rows)), strict=True)):
        log.write(payload_lines(start + k, f"r{k}", "/predict", version or predictor.version, [row], [a["probability"]],
                                [a["prediction"]]))
    log.close()
    return path


def close(a, b, tol: float = 2e-3) -> bool:
    "Whether two JSON structures are the same but for numbers within `tol` of each other."
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= tol
    return a == b


def test_the_report_is_the_one_census_batch_writes_for_the_same_records(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    records = split_rows(params, 800)
    log = write_log(tmp_path / "p.jsonl", records, predictor)
    source = tmp_path / "same.csv"
    with open(source, "w", newline="") as f:
        w = csv.DictWriter(f, FEATURES)
        w.writeheader()
        w.writerows(records)
    batch = run_batch(params.batch, params.paths, str(source), str(tmp_path / "scored.csv"))["drift"]
    job = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "out" / "traffic.json"))
    report = json.loads((tmp_path / "out" / "traffic.json").read_text())
    assert report == job["drift"]
    assert set(report) == set(batch)
    assert {k: v for k, v in report.items() if k != "performance"} == {k: v for k, v in batch.items() if k != "performance"}
    assert close(report["performance"], batch["performance"])  # the API's row path and the batch's column path may
    # differ in a probability's last bit: a record may change its fine bin
    page = (tmp_path / "out" / "traffic.html").read_text()
    assert 'id="performance"' in page and 'id="drift"' in page and "2027-01-15T08:00:00.000Z" in page
    assert "<h1>Traffic monitor of " in page and "Batch scoring" not in page  # the batch job's page, titled for what it shows
    assert job["outputs"] == [str(tmp_path / "out" / "traffic.json"), str(tmp_path / "out" / "traffic.html")]


def test_a_window_counted_block_by_block_is_the_window_counted_at_once(quick_run, quick_predictor, tmp_path, monkeypatch):
    "Memory holds one block of lines, whatever the log's size: blocks of 7 lines give the report of one block of all."
    import census_income.traffic as traffic

    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 800), predictor)
    whole = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "a.json"))
    monkeypatch.setattr(traffic, "BLOCK", 7)
    blocks = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "b.json"))
    assert (blocks["rows_scored"], blocks["first"], blocks["last"]) == (whole["rows_scored"], whole["first"], whole["last"])
    assert whole["rows_scored"] > 10 * 7  # many blocks
    assert json.loads((tmp_path / "b.json").read_text()) == json.loads((tmp_path / "a.json").read_text())


def test_the_window_by_time_and_by_count(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 300), predictor)
    by_time = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "a.json"), since="2027-01-15T08:01:00Z", until="2027-01-15T08:02:00Z")
    assert (by_time["rows_scored"], by_time["first"], by_time["last"]) == (60, "2027-01-15T08:01:00.000Z", "2027-01-15T08:01:59.000Z")
    by_count = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "b.json"), last=25)
    assert (by_count["rows_scored"], by_count["first"], by_count["rows_read"]) == (25, "2027-01-15T08:04:35.000Z", 300)
    both = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "c.json"), until="2027-01-15T09:01:40+01:00", last=10)
    assert (both["rows_scored"], both["last"]) == (10, "2027-01-15T08:01:39.000Z")


def test_rotated_files_are_read_oldest_first(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 200), predictor, max_bytes=8192, files=100)
    files = log_files(log)
    assert len(files) > 3 and files[-1] == log
    job = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "r.json"))
    assert (job["rows_scored"], job["files"], job["first"]) == (200, len(files), "2027-01-15T08:00:00.000Z")


def test_a_malformed_line_refuses_naming_its_file_and_line(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 50), predictor)
    lines = log.read_text().splitlines(keepends=True)
    lines[6] = lines[6][:70] + "\n"  # a line cut short inside the file: not a write in progress
    log.write_text("".join(lines))
    proc = census_monitor(str(log), "--output", str(tmp_path / "m.json"), "--model-dir", params.paths.model_dir)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"census-monitor: LogError: {log}, line 7: not a payload record") and \
        len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "m.json").exists()


def test_a_record_outside_the_schema_refuses_naming_its_line(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 20), predictor)
    lines = log.read_text().splitlines(keepends=True)
    lines[11] = lines[11].replace('"age":', '"age":-5,"x":', 1)  # a record the API would never have logged
    log.write_text("".join(lines))
    with pytest.raises(LogError, match=rf"^{log}, line 12: not a census record: record 11: "):
        run_monitor(params.batch, params.paths, str(log), str(tmp_path / "m.json"))


def test_the_live_files_unfinished_last_line_is_skipped_and_counted(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 40), predictor)
    text = log.read_text()
    log.write_text(text + text.splitlines()[0][:55])  # a write in progress
    job = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "u.json"))
    assert (job["rows_scored"], job["unfinished"], job["lines"]) == (40, 1, 40)


def test_lines_of_another_model_are_skipped_and_counted_and_none_of_this_one_refuses(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 30), predictor, version="f" * 32)
    with pytest.raises(LogError, match=f"no record of model {predictor.version} in the window .* 30 of other model versions"):
        run_monitor(params.batch, params.paths, str(log), str(tmp_path / "v.json"))
    with open(log, "a") as f:
        f.write(write_log(tmp_path / "q.jsonl", split_rows(params, 5), predictor, start=START + 100).read_text())
    job = run_monitor(params.batch, params.paths, str(log), str(tmp_path / "v.json"))
    assert (job["rows_scored"], job["other_versions"]) == (5, 30)


def test_an_empty_window_or_a_missing_log_refuses(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    with pytest.raises(LogError, match="payload log not found"):
        run_monitor(params.batch, params.paths, str(tmp_path / "nothing.jsonl"), str(tmp_path / "e.json"))
    log = write_log(tmp_path / "p.jsonl", split_rows(params, 10), predictor)
    with pytest.raises(LogError, match="no record of model"):
        run_monitor(params.batch, params.paths, str(log), str(tmp_path / "e.json"), since="2030-01-01")
    with pytest.raises(ValueError, match="would overwrite the payload log"):
        run_monitor(params.batch, params.paths, str(log), str(log))


def test_a_drifted_window_ends_with_the_alarm_status_and_its_line(quick_run, quick_predictor, tmp_path):
    params, predictor = quick_run[0], quick_predictor
    frame = read_clean(params.paths.test_csv)
    drifted = shifted(frame.head(1500), years=15)
    records = [{c: (int(v) if c in CONTINUOUS else v) for c, v in r.items() if c in FEATURES} for r in drifted.to_dict("records")]
    log = write_log(tmp_path / "p.jsonl", records, predictor)
    out = tmp_path / "d.json"
    proc = census_monitor(str(log), "--output", str(out), "--model-dir", params.paths.model_dir)
    assert proc.returncode == ALARM_STATUS, proc.stderr
    report = json.loads(out.read_text())
    assert report["alarm"] and "age" in report["flagged"]
    assert proc.stderr.splitlines()[-1] == f"census-monitor: {alarm_line(report)}"


@pytest.mark.integration
def test_the_chapter_runs_under_papermill_with_its_parameters(tmp_path):
    cells = json.loads((ROOT / "nbs" / "09_traffic.ipynb").read_text())["cells"]
    assert [c for c in cells if "parameters" in c["metadata"].get("tags", [])], "papermill's parameters tag is lost"
    out = tmp_path / "traffic.json"
    proc = subprocess.run([str(VENV_BIN / "papermill"), "-k", "python3", "--cwd", "nbs", "nbs/09_traffic.ipynb",
                           str(tmp_path / "run.ipynb"), "-p", "output", str(out), "-p", "last", "100",
                           "-p", "demo_records", "300"], cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["rows_scored"] == 100 and "performance" in report
    assert (tmp_path / "traffic.html").is_file()
