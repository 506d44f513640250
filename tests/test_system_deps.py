"""tools/system-deps: what the whole suite needs from the system is installed by the project, or named in one line."""

import glob
import shutil
import subprocess

from testkit import ROOT

SCRIPT = ROOT / "tools" / "system-deps"


def run_with_path(tmp_path, *tools: str) -> subprocess.CompletedProcess:
    "The script with a PATH holding only the given tools (so that chromium and apt-get look absent)."
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "ls", "id", *tools):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return subprocess.run([str(bin_dir / "bash"), str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=60)


def test_without_apt_get_a_missing_package_is_one_line_naming_it_and_its_command(tmp_path):
    proc = run_with_path(tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(lines) == 1 and "chromium" in lines[0] and "apt-get install" in lines[0], proc.stderr
    assert ("postgresql" in lines[0]) == (not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def test_make_test_and_ci_run_call_it():
    makefile = (ROOT / "Makefile").read_text()
    test_target = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "tools/system-deps" in test_target
    assert "tools/system-deps" in (ROOT / ".ci" / "run").read_text()
