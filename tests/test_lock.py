"""dvc.lock is in step with the code: what git holds (notebooks, modules, params) matches the hashes in the lock.

`.ci/run` runs this before `make pipeline` (which would otherwise bring a stale lock up to date and hide it).
It also holds the deps of dvc.yaml to the imports: every stage depends on every census_income module its
notebook imports, directly or through other modules.
"""

import ast
import json
import subprocess

import yaml

from testkit import ROOT, run


def git_tracked() -> set[str]:
    return set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())


def test_committed_lock_matches_the_code_and_params():
    status = json.loads(run(["dvc", "status", "--json"], ROOT).stdout or "{}")
    tracked, stale = git_tracked(), []
    for stage, changes in status.items():
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                stale.append(f"{stage}: {change}")
            elif "changed params" in change:
                stale.append(f"{stage}: changed params {change['changed params']}")
            elif "changed deps" in change:
                stale += [f"{stage}: {path} {how}" for path, how in change["changed deps"].items() if path in tracked]
    assert not stale, "dvc.lock is behind the code; run `dvc repro` and commit dvc.lock:\n" + "\n".join(stale)


def imports(source: str) -> set[str]:
    "The census_income modules a piece of code imports (absolute or relative), at any depth of the code."
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("census_income."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("census_income.")}
    return found


def closure(modules: set[str]) -> set[str]:
    "The modules and everything they import, transitively."
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        path = ROOT / "census_income" / f"{module}.py"
        if module not in seen and path.is_file():
            seen.add(module)
            todo += imports(path.read_text())
    return seen


def notebook_modules(notebook) -> set[str]:
    "Its own module (default_exp) and every census_income module its code cells import."
    cells = [("".join(c["source"])) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    code = "\n".join(line for cell in cells for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))
    own = {line.split()[-1] for cell in cells for line in cell.splitlines() if line.startswith("#| default_exp")}
    return own | imports(code)


def test_every_stage_depends_on_every_module_it_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        notebooks = [d for d in stage["deps"] if d.startswith("nbs/") and d.endswith(".ipynb")]
        own = ROOT / notebooks[0]  # the stage's notebook comes first
        needed = {f"census_income/{m}.py" for m in closure(notebook_modules(own) | {"pipeline"})}
        declared = {d for d in stage["deps"] if d.startswith("census_income/")}
        assert needed <= declared, f"stage {name} does not depend on {sorted(needed - declared)}"
        assert declared <= needed, f"stage {name} depends on modules it never imports: {sorted(declared - needed)}"
