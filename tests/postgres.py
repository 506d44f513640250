"""A throwaway PostgreSQL server for tests: `postgresql_url` starts one for the session and removes it afterwards.

It needs the server binaries (initdb, pg_ctl, postgres): on PATH, or Debian's /usr/lib/postgresql/<version>/bin
(`apt-get install postgresql`); without them the tests that use it are skipped. The server listens on 127.0.0.1
only, on a free port, with its socket and data in a temporary directory and trust authentication. PostgreSQL
refuses to run as root, so as root it runs as the unprivileged `postgres` user (created by Debian's package).

Use it in a test module with `from .postgres import postgresql_url  # noqa: F401`.
"""

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import free_port

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
RUN_AS = "postgres"  # the unprivileged user the server runs as when the tests run as root
DATABASE = "census_income"


def find_bin_dir() -> Path | None:
    "The directory holding initdb, pg_ctl and postgres: PATH first, then the newest /usr/lib/postgresql/*/bin."
    def version(bin_dir: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", bin_dir.parent.name)]

    candidates = []
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    return next((d for d in candidates if all(os.access(d / b, os.X_OK) for b in SERVER_BINARIES)), None)


@contextlib.contextmanager
def postgres_server(bin_dir: Path, database: str = DATABASE) -> Iterator[str]:
    "Start a server in a new temporary directory, create `database`; yield its SQLAlchemy URL; stop and remove it."
    as_root = os.geteuid() == 0
    if as_root:
        try:
            user = pwd.getpwnam(RUN_AS)
        except KeyError:
            pytest.skip(f"running as root and there is no '{RUN_AS}' user to run PostgreSQL as "
                        f"(apt-get install postgresql creates it)")
    runner = ["runuser", "-u", RUN_AS, "--"] if as_root else []
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    env.pop("PGDATA", None)

    def pg(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*runner, str(bin_dir / cmd[0]), *cmd[1:]], cwd=base, env=env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}")
        return proc

    base = Path(tempfile.mkdtemp(prefix="census-pg-"))  # short: the socket path must fit in 107 bytes
    try:
        if as_root:
            os.chown(base, user.pw_uid, user.pw_gid)
        data, port = base / "data", free_port()
        pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
        with open(data / "postgresql.conf", "a") as conf:  # the server's file; appending keeps its owner
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{base}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(base / "server.log"))
        try:
            createdb(port, database)
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
        finally:
            if pg("pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(data), check=False).returncode:
                pg("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(data), check=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def createdb(port: int, database: str) -> None:
    try:
        import psycopg2
    except ImportError as e:
        raise ImportError("the PostgreSQL tests need the psycopg2 driver: pip install psycopg2-binary "
                          "(a dev requirement)") from e
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    "SQLAlchemy URL of an empty database on a PostgreSQL server of its own, for the whole session."
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    with postgres_server(bin_dir) as url:
        yield url
