"""Pipeline outputs byte for byte the same under two BLAS kernels (issue: same bytes on any machine).

Every stage runs at its quick settings (params.yaml's `quick` sample) in a process of its own under each kernel,
forced with `OPENBLAS_CORETYPE` and confirmed with threadpoolctl, and the md5 of every file the stages write is
compared. Numbers go to files at `census_income.metrics.DIGITS` significant digits and the network sums in float64
(`census_income.predict`), which is what makes this hold; the Optuna study's SQLite file is the one output left out
(it records wall-clock times, and DVC does not track it either).
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import ROOT, tool_env

# Haswell runs on any x86-64 CPU with AVX2; where it is the CPU's own kernel, Sandybridge is the other one
RUN = r"""
import json, sys
from pathlib import Path
from census_income.pipeline import STAGES, call_stage, load_params
from tests.conftest import openblas_kernel
params = load_params(Path(sys.argv[1]) / "params.yaml", quick=True, workdir=Path(sys.argv[2]))
for stage in STAGES:
    call_stage(stage, params)
print(openblas_kernel())
"""
SKIPPED = {"optuna.db"}


def default_kernel() -> str:
    "The kernel a fresh process of this machine runs (this one's may differ: nothing here sets OPENBLAS_CORETYPE)."
    return subprocess.run([sys.executable, "-c", "import numpy; from tests.conftest import openblas_kernel; "
                           "print(openblas_kernel())"], cwd=ROOT, env=tool_env(), capture_output=True, text=True,
                          check=True).stdout.strip()


def run_stages(workdir: Path, kernel: str | None) -> tuple[str, dict[str, str]]:
    env = tool_env(**({"OPENBLAS_CORETYPE": kernel} if kernel else {}))  # None: the kernel this machine runs
    proc = subprocess.run([sys.executable, "-c", RUN, str(ROOT), str(workdir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ran = proc.stdout.strip().splitlines()[-1]
    files = {str(p.relative_to(workdir)): hashlib.md5(p.read_bytes()).hexdigest()
             for p in sorted(workdir.rglob("*")) if p.is_file() and p.name not in SKIPPED}
    return ran, files


@pytest.mark.integration
def test_every_quick_output_is_the_same_bytes_under_two_kernels(tmp_path):
    own = default_kernel()
    other = "Sandybridge" if own == "Haswell" else "Haswell"
    ran_a, a = run_stages(tmp_path / "a", None)
    ran_b, b = run_stages(tmp_path / "b", other)
    assert ran_a == own and ran_b == other, (ran_a, ran_b)
    assert len(a) >= 15 and {"model/weights.safetensors", "metrics/test.json", "metrics/slices.json"} <= set(a), sorted(a)
    assert sorted(a) == sorted(b)
    differ = sorted(name for name in a if a[name] != b[name])
    print(f"\n{len(a)} outputs under {ran_a} and {ran_b}: {len(differ)} differ {differ}")
    assert not differ, f"these outputs differ between the {ran_a} and {ran_b} kernels: {differ}"
