"""What a benchmark ran on: the CPU, and the BLAS library with the kernel and thread count it really used.

numpy's OpenBLAS picks its kernels by CPU, and `OPENBLAS_CORETYPE` forces one (a kernel the CPU lacks falls back to
another): the same code measured 38,000 records/s under `Haswell` and 57,000 under `SkylakeX` on one core. Every
benchmark prints `blas_line()` beside its numbers, read from threadpoolctl at the moment of printing.
"""

import os
import platform


def cpu_name() -> str:
    "The CPU's model name (from /proc/cpuinfo where there is one)."
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_line() -> str:
    "One line: CPU and cores, then each BLAS library numpy loaded with its version, kernel and threads."
    import numpy as np
    from threadpoolctl import threadpool_info

    libs = [f"{i['internal_api']} {i['version']} (kernel {i.get('architecture') or 'n/a'}, {i['num_threads']} threads)"
            for i in threadpool_info() if i["user_api"] == "blas"]
    forced = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS") if k in os.environ}
    return (f"machine: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__}; BLAS: "
            f"{'; '.join(libs) or 'none loaded'}; {' '.join(f'{k}={v}' for k, v in forced.items()) or 'no BLAS variables set'}")


if __name__ == "__main__":
    print(blas_line())
