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


DOTTED = re.compile(r"(?<![\"'\w])census_income\.[a-z_]+(?:\.[A-Za-z_]\w*)*")  # not in a string literal (a logger's name)


def _prose_of_the_code() -> dict[str, str]:
    "What a reader reads about the code: the README and guide, the chapters' prose, the package's comments and docstrings."
    import json

    texts = dict(DOCS)
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts[f"nbs/{nb.name}"] = "\n".join("".join(c["source"]) for c in cells)
    for module in sorted((ROOT / "census_income").rglob("*.py")):
        if module.name != "_modidx.py":
            texts[str(module.relative_to(ROOT))] = module.read_text()
    return texts


def _resolves(dotted: str) -> bool:
    "Whether `census_income.a.b.C.d` names a module of the package, or something a module of it defines."
    import importlib

    parts = dotted.rstrip(".").split(".")
    for k in range(len(parts), 1, -1):  # the longest prefix that is a module, then attributes
        try:
            found = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for name in parts[k:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_name_of_the_package_the_prose_names_exists():
    "A module split or a function renamed leaves no prose naming the old home (`census_income.drift.tally` once did)."
    named = {(where, m) for where, text in _prose_of_the_code().items() for m in DOTTED.findall(text)}
    wrong = sorted(f"{where}: {m}" for where, m in named if not _resolves(m))
    assert len(named) > 50 and not wrong, f"{len(wrong)} names the package lacks: {wrong[:20]}"
