"""The dyno's requirements cover what the serving path imports, found from the code (issue: the dyno cannot start).

Heroku installs `requirements.txt` (→ `requirements-serve.txt`) and runs the Procfile. Every module the Procfile
starts is walked here, with every `census_income` module it imports, transitively, and the third-party top-level
names they import are mapped to distributions through `importlib.metadata.packages_distributions()`. Each must be
named in `requirements-serve.txt`, not merely arrive as another package's dependency: a direct import relies on its
own requirement. The slow tier proves the same in a real venv of `requirements.txt` alone
(`tests/pipeline/test_dyno.py::test_serving_requirements_alone_run_the_dyno`).
"""

import ast
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from testkit import ROOT

PACKAGE = "census_income"
# Commands, not imports: the Procfile execs uvicorn, and census_income.deploy runs `dvc pull` as a subprocess.
# Both are checked against the Procfile and deploy's code below, so this list cannot go stale silently.
COMMANDS = {"uvicorn": "uvicorn", "dvc": "dvc"}


def requirement_names(path: Path) -> set[str]:
    "The distributions a requirements file names (extras, markers and versions dropped; `-r` followed)."
    names = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            names |= requirement_names(path.parent / line.split(maxsplit=1)[1])
        elif not line.startswith("-"):
            names.add(canonicalize_name(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0)))
    return names


def procfile_modules(procfile: Path) -> set[str]:
    "The census_income modules the Procfile's web process starts (`python -m X` and `X:app`)."
    web = next(ln for ln in procfile.read_text().splitlines() if ln.startswith("web:"))
    found = set(re.findall(r"-m\s+(" + PACKAGE + r"[\w.]*)", web)) | set(re.findall(r"(" + PACKAGE + r"[\w.]*):\w+", web))
    assert found, f"no {PACKAGE} module found in the Procfile's web line: {web}"
    return found


def module_file(package_dir: Path, module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    return package_dir / rel / "__init__.py" if (package_dir / rel).is_dir() else package_dir / rel.with_suffix(".py")


def imports_of(path: Path, module: str) -> tuple[set[str], set[str]]:
    "(package modules, third-party top-level names) that a module imports anywhere in its code."
    own, other = set(), set()
    base = module.split(".")
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # relative imports resolve against this module's package
            stem = base[: len(base) - node.level] if node.level else []
            package = ".".join(stem + ([node.module] if node.module else []))
            # `from X import y` may name a module X.y or an attribute of X: take both (missing files are skipped)
            targets = [package] + [f"{package}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in targets:
            top = name.split(".")[0]
            if top == PACKAGE:
                own.add(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                other.add(top)
    return own, other


def serving_imports(package_dir: Path, roots: set[str]) -> tuple[set[str], dict[str, set[str]]]:
    "Walk the package's import graph from roots: (modules reached, third-party name → modules importing it)."
    seen, todo, third = set(), list(roots), {}
    while todo:
        module = todo.pop()
        path = module_file(package_dir, module)
        if module in seen or not path.is_file():
            continue
        seen.add(module)
        own, other = imports_of(path, module)
        todo.extend(own - seen)
        for name in other:
            third.setdefault(name, set()).add(module)
    return seen, third


def missing_requirements(package_dir: Path, requirements: Path, procfile: Path) -> dict[str, str]:
    "Distribution → why it is needed, for each one the serving path needs but `requirements` does not name."
    _, third = serving_imports(package_dir, procfile_modules(procfile))
    dists = packages_distributions()
    named = requirement_names(requirements)
    missing = {}
    for name, where in sorted(third.items()):
        owners = dists.get(name)
        if not owners:
            missing[name] = f"imported by {', '.join(sorted(where))} but installed by no distribution here"
            continue
        if not named & {canonicalize_name(d) for d in owners}:
            missing[canonicalize_name(owners[0])] = f"`import {name}` in {', '.join(sorted(where))}"
    for dist, why in COMMANDS.items():
        if canonicalize_name(dist) not in named:
            missing[dist] = f"the command `{why}` run by the Procfile or the start step"
    return missing


def test_the_procfile_and_deploy_use_the_commands_listed():
    web = next(ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    assert "exec uvicorn " in web
    deploy = (ROOT / PACKAGE / "deploy.py").read_text()
    assert '("dvc",)' in deploy and '[*dvc, "pull"' in deploy


def test_the_walk_reaches_the_api_and_its_parts():
    "The walk itself works: it reaches the modules the API is known to be built from."
    seen, third = serving_imports(ROOT / PACKAGE, procfile_modules(ROOT / "Procfile"))
    assert {f"{PACKAGE}.api", f"{PACKAGE}.deploy", f"{PACKAGE}.predict", f"{PACKAGE}.validation"} <= seen
    assert {"fastapi", "numpy", "pydantic"} <= set(third)
    assert f"{PACKAGE}.train" not in seen and "torch" not in third  # training stays off the dyno


def test_serving_requirements_name_every_import_of_the_serving_path():
    missing = missing_requirements(ROOT / PACKAGE, ROOT / "requirements.txt", ROOT / "Procfile")
    assert not missing, "requirements-serve.txt lacks what the dyno needs:\n" + "\n".join(
        f"  {dist}: {why}" for dist, why in missing.items())


def test_every_serving_requirement_is_pinned():
    "Each name in requirements-serve.txt has an exact pin in constraints.txt (what the dyno installs is known)."
    pins = {canonicalize_name(ln.split("==")[0]) for ln in (ROOT / "constraints.txt").read_text().splitlines() if "==" in ln}
    assert requirement_names(ROOT / "requirements.txt") - pins == set()


@pytest.mark.parametrize("dropped", ["prometheus-client", "safetensors"])
def test_a_dropped_requirement_is_named(tmp_path, dropped):
    "Fault injection: the serving requirements without one of them (prometheus-client is what broke the dyno)."
    text = (ROOT / "requirements-serve.txt").read_text()
    kept = [ln for ln in text.splitlines() if canonicalize_name(ln.split("[")[0].strip()) != dropped]
    assert len(kept) == len(text.splitlines()) - 1, f"{dropped} is not a line of requirements-serve.txt"
    (tmp_path / "requirements.txt").write_text("\n".join(kept).replace("-c constraints.txt", "") + "\n")
    missing = missing_requirements(ROOT / PACKAGE, tmp_path / "requirements.txt", ROOT / "Procfile")
    assert list(missing) == [dropped], missing


def test_a_new_import_without_its_requirement_is_named(tmp_path):
    "Fault injection: a serving module that gains an import of a package no requirement names."
    package = Path(shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")))
    serving = package / "serving" / "body.py"  # a module of the sub-package, reached only through the api
    serving.write_text(serving.read_text() + "\n\ndef _later():\n    import pandas  # noqa\n")
    missing = missing_requirements(package, ROOT / "requirements.txt", ROOT / "Procfile")
    assert set(missing) == {"pandas"}, missing
    assert "census_income.serving.body" in missing["pandas"]


def test_a_server_that_dies_at_start_shows_its_own_error(tmp_path):
    "When a process under test exits before it listens, the failure quotes the last lines it printed."
    from testkit import free_port
    from tests.pipeline.conftest import wait_for_port

    script = "import sys\nfor i in range(100): print('noise', i)\nimport no_such_module_for_the_dyno\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    with pytest.raises(AssertionError) as failure:
        wait_for_port(free_port(), 30, proc)
    message = str(failure.value)
    assert "exited (1)" in message
    assert "ModuleNotFoundError: No module named 'no_such_module_for_the_dyno'" in message
    assert "noise 99" in message and "noise 0\n" not in message  # the tail, not everything
