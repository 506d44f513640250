"""params.yaml is checked against one pydantic model per section when it is read: a bad value stops the run at load,
naming the key and what is allowed, instead of failing deep inside a stage (or, worse, running with it)."""

import shutil
from pathlib import Path

import pytest
import yaml

from census_income.config import HYPER_PARAMS, HyperParams, ParamsError, TrainConfig, TuneConfig, load_params
from census_income.model import ARCH
from testkit import ROOT


def params_file(tmp_path, change) -> str:
    "A copy of params.yaml (beside copies of what it points to) with one change applied to its parsed content."
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return str(path)


def test_the_real_file_and_its_quick_run_load():
    full, quick = load_params(ROOT / "params.yaml"), load_params(ROOT / "params.yaml", quick=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())  # the file as written, to compare the typed values with
    assert isinstance(full.train, TrainConfig) and isinstance(quick.tune, TuneConfig)
    assert full.train.n_folds == raw["train"]["n_folds"] and full.train.distill.hidden == raw["train"]["distill"]["hidden"]
    assert quick.tune.n_trials == raw["quick"]["tune"]["n_trials"] < full.tune.n_trials == raw["tune"]["n_trials"]
    with pytest.raises(AttributeError):
        full.train.n_fold  # a misspelt key fails where it is read, not silently  # noqa: B018
    with pytest.raises(ValueError, match="frozen"):
        full.train.n_folds = 3  # what was checked at load is what every stage runs with


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["train"].update(ci_level=1.5), "train.ci_level: Input should be less than 1 (got 1.5)"),
    (lambda p: p["train"].update(n_fold=5), "train.n_fold: Extra inputs are not permitted"),
    (lambda p: p["train"].pop("seed"), "train.seed: Field required"),
    (lambda p: p["split"].update(test_size=0), "split.test_size: Input should be greater than 0"),
    (lambda p: p["tune"]["stored"].update(dropout=1.0), "tune.stored.dropout: Input should be less than 1"),
    (lambda p: p["tune"]["space"].pop("lr"), "tune: space must give a range for each of n_frequencies"),
    (lambda p: p["tune"]["space"].update(lr={"float": [0.01, 0.0001], "log": True}),
     "the range [0.01, 0.0001] must go from low to high"),
    (lambda p: p["tune"]["space"].update(depth={"int": [1, 4], "choices": [1, 2]}), "give exactly one of int, float or choices"),
    (lambda p: p["slices"]["mitigation"].update(constraints=["equal_luck"]), "slices.mitigation.constraints.0: Input should be"),
    (lambda p: p["batch"]["drift"].update(psi_flag="high"), "batch.drift.psi_flag: Input should be a valid number"),
    (lambda p: p.pop("report"), "report: Field required"),
    # strict types: YAML's own booleans and numbers only (a string or a float where a whole number belongs is refused)
    (lambda p: p["tune"].update(enabled="false"), "tune.enabled: Input should be a valid boolean (got 'false')"),
    (lambda p: p["tune"].update(enabled=0), "tune.enabled: Input should be a valid boolean (got 0)"),
    (lambda p: p["train"].update(seed=4.0), "train.seed: Input should be a valid integer (got 4.0)"),
    (lambda p: p["split"].update(test_size="0.2"), "split.test_size: Input should be a valid number (got '0.2')"),
    (lambda p: p["tune"].update(timeout=float("inf")), "tune.timeout: Input should be a finite number (got inf)"),
    (lambda p: p["train"].update(max_epochs=0), "train.max_epochs: Input should be greater than or equal to 1 (got 0)"),
    (lambda p: p["train"].update(patience=-1), "train.patience: Input should be greater than or equal to 1 (got -1)"),
    (lambda p: p["train"].update(max_epoch=5), "train.max_epoch: Extra inputs are not permitted (got 5)"),
    (lambda p: p.update(trian={"max_epochs": 5}), "trian: Extra inputs are not permitted"),
    (lambda p: p["paths"].update(modeldir="elsewhere"), "paths.modeldir: Extra inputs are not permitted (got 'elsewhere')"),
    (lambda p: p["tune"].update(storage="foo://bar"), "tune.storage: 'foo://bar' is not a storage URL: give one of sqlite:///"),
    (lambda p: p["slices"].update(protected=["sexx"]), "slices.protected.0: Input should be 'workclass', "),
    (lambda p: p["slices"].update(intersections=[["sex"]]), "slices.intersections.0: List should have at least 2 items"),
    (lambda p: p["slices"]["mitigation"].update(objective="selection_rate"),
     "objective 'selection_rate' cannot be optimised under equalized_odds: use one of accuracy_score, balanced_accuracy_score"),
    (lambda p: p["report"].update(pages=["04_train", "99_nope"]), "report.pages.1: Input should be '01_clean', "),
])
def test_a_bad_value_is_refused_at_load_with_its_key(tmp_path, change, message):
    path = params_file(tmp_path, change)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert message in str(err.value) and str(tmp_path / "params.yaml") in str(err.value)


@pytest.mark.parametrize("quick", [True, False])
def test_a_quick_override_is_checked_by_every_run(tmp_path, quick):
    "A typo in the quick section is found by the full run too, though it does not use the overrides."
    path = params_file(tmp_path, lambda p: p["quick"]["train"].update(n_folds=1))
    with pytest.raises(ParamsError, match=r"\(its quick: section\) cannot be used: train.n_folds: Input should be greater than or equal to 2"):
        load_params(path, quick=quick)
    path = params_file(tmp_path, lambda p: p["quick"].update(trian={"n_folds": 3}))
    with pytest.raises(ParamsError, match="trian: Extra inputs are not permitted"):
        load_params(path, quick=quick)


def test_the_hyper_parameters_the_model_trains_with_are_the_key_set():
    "ARCH (what shapes the network) is part of the one key set, and fit_mlp accepts exactly the key set."
    import inspect

    from census_income.model import fit_mlp

    assert set(ARCH) < set(HYPER_PARAMS)
    assert inspect.signature(fit_mlp).parameters["hp"].annotation in ("HyperParams", HyperParams)


@pytest.mark.parametrize(("text", "message"), [("", "must hold the sections of params"),
                                               ("- a list\n", "must hold the sections of params"),
                                               ("quick: 3\n", "`quick:` a mapping too")])
def test_a_file_that_is_no_mapping_is_refused(tmp_path, text, message):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=message):
        load_params(tmp_path / "params.yaml")


def test_a_missing_section_is_named_before_it_is_read(tmp_path):
    path = params_file(tmp_path, lambda p: p.pop("paths"))
    with pytest.raises(ParamsError, match="paths: Field required"):
        load_params(path, quick=True)


def test_every_stage_reads_params_through_the_check(tmp_path, capsys):
    "The pipeline's stage runner and the tuning worker read the file with the checking `load_params`."
    from census_income import pipeline, tune

    assert pipeline.load_params is load_params
    bad = params_file(tmp_path, lambda p: p["tune"].update(n_trials=0))
    assert tune.worker_main(["--params", bad]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("census-tune-worker: ") and "tune.n_trials: Input should be greater than" in lines[0]


@pytest.mark.parametrize(("options", "line"), [
    (["--n-trials", "0"], "census-tune-worker: --n-trials 0: Input should be greater than or equal to 1"),
    (["--n-trials", "-3"], "census-tune-worker: --n-trials -3: Input should be greater than or equal to 1"),
    (["--storage", "foo://bar"], "census-tune-worker: --storage foo://bar: 'foo://bar' is not a storage URL: give one of"),
])
def test_the_tune_workers_options_are_checked_by_the_tune_sections_model(tmp_path, capsys, options, line):
    "The worker's options override keys of the tune section, and are checked by its model: one line naming the option."
    from census_income import tune

    (tmp_path / "good").mkdir()
    good = shutil.copy(ROOT / "params.yaml", tmp_path / "good" / "params.yaml")
    assert tune.worker_main(["--params", str(good), *options]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_dvc_yaml_names_the_model_files_as_the_predictor_does():
    "The model folder's file names have one home (census_income.network); dvc.yaml's outputs must use the same."
    from census_income.network import MANIFEST, WEIGHTS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = {next(iter(o)) for o in stages["train"]["outs"]}
    assert {f"${{paths.model_dir}}/{WEIGHTS}", f"${{paths.model_dir}}/{MANIFEST}"} <= outs, outs


def test_every_output_of_dvc_yaml_persists():
    "DVC deletes an output that does not persist before its stage runs: a refused run would lose the last good one."
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = [(name, o) for name, st in stages.items() for o in st.get("outs", []) + st.get("metrics", [])]
    assert len(declared) > 30
    assert [(name, o) for name, o in declared if not (isinstance(o, dict) and next(iter(o.values())).get("persist"))] == []


@pytest.mark.parametrize(("text", "message"), [
    ("clean: !!python/object/apply:os.system ['true']\n", "not YAML the pipeline reads at line 1, column 8: could not determine a constructor"),
    ("clean:\n\tseed: 1\n", "not YAML the pipeline reads at line 2, column 1"),
    ("clean: {seed: 1, seed: 2}\n", "not YAML the pipeline reads at line 1, column 8: seed given twice in one mapping"),
    ("train: {}\ntrain: {}\n", "train given twice in one mapping"),
    ("seed: " + "9" * 5000 + "\n", "at line 1, column 7: a number of 5,000 characters; a params file's numbers have at most 40"),
    ("a: &x [1, 2]\nb: *x\n", "at line 1, column 4: anchors and aliases (&name, *name) are not read here"),
    ("".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else '1'}]\n" for i in range(10)),  # a billion laughs
     "at line 1, column 5: anchors and aliases"),
    ("clean: " + "[" * 5000 + "]" * 5000 + "\n", "at line 1, column 23: nested more than 16 levels deep"),
])
def test_a_file_the_yaml_reader_refuses_is_one_line(tmp_path, text, message):
    """Tags, tabs, a key given twice (YAML's reader would keep the last silently), a 5,000-digit number, an alias bomb (a
    2 KB file that expands to a billion items), 5,000 nested lists (past the builder's recursion): one ParamsError each."""
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path / "params.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_params_path_that_is_no_regular_file_is_refused_without_reading_it(tmp_path, kind):
    "A FIFO would block the reader forever, /dev/zero feed it without end: each refused in one line, before a byte is read."
    import os

    path = {"fifo": tmp_path / "params.yaml", "device": Path("/dev/zero"), "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == f"{path} cannot be read: not a regular file (a folder, a FIFO or a device); give the path of a params file"


@pytest.mark.integration  # a process reading a megabyte of YAML: 5 s
def test_a_mapping_of_a_megabyte_of_keys_is_read_in_one_pass(tmp_path):
    "Each key checked against a set: 66,000 keys (1 MB, about the most a params file holds) read in seconds (a count per key took minutes); bounded by a timeout."
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("extra:\n" + "".join(f"  k{i}: {i}\n" for i in range(66_000)))
    code = ("import sys; from census_income.yamlfile import read_yaml; from pathlib import Path; "
            "print(len(read_yaml(Path(sys.argv[1]))['extra']))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "params.yaml")], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "66000", proc.stderr[-2000:]


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    from census_income.places import places_fit

    (tmp_path / "out").write_text("")
    paths = load_params(ROOT / "params.yaml", workdir=tmp_path / "out").paths.model_dump()
    with pytest.raises(ValueError, match=r"^paths\.clean_csv: .*/out is a file, not a folder"):
        places_fit({k: Path(v) for k, v in paths.items()}, tmp_path / "out")


def test_a_file_larger_than_any_params_file_is_refused_before_it_is_read(tmp_path):
    from census_income.yamlfile import MAX_YAML_BYTES

    (tmp_path / "params.yaml").write_text("# a comment\n" * (MAX_YAML_BYTES // 12 + 1))
    with pytest.raises(ParamsError, match=r"params.yaml cannot be used: 1,048,\d{3} bytes, more than a params file needs"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("where", ["missing.yaml", "."])
def test_a_params_path_that_is_no_file_is_one_line_from_the_worker(tmp_path, capsys, where):
    "A typo in --params, or a folder: one line saying the file cannot be read, not a traceback."
    from census_income import tune

    assert tune.worker_main(["--params", str(tmp_path / where)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "cannot be read: " in lines[0] and "give the path of a params file" in lines[0], lines


def test_a_byte_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "params.yaml").write_bytes(b"clean:\n  seed: 4\xff2\n")
    with pytest.raises(ParamsError, match="byte 16 is not UTF-8"):
        load_params(tmp_path / "params.yaml")


def test_the_echoed_value_is_cut(tmp_path):
    "A large unknown section (anchors make a 2 KB file hold megabytes) is quoted in a hundred characters, not in full."
    path = params_file(tmp_path, lambda p: p.update(extra={f"k{i}": list(range(300)) for i in range(10)}))  # 14 KB
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "extra: Extra inputs are not permitted (got {'k0': [0, 1, 2," in str(err.value) and len(str(err.value)) < 600


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["paths"].update(clean_csv="data/census.csv"), "clean_csv and raw_csv are the same path 'data/census.csv'"),
    (lambda p: p["paths"].update(test_csv="data/train.csv"), "test_csv and train_csv are the same path"),
    (lambda p: p["paths"].update(model_dir="/etc"), "model_dir: '/etc' must be a path inside the params file's folder"),
    (lambda p: p["paths"].update(test_json="../metrics/test.json"), "test_json: '../metrics/test.json' must be a path inside"),
    (lambda p: p["train"].update(seed=2**64), "train.seed: Input should be less than 4294967296"),
    (lambda p: p["clean"].update(seed=-1), "clean.seed: Input should be greater than or equal to 0"),
    (lambda p: p["train"].update(n_folds=100_000_000), "train.n_folds: Input should be less than or equal to 20"),
    (lambda p: p["batch"].update(chunk_bytes=2**40), "batch.chunk_bytes: Input should be less than or equal to 1073741824"),
    (lambda p: p["paths"].update(model_dir="mo\x00del"), "paths.model_dir: holds the control character '\\x00'; give printable text"),
    (lambda p: p["paths"].update(card_md="card\n.md"), "paths.card_md: holds the control character '\\n'"),
    (lambda p: p["paths"].update(slice_txt="s" * 256), "paths.slice_txt: must name a file or folder in 1 to 255 characters"),
    (lambda p: p["tune"]["space"].update(hidden={"choices": []}), "tune.space.hidden.choices: List should have at least 1 item"),
    # sizes past anything the pipeline can hold: refused at load, not as a MemoryError deep in a stage
    (lambda p: p["slices"].update(n_boot=10**12), "slices.n_boot: Input should be less than or equal to 10000"),
    (lambda p: p["train"].update(n_boot=10**6), "train.n_boot: Input should be less than or equal to 10000"),
    (lambda p: p["train"].update(importance_repeats=10**6), "train.importance_repeats: Input should be less than or equal to 1000"),
    (lambda p: p["slices"]["mitigation"].update(grid_size=10**9), "slices.mitigation.grid_size: Input should be less than or equal to 100000"),
    (lambda p: p["tune"]["stored"].update(hidden=10**7), "tune.stored.hidden: Input should be less than or equal to 4096"),
    (lambda p: p["tune"]["space"].update(hidden={"int": [16, 10**9]}), "tune: space: hidden: 1000000000: Input should be less than or equal to 4096"),
    (lambda p: p["tune"]["space"].update(depth={"float": [1.0, 4.0]}), "tune: space: depth: 1.0: Input should be a valid integer"),
    (lambda p: p["batch"]["drift"].update(min_rows=0), "batch.drift.min_rows: Input should be greater than or equal to 1"),
    # text a log, a file system or a database name carries: printable, each name within the OS's 255 bytes
    (lambda p: p["tune"].update(study_name="census\x00mlp"), "tune.study_name: holds the control character '\\x00'"),
    (lambda p: p["tune"].update(storage="sqlite:///study\n.db"), "tune.storage: holds the control character '\\n'"),
    (lambda p: p["paths"].update(card_md="reports/card\u202e.md"), "paths.card_md: holds the control character '\\u202e'"),
    (lambda p: p["paths"].update(card_md="reports/card\x85.md"), "paths.card_md: holds the control character '\\x85'"),
    (lambda p: p["paths"].update(card_md="reports/" + "é" * 200 + ".md"), "each name at most 255 bytes in UTF-8"),
    # outputs over the repository's own files: its root, a hidden folder (.git, the stages' staging), the notebooks, the package
    (lambda p: p["paths"].update(clean_csv="dvc.yaml"), "paths: clean_csv: 'dvc.yaml' is among the repository's own files"),
    (lambda p: p["paths"].update(clean_csv=".git/config"), "clean_csv: '.git/config' is among the repository's own files"),
    (lambda p: p["paths"].update(clean_csv=".census-stage/clean/out.csv"), "is among the repository's own files"),
    (lambda p: p["paths"].update(card_md="nbs/01_clean.ipynb"), "card_md: 'nbs/01_clean.ipynb' is among the repository's own files"),
    (lambda p: p["paths"].update(card_md="census_income/api.py"), "card_md: 'census_income/api.py' is among the repository's own"),
])
def test_paths_and_seeds_a_stage_cannot_use_are_refused(tmp_path, change, message):
    "An output over the raw data or outside the folder (where neither the staging nor a quick run could redirect it)."
    with pytest.raises(ParamsError) as err:
        load_params(params_file(tmp_path, change))
    assert message in str(err.value)


@pytest.mark.parametrize(("options", "line"), [
    ([], "census-tune-worker: {tmp}/good/data/train.csv and {tmp}/good/model/encoder.json missing: the training split and the encoder"),
    (["--storage", "journal:/dev/null/study.journal"], "census-tune-worker: the study at journal:/dev/null/study.journal cannot be used: "),
    (["--storage", "postgresql://someone:secret@127.0.0.1:1/db"], "census-tune-worker: the study at postgresql://someone:***@127.0.0.1:1/db cannot be used: "),
])
def test_a_worker_that_cannot_start_says_why_in_one_line(tmp_path, capsys, options, line):
    "Inputs not pulled yet, a storage it cannot write or reach: one line, exit status 1, and never the password."
    from census_income import tune

    (tmp_path / "good").mkdir()
    good = shutil.copy(ROOT / "params.yaml", tmp_path / "good" / "params.yaml")
    if options:  # inputs in place (the storage is opened before they are read)
        for rel in ("data/train.csv", "model/encoder.json"):
            (tmp_path / "good" / rel).parent.mkdir(exist_ok=True)
            (tmp_path / "good" / rel).write_text("")
    assert tune.worker_main(["--params", str(good), *options]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line.format(tmp=tmp_path)), lines
    assert "secret" not in lines[0]


def test_the_pipelines_model_folder_is_where_the_api_and_predict_look():
    "params.yaml's paths.model_dir, the API's CENSUS_MODEL_DIR default and predict()'s default are one folder."
    import inspect

    from census_income.network import MODEL_DIR
    from census_income.predict import predict
    from census_income.serving.settings import Settings

    assert yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]["model_dir"] == MODEL_DIR  # the file as written
    assert Settings.model_fields["model_dir"].default == Path(MODEL_DIR)
    assert inspect.signature(predict).parameters["model_dir"].default == MODEL_DIR
