"""The DVC pipeline from a fresh copy: it runs, it is idempotent, and it reruns only what changed."""

import json
import re
import subprocess

import pandas as pd
import yaml

from testkit import ROOT, run, set_params, tool_env
from tests.conftest import REPRO_WHERE


def test_repro_builds_every_declared_output(pipeline_repo):
    for rel in ["data/census_clean.csv", "data/train.csv", "data/test.csv", "model/encoder.json",
                "reports/01_clean.ipynb", "reports/02_preprocess.ipynb"]:
        assert (pipeline_repo / rel).is_file(), rel
    clean = pd.read_csv(pipeline_repo / "data/census_clean.csv", keep_default_na=False)
    train = pd.read_csv(pipeline_repo / "data/train.csv", keep_default_na=False)
    test = pd.read_csv(pipeline_repo / "data/test.csv", keep_default_na=False)
    assert len(clean) == 32_537 and len(train) + len(test) == len(clean)
    assert not clean.duplicated().any()
    assert "parameters" in (pipeline_repo / "reports/01_clean.ipynb").read_text()


def test_second_repro_does_nothing(pipeline_repo):
    out = run(["dvc", "repro"], pipeline_repo).stdout
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in run(["dvc", "status"], pipeline_repo).stdout


def test_changed_split_seed_reruns_preprocess_but_not_clean(own_pipeline_repo):
    repo = own_pipeline_repo
    set_params(repo, split={"seed": 7})
    out = run(["dvc", "repro", "preprocess"], repo).stdout
    assert "Running stage 'preprocess'" in out
    assert "Running stage 'clean'" not in out and "Stage 'clean' didn't change" in out


def test_tuning_switch_uses_the_stored_params(pipeline_repo, params):
    "With tune.enabled false (as the fixture sets it) no trial runs and the stored best params are used."
    best = json.loads((pipeline_repo / "model/best_params.json").read_text())
    assert best["source"] == "params.yaml (tuning skipped)"
    assert best["params"] == params.tune.stored.model_dump()
    manifest = json.loads((pipeline_repo / "model/manifest.json").read_text())
    shape = params.train.distill.model_dump(include={"depth", "hidden"})  # the served student's own; the rest is tuned
    assert manifest["params"]["served"] == "student"
    assert {k: manifest["params"][k] for k in best["params"]} == best["params"] | shape


SEEDED = ["model/weights.safetensors", "model/manifest.json", "metrics/test.json", "metrics/baselines.json"]


def test_a_forced_repro_writes_the_same_bytes_and_one_line_per_stage_event(own_pipeline_repo):
    "Every stage run again from scratch: `dvc.lock` keeps every hash (`git status` stays clean), the model and its"
    " metrics are the same bytes (every random process takes its seed from params.yaml: retraining reproduces the"
    " weights bit for bit), and `dvc repro --quiet` (what `make pipeline` runs) prints only when each stage starts and"
    " ends, with its time."
    before = {f: (own_pipeline_repo / f).read_bytes() for f in SEEDED}
    run(["git", "add", "-A"], own_pipeline_repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the first repro"], own_pipeline_repo)
    proc = run(["dvc", "repro", "--force", "--quiet"], own_pipeline_repo, timeout=1800)
    lines = (proc.stdout + proc.stderr).splitlines()
    stages = list(yaml.safe_load((own_pipeline_repo / "dvc.yaml").read_text())["stages"])
    assert [line.split(":")[0] for line in lines] == [f"stage {s}" for s in stages for _ in range(2)], lines
    for line in lines:
        assert re.fullmatch(r"stage \w+: (running nbs/\w+\.ipynb|done in [0-9.]+ s \(reports/\w+\.html\))", line), line
    changed = [f for f in SEEDED if (own_pipeline_repo / f).read_bytes() != before[f]]
    assert not changed, f"a second run of every stage with the same params changed {changed}"
    status = run(["git", "status", "--porcelain"], own_pipeline_repo).stdout
    assert status == "", f"a rerun changed outputs' hashes:\n{status}\n{run(['git', 'diff'], own_pipeline_repo).stdout[-3000:]}"


def test_no_output_depends_on_where_the_repository_lives(pipeline_repo):
    "A fresh clone anywhere must reproduce the committed hashes: no executed notebook or page may quote an absolute path."
    pages = [p for p in sorted((pipeline_repo / "reports").glob("*.*")) if p.suffix in (".ipynb", ".html", ".md", ".txt")]
    assert pages
    for page in pages:
        text = page.read_text(errors="replace")
        for path in (pipeline_repo, (pipeline_repo / REPRO_WHERE).read_text(), ROOT):  # the copy, where it ran, here
            assert str(path) not in text, f"{page.name} quotes a path of this machine: {path}"


def _outputs(repo, stages: list[str]) -> dict:
    "Every declared output of these stages (dvc.yaml, its ${paths...} resolved) and its bytes."
    paths = yaml.safe_load((repo / "params.yaml").read_text())["paths"]
    stages_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    names = [next(iter(o)) if isinstance(o, dict) else o for s in stages for o in stages_yaml[s].get("outs", []) +
             stages_yaml[s].get("metrics", [])]
    names = [re.sub(r"\$\{paths\.(\w+)\}", lambda m: paths[m.group(1)], n) for n in names]
    return {n: (repo / n).read_bytes() for n in names}


def test_a_refused_stage_keeps_the_last_good_outputs_under_dvc(own_pipeline_repo):
    "DVC deletes a stage's outputs before its command unless they persist: a refused run of `dvc repro` or of"
    " `dvc exp run -S` leaves every previous output in the workspace, byte for byte."
    repo = own_pipeline_repo
    before = _outputs(repo, ["clean", "preprocess", "train"])
    set_params(repo, clean={"sample_rows": -5})
    proc = subprocess.run(["dvc", "repro", "clean"], cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "clean.sample_rows" in proc.stdout + proc.stderr
    assert _outputs(repo, ["clean", "preprocess", "train"]) == before
    run(["git", "checkout", "params.yaml"], repo)
    proc = subprocess.run(["dvc", "exp", "run", "-S", "train.n_folds=1"], cwd=repo, env=tool_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode != 0 and "n_folds" in proc.stdout + proc.stderr
    run(["git", "checkout", "params.yaml"], repo)
    assert _outputs(repo, ["clean", "preprocess", "train"]) == before
