"""The DVC remote on S3: push every output to moto's S3 server, pull it into a fresh clone, byte for byte."""

import configparser
import hashlib
import subprocess
import time
from pathlib import Path

import yaml

from testkit import ROOT, free_port, run, tool_env
from tests.pipeline.conftest import GIT, S3_ENV, use_endpoint


def lock_outputs(repo: Path) -> dict[str, str]:
    "Every output that dvc.lock records, path → md5."
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_remote_is_s3_without_secrets():
    "The committed config names a default S3 remote and holds no endpoint or credentials; config.local stays out of git."
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".dvc" / "config")
    default = cfg["core"]["remote"]
    remote = cfg[f"'remote \"{default}\"'"]
    assert remote["url"].startswith("s3://census-income-dvc/"), remote["url"]
    assert not {"endpointurl", "access_key_id", "secret_access_key", "session_token", "credentialpath"} & set(remote)
    assert "/config.local" in (ROOT / ".dvc" / ".gitignore").read_text().split()


def test_push_then_pull_in_a_fresh_clone(pushed_repo, moto_endpoint, tmp_path):
    outs = lock_outputs(pushed_repo)
    assert {"model/weights.safetensors", "model/manifest.json", "model/encoder.json", "data/train.csv"} <= set(outs)
    assert "pushed" in (pushed_repo / "push.log").read_text()

    clone = tmp_path / "clone"
    run([*GIT, "clone", "-q", str(pushed_repo), str(clone)], tmp_path)
    assert not any((clone / p).exists() for p in outs), "outputs must come from the remote, not from git"
    use_endpoint(clone, moto_endpoint)
    t0 = time.perf_counter()
    pull = run(["dvc", "pull"], clone, timeout=300, **S3_ENV)
    took = time.perf_counter() - t0

    for path, md5 in outs.items():
        got = clone / path
        assert got.is_file(), f"{path} was not pulled"
        assert sha256(got) == sha256(pushed_repo / path), f"{path} differs after the round trip"
        assert hashlib.md5(got.read_bytes()).hexdigest() == md5, f"{path} does not match dvc.lock"
    status = run(["dvc", "status"], clone).stdout
    assert "Data and pipelines are up to date" in status, status
    cloud = run(["dvc", "status", "--cloud"], clone, **S3_ENV).stdout
    assert "in sync" in cloud, cloud
    print(f"\n{(pushed_repo / 'push.log').read_text()}\ndvc pull of {len(outs)} outputs took {took:.1f} s:\n{pull.stdout}")


def test_unreachable_remote_fails_clearly(pushed_repo, tmp_path):
    clone = tmp_path / "clone"
    run([*GIT, "clone", "-q", str(pushed_repo), str(clone)], tmp_path)
    use_endpoint(clone, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    proc = subprocess.run(["dvc", "pull", "model/manifest.json"], cwd=clone, env=tool_env(**S3_ENV),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Could not connect to the endpoint URL" in proc.stderr, proc.stderr
    assert "failed to pull data from the cloud" in proc.stderr, proc.stderr
    assert not (clone / "model" / "manifest.json").exists()
