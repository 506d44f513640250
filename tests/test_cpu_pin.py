"""The same model from any x86-64 CPU (`census_income.cpu`), checked on this one by emulation.

What emulation can show here: that the pins reach every process the stages start (a process started with none
pins itself before anything computes), that the pinned run writes what a run with each library told to take its
AVX2 path writes, and that this CPU's own kernels write other bits. What it cannot show: that a library honours
its variable the same way on a CPU without AVX-512; that needs such a CPU (CI's lock check on one says so).

The quick clean, preprocess, tune and train stages run in processes of their own, started as a user would start
them (no pin in the environment: the process pins itself, as `census-stage` and `census-tune-worker` do), and the
md5 of every file they write is compared with the same stages run the way a CPU with AVX2 and no AVX-512 runs them
of its own (`census_income.cpu.AVX2_CPU`: ATen's AVX2 kernels, MKL's and oneDNN's AVX2 paths, OpenBLAS's Haswell
kernel, numpy without its AVX-512 targets, pins off), and asked for more threads than one. How the CPU's own
kernels compare is printed: on a CPU with AVX-512 they train other bits, which is what the pins are for (run this
file with `CENSUS_CPU_PIN=off` to see the test fail as the pipeline did before them).
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from census_income.cpu import AVX2_CPU, SWITCH, THREADS, avx2_cpu_environ, cpu_facts, refusal, wider_here, without_pins
from testkit import ROOT, tool_env

RUN = r"""
import sys
from census_income.cpu import exec_pinned
exec_pinned([sys.executable, *sys.orig_argv[1:]])  # as the entry points start: pinned before anything computes
from pathlib import Path
from census_income.pipeline import call_stage, load_params
params = load_params(Path(sys.argv[1]) / "params.yaml", quick=True, workdir=Path(sys.argv[2]))
for stage in ("clean", "preprocess", "tune", "train"):
    call_stage(stage, params)
import torch
print(torch.backends.cpu.get_cpu_capability())
"""
SKIPPED = {"optuna.db"}  # wall-clock times (DVC does not track it either)


def user_env(**extra: str) -> dict:
    "A user's shell: none of the pins (this session's pytest has them), `CENSUS_CPU_PIN` kept if the caller set it."
    env = {k: v for k, v in without_pins(tool_env()).items() if k not in {*AVX2_CPU, *THREADS}}
    return env | ({SWITCH: os.environ[SWITCH]} if SWITCH in os.environ else {}) | extra


def start(workdir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, str(ROOT), str(workdir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outputs(workdir: Path, proc: subprocess.Popen) -> tuple[str, dict[str, str]]:
    "The capability torch ran with, and the md5 of every file the stages wrote."
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]
    files = {str(p.relative_to(workdir)): hashlib.md5(p.read_bytes()).hexdigest()
             for p in sorted(workdir.rglob("*")) if p.is_file() and p.name not in SKIPPED}
    return out.strip().splitlines()[-1], files


@pytest.mark.integration
def test_the_pinned_stages_write_what_an_avx2_cpu_writes_on_any_core_count(tmp_path):
    facts = cpu_facts()
    if refusal(facts) is not None:
        pytest.fail(f"{refusal(facts)}: this machine cannot run the AVX2 path the test emulates")
    wider = " ".join(wider_here(facts))
    runs = {"pinned": user_env(),
            "pinned, 2 threads asked": user_env(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2"),
            "an AVX2 CPU's own kernels": avx2_cpu_environ(user_env(), facts),
            "this CPU's own kernels": user_env(**{SWITCH: "off"})}
    results = {}
    names = list(runs)
    for pair in (names[:2], names[2:]):  # two processes at a time: the machine's two cores
        procs = {name: start(tmp_path / str(names.index(name)), runs[name]) for name in pair}
        results |= {name: outputs(tmp_path / str(names.index(name)), p) for name, p in procs.items()}
    pinned_cap, pinned = results["pinned"]
    assert len(pinned) >= 15 and {"model/weights.safetensors", "model/best_params.json", "metrics/test.json"} <= set(pinned)
    own_cap, own = results["this CPU's own kernels"]
    differ = sorted(f for f in pinned if own.get(f) != pinned[f])
    print(f"\n{len(pinned)} outputs; this CPU's own kernels ({own_cap}, numpy's {wider or 'no wider targets'}): "
          f"{len(differ)} differ from the pinned ones {differ}")
    for name in names[1:3]:
        cap, files = results[name]
        assert sorted(files) == sorted(pinned), name
        changed = sorted(f for f in pinned if files[f] != pinned[f])
        assert not changed, f"{name} ({cap}): these outputs differ from the pinned run's ({pinned_cap}): {changed}"
    assert {pinned_cap, results[names[1]][0], results[names[2]][0]} == {"AVX2"}, "torch ran off the AVX2 kernels"
