"""CI's lock check says what differs (tools/lock_diff.py): the stages, the files, and the CPU it ran on."""

import subprocess
import sys

import yaml

from testkit import ROOT, tool_env

sys.path.insert(0, str(ROOT / "tools"))
from lock_diff import describe, lock_changes  # noqa: E402


def lock(**outs: str) -> str:
    "A small dvc.lock: stage tune reads train.csv, writes best_params.json; train reads that, writes the weights."
    return yaml.safe_dump({"schema": "2.0", "stages": {
        "tune": {"cmd": "census-stage tune", "deps": [{"path": "data/train.csv", "md5": "a1"}],
                 "params": {"params.yaml": {"tune": {"n_trials": 40}}},
                 "outs": [{"path": "model/best_params.json", "md5": outs.get("best", "b1")}]},
        "train": {"cmd": "census-stage train", "deps": [{"path": "model/best_params.json", "md5": outs.get("best", "b1")}],
                  "outs": [{"path": "model/weights.safetensors", "md5": outs.get("weights", "w1")}]}}}, sort_keys=False)


def test_the_same_lock_has_no_changes():
    assert lock_changes(lock(), lock()) == []


def test_the_first_stage_that_wrote_other_bytes_comes_first_with_its_files():
    changes = lock_changes(lock(), lock(best="b2", weights="w2"))
    assert changes == [("tune", "outs", "model/best_params.json", "changed"),
                       ("train", "deps", "model/best_params.json", "changed"),
                       ("train", "outs", "model/weights.safetensors", "changed")]
    assert describe(changes) == ["stage tune: outputs differ: model/best_params.json (changed)",
                                 "stage train: inputs differ: model/best_params.json (changed); "
                                 "outputs differ: model/weights.safetensors (changed)"]


def test_a_param_that_changed_is_named_with_its_file():
    new = lock().replace("n_trials: 40", "n_trials: 41")
    assert lock_changes(lock(), new) == [("tune", "params", "params.yaml:tune", "changed")]


def test_the_command_names_the_stages_and_the_cpu(tmp_path):
    committed = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    first = next(iter(yaml.safe_load(committed)["stages"]))
    changed = tmp_path / "dvc.lock"
    data = yaml.safe_load(committed)
    data["stages"][first]["outs"][0]["md5"] = "0" * 32
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.run([sys.executable, "tools/lock_diff.py", "--lock", str(changed)], cwd=ROOT, env=tool_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert f"first {first}:" in out and data["stages"][first]["outs"][0]["path"] in out
    assert "the stages' (pinned) AVX2" in out and "the CPU's own" in out, out
    same = tmp_path / "same.lock"
    same.write_text(committed)
    proc = subprocess.run([sys.executable, "tools/lock_diff.py", "--lock", str(same)], cwd=ROOT, env=tool_env(),
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "dvc.lock: the same as HEAD's\n")
