"""Answers that do not depend on the BLAS kernel, the thread count or the batch (the guarantee of `predict.forward`).

OpenBLAS picks its kernels by CPU, and `OPENBLAS_CORETYPE` forces one when the process starts; each kernel sums a
matrix product in its own order. Every kernel this CPU can run scores the same rows here, each in a process of its
own (threadpoolctl says which kernel really ran: some the CPU lacks fall back to another; others, such as SkylakeX on
a CPU without AVX-512, end the process with SIGILL, which makes that kernel "not runnable here"), alone, in small requests
and in blocks, with one and two BLAS threads. Every probability must agree within `TOLERANCE` and every label must
agree unless its probability lies that close to the threshold: what the design guarantees, and no more. How many
differ at all is printed (measured, not asserted).
"""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from census_income.network import TOLERANCE
from testkit import ROOT, tool_env

KERNELS = ["Prescott", "Nehalem", "Sandybridge", "Haswell", "SkylakeX", "Zen"]

PROBE = r"""
import json, sys
import numpy as np
from threadpoolctl import threadpool_limits
from census_income.network import BLOCK_ROWS, FEW_ROWS
from census_income.schema import CATEGORICAL, CATEGORIES, CONTINUOUS
from census_income.toy import toy_encoder, toy_network
from tests.conftest import openblas_kernel

threads = int(sys.argv[2])
enc = toy_encoder()
# weights of a trained model's size (gain), so that probabilities are not all 0 or 1
net = toy_network(enc.n_onehot, members=3, n_frequencies=8, d_embedding=8, hidden=128, gain=2.5, seed=1)
rng = np.random.default_rng(0)
n = 2 * BLOCK_ROWS + 37
X = np.zeros((n, enc.n_features), np.float32)
start = 0
for c in CATEGORICAL:
    X[np.arange(n), start + rng.integers(0, len(CATEGORIES[c]), n)] = 1
    start += len(CATEGORIES[c])
X[:, enc.n_onehot:] = rng.normal(size=(n, len(CONTINUOUS)))
X[-16:] = X[5]  # the same record at other places of the last block
with threadpool_limits(threads):
    runs = {"batch": net.forward(X),
            "alone": np.concatenate([net.forward(X[i:i + 1]) for i in range(0, n, 7)]),
            "requests": np.concatenate([net.forward(X[i:i + FEW_ROWS]) for i in range(0, n, FEW_ROWS)])}
json.dump({"kernel": openblas_kernel(), "threads": threads, **{k: v.tolist() for k, v in runs.items()}},
          sys.stdout)
"""


def score_under(kernel: str, threads: int, probe: str = PROBE) -> dict | None:
    "The probe's scores under a forced kernel; None, said in a line, when the kernel kills the process (SIGILL)."
    env = tool_env(OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", probe, kernel, str(threads)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == -signal.SIGILL:
        print(f"\nOPENBLAS_CORETYPE={kernel}: not runnable here (the process died of SIGILL: this CPU lacks its instructions)")
        return None
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    return out | {k: np.array(out[k], np.float32) for k in ("batch", "alone", "requests")}


@pytest.fixture(scope="module")
def scored() -> list[dict]:
    return [s for k in KERNELS for t in (1, 2) if (s := score_under(k, t)) is not None]


def test_a_kernel_that_kills_its_process_with_sigill_is_not_runnable_here(capsys):
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"  # what SkylakeX does on a CPU without AVX-512
    assert score_under("SkylakeX", 1, probe=suicide) is None
    assert "OPENBLAS_CORETYPE=SkylakeX: not runnable here" in capsys.readouterr().out
    with pytest.raises(AssertionError):  # any other death is still a failure
        score_under("Haswell", 1, probe="import sys; sys.exit(3)")


@pytest.mark.integration
def test_every_kernel_scores_within_the_tolerance(scored):
    ran = sorted({s["kernel"] for s in scored})
    assert len(ran) >= 2, f"only {ran} ran: the check needs two kernels"
    ref = scored[0]["batch"]
    n = len(ref)
    worst, differ = 0.0, 0
    for s in scored:
        views = {"batch": s["batch"], "alone": s["alone"], "requests": s["requests"][:n]}
        rows = {"batch": np.arange(n), "alone": np.arange(0, n, 7), "requests": np.arange(n)}
        for name, p in views.items():
            gap = np.abs(p - ref[rows[name]])
            worst = max(worst, float(gap.max()))
            differ += int((gap > 0).sum())
            assert gap.max() <= TOLERANCE, f"{s['kernel']}, {s['threads']} threads, {name}: |Δp| = {gap.max():.3g}"
    same_record = scored[0]["batch"][-16:]
    assert np.abs(same_record - ref[5]).max() <= TOLERANCE
    assert 0.01 < np.median(ref) < 0.99 and ref.std() > 0.05, "the probe's network must not saturate"
    print(f"\nkernels that ran: {', '.join(ran)} (asked: {', '.join(KERNELS)}); 1 and 2 threads; "
          f"{len(scored)} processes x {3 * n} scorings: {differ} differ from the first at all, largest |Δp| {worst:.3g}")


@pytest.mark.integration
def test_labels_agree_unless_the_probability_is_that_close_to_the_threshold(scored):
    threshold = float(np.median(scored[0]["batch"]))  # a threshold among the probabilities, where flips could happen
    ref = scored[0]["batch"] >= threshold
    near = np.abs(scored[0]["batch"] - threshold) <= TOLERANCE
    for s in scored:
        flipped = (s["batch"] >= threshold) != ref
        assert not (flipped & ~near).any(), f"{s['kernel']}: a label flipped away from the threshold"
