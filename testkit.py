"""What the tests (tests/) and the benchmarks (benchmarks/) share, in one home outside both: the repo's paths, running
a command, a scratch copy of the repo, a free port, the Procfile's uvicorn flags, the slice metrics as fairlearn
computes them, and NannyML's CBPE in its own venv.

Not part of the package (setup.py packages census_income only; .slugignore keeps it out of the dyno). Importing it
does no work: the standard library only, every other library imported by the function that needs it. The tests
import it from the repo root, which pytest puts on sys.path (tests/ is a package); a benchmark puts the repo root
on sys.path itself.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
NANNYML_PY = ROOT / ".venv-nannyml" / "bin" / "python"  # NannyML in its own venv (`make nannyml`)


def tool_env(**extra: str) -> dict:
    "The environment for the project's command-line tools: the venv first on PATH."
    env = os.environ.copy()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 900, status: int = 0, **env: str) -> subprocess.CompletedProcess:
    "Run a command that must end with `status` (0: success); otherwise show its output in the assertion message."
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == status, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def copy_repo(dest: Path) -> Path:
    "Copy the files git knows or would add (what a clone has, plus uncommitted work) to dest, as a new git repo."
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    return dest


def set_params(repo: Path, **sections: dict) -> None:
    "Overwrite values in repo/params.yaml, e.g. set_params(repo, tune={'enabled': False})."
    import yaml

    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def paths_elsewhere(paths, folder: Path, keep: tuple[str, ...] = ()):
    "A stage's `Paths` (`census_income.config.load_params`) with every output but `keep` moved to folder/FIELD/its name."
    from census_income.places import INPUTS

    assert set(keep) <= set(type(paths).model_fields), f"not a path of params.yaml: {set(keep) - set(type(paths).model_fields)}"
    return paths.model_copy(update={k: str(Path(folder) / k / Path(v).name) for k, v in paths.model_dump().items()
                                    if k not in (*INPUTS, *keep)})


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_flags(env: dict | None = None) -> list[str]:
    "The flags the Procfile's web line gives uvicorn, but for --host and --port; `${VAR:-default}` read from `env`."
    env = os.environ if env is None else env
    web = next(ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    web = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], web)  # as the shell expands it
    words = shlex.split(web.split("exec uvicorn census_income.api:app", 1)[1])
    flags, skip = [], False
    for word in words:
        if skip or word in ("--host", "--port"):
            skip = not skip
            continue
        flags.append(word)
    return flags


def fairlearn_metrics() -> dict:
    "The slice metrics as fairlearn and scikit-learn compute them: `MetricFrame(metrics=fairlearn_metrics(), ...)`."
    import numpy as np
    from fairlearn.metrics import count, selection_rate
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    def fpr(y_true, y_pred):
        return 1 - recall_score(y_true, y_pred, pos_label=0, zero_division=np.nan)

    def fnr(y_true, y_pred):
        return 1 - recall_score(y_true, y_pred, zero_division=np.nan)

    return {"n": count, "share_positive": lambda t, _: float(np.mean(t)),
            "precision": lambda t, p: precision_score(t, p, zero_division=np.nan),
            "recall": lambda t, p: recall_score(t, p, zero_division=np.nan),
            "f1": lambda t, p: f1_score(t, p, zero_division=np.nan),
            "accuracy": accuracy_score, "fpr": fpr, "fnr": fnr, "selection_rate": selection_rate}


def nannyml_cbpe(model, reference, analysis, folder: Path) -> dict:
    "NannyML's estimates (as given, and after isotonic recalibration) of `analysis`, fitted on `reference`."
    import json

    import pandas as pd
    import pytest

    from census_income.metrics import decide
    from census_income.schema import LABEL

    if not NANNYML_PY.is_file():
        pytest.fail(f"{NANNYML_PY} is missing: run `make nannyml` (`make test` does)")
    for name, df in (("reference", reference), ("analysis", analysis)):
        p = model.predict_proba(df)
        frame = pd.DataFrame({"p": p, "pred": decide(p, model.threshold).astype(int)})
        if name == "reference":
            frame["y"] = model.encoder.encode_label(df[LABEL])
        frame.to_csv(folder / f"{name}.csv", index=False)
    proc = subprocess.run([str(NANNYML_PY), str(ROOT / "tests" / "nannyml" / "run_cbpe.py"), str(folder / "reference.csv"),
                           str(folder / "analysis.csv")], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"NML_DISABLE_USAGE_LOGGING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
