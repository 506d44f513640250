"""Batch scoring on Dask: a LocalCluster of 2 workers over several files gives what the single-process job gives."""

import glob
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from census_income.batch import score_csv
from census_income.batch_blocks import DriftCheck
from census_income.batch_dask import plan_partitions, score_dask
from census_income.reference import load_reference

from .conftest import assert_same_answers
from .test_csv_faults import GOOD, HEADER, OTHER

pytestmark = pytest.mark.integration  # a Dask cluster of worker processes: not in `make test-fast`


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "Three census CSVs of different sizes, a few bad lines in each."
    folder = tmp_path_factory.mktemp("dask-in")
    for k, n in enumerate((3000, 800, 5000)):
        lines = [HEADER] + [GOOD if i % 2 else OTHER for i in range(n)]
        for bad in range(7 + k, n, 997):
            lines[bad] = lines[bad].replace(b"White", b"Martian")
        lines[5] = b"39, State-gov"
        (folder / f"part{k}.csv").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def test_partitions_cover_every_line_once(files):
    parts = plan_partitions(sorted(glob.glob(str(files / "*.csv"))), partition_bytes=50_000)
    for path in glob.glob(str(files / "*.csv")):
        mine = [p for p in parts if p["path"] == path]
        assert len(mine) > 1 and all(a["end"] == b["start"] for a, b in zip(mine, mine[1:], strict=False))
        data = open(path, "rb").read()
        assert mine[-1]["end"] == len(data) and all(data[p["end"] - 1:p["end"]] == b"\n" for p in mine)
        assert [p["first_line"] for p in mine] == [data[:p["start"]].count(b"\n") + 1 for p in mine]


def test_two_workers_score_what_one_process_scores(files, quick_model_dir, quick_predictor, tmp_path):
    environ = dict(os.environ)
    report = score_dask(str(files / "*.csv"), tmp_path / "out", quick_model_dir, chunk_bytes=20_000,
                        partition_bytes=100_000, n_workers=2)
    # the cluster's nannies wrote their workers' variables into this process's environment: the job takes them back
    assert dict(os.environ) == environ, {k: v for k, v in os.environ.items() if environ.get(k) != v}
    assert report["workers"] == 2 and report["partitions"] > 3 and report["files"] == 3
    assert "drift" not in report and not (tmp_path / "out" / "drift.json").exists()  # no profile given, no drift report
    assert report["rows_read"] == 8800 == report["rows_scored"] + report["rows_rejected"]
    predictor = quick_predictor
    for k in range(3):
        single = tmp_path / f"single{k}"
        score_csv(files / f"part{k}.csv", single / "s.csv", single / "r.csv", predictor, chunk_bytes=20_000)
        want = pd.read_csv(single / "s.csv", dtype=str).set_index("line")
        got = pd.concat([pd.read_csv(p, dtype=str) for p in sorted(glob.glob(str(tmp_path / "out" / f"scored-part{k}-*.csv")))])
        got = got.set_index("line").sort_index(key=lambda s: s.astype(int))
        values = [c for c in want.columns if c not in ("prediction", "probability")]
        pd.testing.assert_frame_equal(got[values], want[values])  # every row in its place, its values as read
        assert_same_answers(got["probability"].astype(float), want["probability"].astype(float), predictor.threshold,
                            got["prediction"], want["prediction"], f"part{k}")
        rejects = pd.concat([pd.read_csv(p) for p in glob.glob(str(tmp_path / "out" / f"rejects-part{k}-*.csv"))])
        assert sorted(rejects["line"]) == sorted(pd.read_csv(single / "r.csv")["line"])


def test_dask_and_one_process_write_the_same_drift_report(files, quick_run, quick_model_dir, quick_predictor, params, tmp_path):
    "drift.json of the partitions added up on Dask is, to the byte, the single-process one of the same rows in one file"
    " (the estimated performance included: its counts add up over partitions as over blocks)."
    check = DriftCheck.of(load_reference(quick_run[0].paths.reference_json), params.batch)
    report = score_dask(str(files / "*.csv"), tmp_path / "out", quick_model_dir, chunk_bytes=20_000, partition_bytes=100_000,
                        n_workers=2, check=check)
    assert report["partitions"] > 3 and json.loads((tmp_path / "out" / "drift.json").read_text()) == report["drift"]
    data = [line for k in range(3) for line in (files / f"part{k}.csv").read_bytes().splitlines()[1:]]
    (tmp_path / "all.csv").write_bytes(b"\n".join([HEADER, *data]) + b"\n")
    single = score_csv(tmp_path / "all.csv", tmp_path / "one" / "s.csv", tmp_path / "one" / "r.csv", quick_predictor,
                       chunk_bytes=7_000, check=check)
    assert (tmp_path / "out" / "drift.json").read_bytes() == (tmp_path / "one" / "s.drift.json").read_bytes()
    drift = single["drift"]
    assert drift["performance"]["batch"]["rows"] == single["rows_scored"] == report["rows_scored"]
    assert drift["rows_checked"] == 8800 - 3 and drift["rows_scored"] == single["rows_scored"]  # line 5 of each file: 2 fields
    assert drift["attributes"]["race"]["rejected_share"] == round((single["rows_rejected"] - 3) / drift["rows_checked"], 6)
    assert not list(Path(tmp_path).rglob("*.tmp"))


def test_an_output_folder_among_the_inputs_is_refused(files, quick_model_dir):
    with pytest.raises(ValueError, match="holds input files"):
        score_dask(str(files / "*.csv"), files, quick_model_dir, chunk_bytes=20_000, partition_bytes=100_000)


def test_the_jobs_workers_start_with_malloc_settings_that_keep_numpy_fast():
    "Dask's nanny default (MALLOC_TRIM_THRESHOLD_=65536) froze glibc's mmap threshold: the network ran 3.4x slower in a worker."

    from distributed import Client

    from census_income.batch_dask import WORKER_ENVIRON, kept_environ, local_cluster

    with kept_environ(), local_cluster(1) as cluster, Client(cluster) as client:
        seen = next(iter(client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENVIRON}).values()))
    assert seen == {k: str(v) for k, v in WORKER_ENVIRON.items()}
    assert int(seen["MALLOC_MMAP_THRESHOLD_"]) >= 16 * 2**20 and int(seen["MALLOC_TRIM_THRESHOLD_"]) > 65536


def test_a_folder_named_like_a_csv_among_the_inputs_is_refused_before_any_work(quick_model_dir, tmp_path):
    "A folder (or a FIFO) that the glob matches is named, with what to do, before a worker starts or an output is made."
    from census_income.clean import CensusDataError

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(HEADER + b"\n" + GOOD + b"\n")
    (tmp_path / "in" / "b.csv").mkdir()
    with pytest.raises(CensusDataError, match="not a regular file .* among the 2 inputs: move it away") as err:
        score_dask(str(tmp_path / "in"), tmp_path / "out", quick_model_dir, chunk_bytes=20_000, partition_bytes=100_000)
    assert err.value.path == str(tmp_path / "in" / "b.csv")
    assert not (tmp_path / "out").exists()


def test_a_job_that_fails_while_its_workers_start_leaves_no_process_behind(quick_model_dir, quick_predictor, tmp_path,
                                                                             caplog):
    "The workers start while the job reads its inputs: when the reading fails, the error is the job's and the cluster closes."
    import logging

    import psutil

    from census_income.batch_dask import _score_on_dask

    def ours():  # this process's children but multiprocessing's resource tracker, which serves the whole process
        return {p for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(p.cmdline())}

    before = ours()
    (tmp_path / "stage").mkdir()
    with caplog.at_level(logging.INFO, logger="distributed.scheduler"), pytest.raises(FileNotFoundError, match="gone.csv"):
        _score_on_dask([str(tmp_path / "gone.csv")], tmp_path / "stage", quick_model_dir, 20_000, 100_000, "", 1, None,
                       quick_predictor)  # a file removed after the job checked its inputs
    said = [r.getMessage() for r in caplog.records if r.name == "distributed.scheduler"]
    assert any("Register worker" in m for m in said) and any("Closing scheduler" in m for m in said), said  # it had started
    assert ours() - before == set(), [p.cmdline() for p in ours() - before]
