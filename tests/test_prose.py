"""What the README and its guide name exists: every `make` target, every file or folder of the repository they point
to (outputs of the pipeline aside: a fresh clone has none until `make pipeline`), every console command."""

import re
import subprocess

import pytest

from testkit import ROOT

DOCS = {name: (ROOT / name).read_text() for name in ("README.md", "docs/guide.md")}
TARGETS = set(re.findall(r"^([a-z0-9-]+):", (ROOT / "Makefile").read_text(), re.M))
OUTPUTS = ("data/", "model/", "metrics/", "reports/", "dvc_plots", "quick/", "scored", "rejects", "_docs",
           ".dvc/tmp/")  # made by commands
# what a fresh clone holds: the files git tracks and their folders (a file left in the working tree does not count)
TRACKED = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
IN_CLONE = set(TRACKED) | {f"{'/'.join(t.split('/')[:i])}" for t in TRACKED for i in range(1, t.count("/") + 1)}
PATH = re.compile(r"`((?:[\w.-]+/)+[\w.*-]*|[\w-]+\.(?:py|ipynb|yaml|toml|ini|txt|json|csv|md|cfg))`")


@pytest.mark.parametrize("doc", DOCS)
def test_every_make_target_named_exists(doc):
    named = set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", DOCS[doc])) - {"sure", "it", "the", "a", "room"}
    assert named and not named - TARGETS, f"{doc} names make targets the Makefile lacks: {sorted(named - TARGETS)}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_named_exists(doc):
    named = {m for m in PATH.findall(DOCS[doc]) if not m.startswith(OUTPUTS) and "/" in m.rstrip("/")
             and "*" not in m and not re.search(r"[A-Z]{4}|\.local$", m)}  # no glob, no placeholder, no user's own file
    missing = sorted(p for p in named if not {p.rstrip("/"), f"{p}.ipynb", f"docs/{p}"} & IN_CLONE)
    assert named and not missing, f"{doc} names files the repository lacks: {missing}"


def test_every_command_named_is_installed():
    scripts = set(re.findall(r"(census-[a-z-]+)=", (ROOT / "settings.ini").read_text()))
    named = set(re.findall(r"`(census-(?!income|mlp)[a-z-]+)", " ".join(DOCS.values())))
    assert named == scripts, f"named, not installed: {sorted(named - scripts)}; installed, never named: {sorted(scripts - named)}"
