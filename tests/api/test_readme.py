"""The commands of the README and of its guide (docs/guide.md), run as written (with a local model, ports and scratch
paths swapped in), the example files they name, and what they say they print."""

import json
import os
import re
import shlex
import signal
import subprocess

import httpx
import pandas as pd
import pytest
import yaml

from testkit import ROOT, VENV_BIN, copy_repo, free_port, run, tool_env

from .conftest import wait_ready

README = (ROOT / "README.md").read_text()
DOCS = README + "\n" + (ROOT / "docs" / "guide.md").read_text()  # the front page and the reference behind it


def command(prefix: str) -> str:
    "The line of the README or the guide that starts with prefix (one, though both may show it)."
    lines = {line for line in DOCS.splitlines() if line.startswith(prefix)}
    assert len(lines) == 1, f"expected one line of the README or the guide starting with {prefix!r}, found {len(lines)}"
    return lines.pop().split("  #")[0].strip()


def test_curl_example(server):
    cmd = command("curl -s http://127.0.0.1:8000/predict").replace("http://127.0.0.1:8000", server)
    assert "@examples/record.json" in cmd  # the shipped file, from the clone's root
    out = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    body = json.loads(out)
    shown = re.search(r'# \{"prediction":"([^"]+)","probability":([0-9.]+)…', README)  # what the README says it prints
    assert body["prediction"] == shown.group(1) and str(body["probability"]).startswith(shown.group(2)) and body["model_version"]


def test_make_serve_with_another_port(model_dir):
    port = free_port()
    assert command("PORT=9000 make serve") == "PORT=9000 make serve"
    proc = subprocess.Popen(["make", "serve", f"PORT={port}"], cwd=ROOT, env=tool_env(CENSUS_MODEL_DIR=str(model_dir)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", timeout=120)
        assert "docs" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_python_example(pipeline_repo, monkeypatch):
    code = re.search(r"```python\n(.*?)```", DOCS, re.S).group(1)
    code = code.replace("predictor.predict_records(", "result = predictor.predict_records(")
    scope: dict = {}
    monkeypatch.chdir(pipeline_repo)  # undone after the test, whatever happens
    exec(code, scope)  # noqa: S102 - the README's own snippet
    shown = re.search(r"# \[\{'prediction': '([^']+)', 'probability': ([0-9.]+)\.\.\.", code)  # what the README says it prints
    assert scope["result"][0]["prediction"] == shown.group(1)
    assert str(scope["result"][0]["probability"]).startswith(shown.group(2))


def test_batch_papermill_command(own_pipeline_repo):
    cmd = command("papermill -k python3 --cwd nbs nbs/07_batch.ipynb /tmp/07_batch.ipynb -p input_path")
    args = shlex.split(cmd)
    args[0] = str(VENV_BIN / "papermill")
    run(args, own_pipeline_repo, timeout=600)
    scored = pd.read_csv(own_pipeline_repo / "scored.csv", keep_default_na=False)
    rejects = pd.read_csv(own_pipeline_repo / "rejects.csv", keep_default_na=False)
    assert len(scored) == 32_561 and rejects.empty
    assert set(scored["prediction"]) == {"<=50K", ">50K"}


def test_batch_on_dask_command(own_pipeline_repo):
    cmd = command("papermill -k python3 --cwd nbs nbs/07_batch.ipynb /tmp/07_batch_dask.ipynb -p engine dask")
    args = shlex.split(cmd)
    args[0] = str(VENV_BIN / "papermill")
    run(args, own_pipeline_repo, timeout=600)
    scored = pd.concat([pd.read_csv(p, keep_default_na=False) for p in (own_pipeline_repo / "scored").glob("scored-*.csv")])
    rejects = pd.concat([pd.read_csv(p, keep_default_na=False) for p in (own_pipeline_repo / "scored").glob("rejects-*.csv")])
    clean, train, test = (len(pd.read_csv(own_pipeline_repo / f"data/{n}.csv")) for n in ("census_clean", "train", "test"))
    raw = 32_561  # data/census.csv: every file matching the glob is scored, each line once
    assert len(scored) + len(rejects) == raw + clean + train + test and rejects.empty


def test_tune_worker_command(own_pipeline_repo, tmp_path):
    cmd = command("census-tune-worker --storage journal:model/optuna.journal")
    cmd = cmd.replace("journal:model/optuna.journal", f"journal:{tmp_path}/optuna.journal").replace("--n-trials 60", "--n-trials 2")
    params = yaml.safe_load((own_pipeline_repo / "params.yaml").read_text())
    params["tune"] |= {"max_epochs": 2}  # two short trials: the command is what is tested, not the search
    (own_pipeline_repo / "params-worker.yaml").write_text(yaml.safe_dump(params))
    args = [str(VENV_BIN / "census-tune-worker"), *shlex.split(cmd)[1:], "--params", "params-worker.yaml"]
    out = run(args, own_pipeline_repo, timeout=600).stderr
    assert f"study {params['tune']['study_name']}: 2 finished" in out, out
    assert (tmp_path / "optuna.journal").stat().st_size > 0


def test_dvc_metrics_and_plots(pipeline_repo, tmp_path):
    assert "dvc metrics show" in DOCS and "dvc plots show" in DOCS
    metrics = run(["dvc", "metrics", "show", "--json"], pipeline_repo).stdout
    assert "roc_auc" in metrics and "recall" in metrics
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], pipeline_repo)
    page = (tmp_path / "plots" / "index.html").read_text()
    for title in ("ROC curve", "Precision-recall curve", "Confusion matrix", "Reliability", "Training"):
        assert title in page, f"dvc plots show lost the {title} plot"
    md = run(["dvc", "metrics", "show", "--md", "metrics/test.json", "metrics/baselines.json"], pipeline_repo).stdout
    assert md.startswith("|") and "roc_auc" in md and "hist_gradient_boosting" in md


def test_the_example_files_are_census_people():
    "examples/record.json is the API's example; examples/new_people.csv holds real rows of the census, and one bad line."
    from census_income.validation import EXAMPLE

    assert json.loads((ROOT / "examples" / "record.json").read_text()) == EXAMPLE
    census = {tuple(v.strip() for v in line.split(",")[:-1]) for line in (ROOT / "data" / "census.csv").read_text().splitlines()[1:]}
    people = [tuple(line.split(",")) for line in (ROOT / "examples" / "new_people.csv").read_text().splitlines()[1:]]
    strangers = [p for p in people if p not in census]
    assert len(people) == 21 and len(strangers) == 1 and strangers[0][12] == "169"  # 169 hours: more than a week holds


def test_the_batch_example(own_pipeline_repo):
    "The README's census-batch line, as written, in a clone after `make pipeline`: what it prints and the page it writes."
    line = command("census-batch examples/new_people.csv --output scored.csv")
    args = shlex.split(line)
    status = int(re.search(r"exit status (\d+)", README).group(1))  # what the README says the job ends with: its drift alarm
    out = run([str(VENV_BIN / args[0]), *args[1:]], own_pipeline_repo, status=status).stderr.strip()
    shown = "\n".join(ln[2:] for ln in README.splitlines() if ln.startswith("# census-batch: "))  # what the README says it prints
    assert re.sub(r"by model [0-9a-f]+;", "by model …;", out) == shown, out
    page = (own_pipeline_repo / "scored.report.html").read_text()
    assert "hours-per-week: 169 is outside the allowed range 1..168" in page


@pytest.mark.integration
def test_make_quick(tmp_path):
    "The README's first look, as written, in a clone that has no output yet: a model card to open, nothing else written."
    assert command("make quick") == "make quick"
    clone = copy_repo(tmp_path / "clone")
    (clone / ".venv").symlink_to(ROOT / ".venv")  # the clone's environment is this one (`make` would build it otherwise)
    run(["make", "-o", ".venv/.installed", "quick"], clone, timeout=600)  # never reinstall the shared venv from a clone
    page = (clone / "quick" / "05a_report.html").read_text()
    assert "Model card: census income MLP" in page and "Quantitative analyses" in page
    assert "Trial 0 finished" not in page, "the sample run's log lines are not the report"
    written = [p for d in ("data", "model", "metrics", "reports") for p in (clone / d).iterdir() if p.name not in (".gitignore", "census.csv")]
    assert not written, f"a quick run wrote outputs: {written}"
