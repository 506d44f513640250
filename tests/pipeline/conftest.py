"""A real S3 endpoint for the DVC remote: moto's standalone server, run from its own venv (.venv-moto, `make moto`)."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testkit import ROOT, free_port, run
from tests.conftest import exit_report

MOTO_SERVER = ROOT / ".venv-moto" / "bin" / "moto_server"
BUCKET = "census-income-dvc"  # the bucket of the S3 remote named in .dvc/config
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> float:
    "Seconds until 127.0.0.1:port accepts a connection; fail if it does not within timeout or proc dies."
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"nothing listens on {port}: " + exit_report(proc))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def use_endpoint(repo: Path, endpoint: str) -> None:
    "Point the repo's default DVC remote at endpoint, in the untracked .dvc/config.local (as a developer would)."
    remote = run(["dvc", "remote", "default"], repo).stdout.strip()
    run(["dvc", "remote", "modify", "--local", remote, "endpointurl", endpoint], repo)


@pytest.fixture(scope="session")
def moto_endpoint():
    "moto_server on a free port of 127.0.0.1, with the remote's bucket created; its URL."
    import boto3  # here, not at the top: this file is imported by every worker's collection, boto3 costs 0.25 s

    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} is missing: run `make moto` (moto[server] in its own venv)")
    port = free_port()
    proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, proc)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def _boto_credentials() -> dict:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENV["AWS_DEFAULT_REGION"]}


@pytest.fixture(scope="session")
def pushed_repo(pipeline_repo, moto_endpoint, tmp_path_factory) -> Path:
    "A copy of the pipeline run with its dvc.lock committed and every output pushed to the S3 remote on moto."
    repo = tmp_path_factory.mktemp("pushed") / "repo"
    shutil.copytree(pipeline_repo, repo, symlinks=True)
    run([*GIT, "add", "-A"], repo)
    run([*GIT, "commit", "-qm", "pipeline run", "--allow-empty"], repo)
    use_endpoint(repo, moto_endpoint)
    t0 = time.perf_counter()
    proc = run(["dvc", "push"], repo, timeout=300, **S3_ENV)
    (repo / "push.log").write_text(f"dvc push took {time.perf_counter() - t0:.1f} s\n{proc.stdout}{proc.stderr}")
    return repo
