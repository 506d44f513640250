"""Jupyter kernels for the notebook tests, forked from a process that has already imported what kernels import.

nbval starts a fresh kernel for each notebook: a new Python that imports ipykernel, IPython and zmq (about 0.3 CPU-s),
then the notebook's own imports (numpy, pandas, pydantic, torch in the training chapters: up to 2 CPU-s more). With
51 notebooks on 2 cores that start-up was a third of `make test-fast`. Here one *template* process (pytest-xdist's
controller starts one for all its workers) imports all of that once; each kernel is a `fork` of it that then runs
`ipykernel`'s own start (`launch_new_instance`, as `python -m ipykernel_launcher` does), in the notebook's folder,
with the environment jupyter_client gives it, `sys.argv` and `sys.orig_argv` as that command's, the warning filters
of a Python that has imported nothing, and fresh seeds for `random` and numpy's global generator. Every notebook
still gets a kernel of its own that nothing has run code in; only the imports are shared.

The process jupyter_client starts and watches is a small *launcher* (`python -I -S kernel_forks.py launch SOCKET -f
CONNECTION_FILE`). It hands its request and its stdin, stdout and stderr to the template over a Unix socket and stands
for the kernel: it forwards every signal jupyter_client sends to the kernel's process group (SIGINT interrupts), exits
with the kernel's status, and exits when its own parent is gone. The kernel leads a process group; when its launcher
is gone (a `shutdown_kernel(now=True)` kills it) the kernel sees the socket close and kills that group, itself and
whatever its notebook started, as jupyter_client's `killpg` does for a kernel it starts itself.

The launcher becomes an ordinary kernel (`exec` of `python -m ipykernel_launcher`) when there is no template, and
when the template declines: for a kernel whose environment differs from the template's in a variable read as Python
or a numerical library starts (`PYTHON*`, the BLAS, OpenMP, torch and numpy CPU variables), and once a project module
the template imported has been edited. Left shared: the string-hash seed (one per template, not per kernel; set
`PYTHONHASHSEED` to get an ordinary kernel) and the template's frozen objects (`gc.get_freeze_count()`).
`KERNEL_FORKS=0` turns forking off, `KERNEL_SPARES=0` the kernel started ahead (`Spares`); `KERNEL_FORKS_LOG=FILE`
appends why each kernel was or was not forked.
"""

import json
import os
import signal
import socket
import sys

# What the template imports before its first fork: what ipykernel needs and what the notebooks import most (not
# matplotlib.pyplot, whose backend a kernel chooses as it starts). A module that fails to import is skipped.
PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "IPython.core.interactiveshell", "debugpy", "numpy", "pandas",
    "pyarrow", "pyarrow.compute", "pyarrow.csv", "pydantic", "yaml", "fastcore.test", "scipy.special", "sklearn.base",
    "sklearn.metrics", "sklearn.model_selection", "sklearn.preprocessing", "torch", "safetensors.numpy", "fastapi",
    "fastapi.testclient", "prometheus_client", "census_income.schema", "census_income.validation",
    "census_income.config", "census_income.features", "census_income.fileio", "census_income.network",
    "census_income.predict", "census_income.toy", "census_income.clean", "census_income.pipeline",
)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
KERNEL = [sys.executable, "-m", "ipykernel_launcher"]  # what the launcher becomes without a template


def _recv_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("the other side closed the socket")
        data += chunk
    return data


# ---- the launcher: stdlib only, started with -I -S so that it costs a few milliseconds ----
def launch(sock_path: str, argv: list[str]) -> None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(sock_path)
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        pid = int(_recv_line(conn))  # 0: the template cannot stand for this kernel (another environment)
        if pid <= 0:
            raise ValueError("not forked")
    except (OSError, ValueError):  # no template (or it went away, or it declined): the kernel jupyter_client asked for
        conn.close()
        os.execv(KERNEL[0], [*KERNEL, *argv])
    parent = os.getppid()
    for signum in FORWARDED:  # to the kernel's process group, as jupyter_client signals a kernel's own
        signal.signal(signum, lambda s, _frame: os.killpg(pid, s))
    conn.settimeout(1.0)
    status = 1
    while True:
        try:
            status = int(_recv_line(conn))
            break
        except TimeoutError:
            if os.getppid() != parent:  # its manager is gone: so is the kernel (it sees this socket close)
                break
        except (OSError, ValueError):
            break
    sys.exit(status)


# ---- the template ----
# What a kernel would have that a fork of the template does not share: an environment variable of Python's own start
# or of the CPU kernels (numpy and torch read them as they are imported) other than the template's. Such a kernel is
# started as an ordinary one.
_STARTUP_VARIABLES = ("PYTHON", "KMP_")  # Python's own, Intel OpenMP's; and `census_income.cpu.PREFIXES`, the CPU kernels'


def _startup(env: dict) -> dict:
    "The variables a fork cannot honour (PYTHONPATH aside: `_search_path` honours it when it changes no import)."
    from census_income.cpu import PREFIXES  # the template has the project on its path; the launcher never gets here

    return {k: v for k, v in env.items() if k.startswith((*_STARTUP_VARIABLES, *PREFIXES)) and k != "PYTHONPATH"}


def _differing(env: dict, startup: dict, added: dict) -> dict:
    "The start-up variables in which a kernel's environment differs from the template's (those its imports set aside)."
    got = _startup(env)
    return {k: [startup.get(k), got.get(k)] for k in sorted({*got, *startup})
            if got.get(k) != startup.get(k) and not (k in added and got.get(k) in (None, added[k]))}


def _entries(pythonpath: str, cwd: str) -> list[str]:
    return [os.path.join(cwd, p) for p in pythonpath.split(os.pathsep) if p]


def _search_path(request: dict, own: list[str], base: list[str], imported: dict[str, str]) -> list[str] | None:
    """The kernel's `sys.path` as `python -m ipykernel_launcher` would start it (its PYTHONPATH, then the rest of the
    template's path), or None when a module the template imported would be found elsewhere: in a folder the kernel's
    PYTHONPATH adds (another copy of a package), or one it leaves out. pytest-xdist's workers add the repository,
    which holds the very files the template imported."""
    from importlib.machinery import PathFinder

    given = _entries(request["env"].get("PYTHONPATH", ""), request["cwd"])
    extra = [p for p in given if p not in own]
    if any(p not in given for p in own):
        return None
    for name, origin in imported.items():
        try:
            spec = PathFinder.find_spec(name, extra) if extra else None
        except (ImportError, ValueError):
            return None
        if spec is not None and spec.origin != origin:
            return None
    return [*given, *base]


def _child(conn: socket.socket, fds: list[int], request: dict, added: dict, filters: list, path: list[str]) -> None:
    """In the forked process: become the kernel jupyter_client asked for (its folder, environment, argv; fresh random
    seeds; the warning filters of a Python that has imported nothing), and take its process group with it when its
    launcher is gone."""
    import atexit
    import random
    import threading
    import traceback
    import warnings

    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({**added, **request["env"]})  # what the preloaded modules set (torch: KMP_*), then the kernel's
        import ipykernel_launcher

        sys.path[:] = path  # ipykernel puts the notebook's folder first as it starts, as in any kernel
        sys.argv = [ipykernel_launcher.__file__, *request["argv"]]
        sys.orig_argv = [sys.executable, "-m", "ipykernel_launcher", *request["argv"]]
        warnings.filters[:] = filters
        warnings._filters_mutated()
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # the legacy global generator: each kernel its own, as each process's

        def watch():  # the launcher never writes after its request: the first read returns when it exits
            try:
                conn.recv(1)
            finally:
                os.killpg(0, signal.SIGKILL)  # the kernel and whatever its notebook started, as killpg does

        threading.Thread(target=watch, daemon=True, name="launcher-watch").start()
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _project_files() -> dict[str, int]:
    "The project's modules the template imported, with their files' modification times."
    out = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "census_income" and getattr(module, "__file__", None):
            try:
                out[module.__file__] = os.stat(module.__file__).st_mtime_ns
            except OSError:
                pass
    return out


def serve(sock_path: str, preload=PRELOAD) -> None:
    """Listen first (launchers queue), import `preload`, then fork one kernel per launcher until the parent goes. A
    kernel whose environment differs from the template's where it matters (`_STARTUP_VARIABLES`, `census_income.cpu.PREFIXES`), or started after
    a project module the template imported was edited, is declined: its launcher starts an ordinary kernel."""
    import gc
    import importlib
    import select
    import warnings

    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # the kernels' sys.path is ipykernel_launcher's, not this script's folder
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(64)
    filters, environ = list(warnings.filters), dict(os.environ)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a kernel imports what it needs itself
            pass
    added = {k: v for k, v in os.environ.items() if k not in environ}
    startup, project, log_to = _startup(environ), _project_files(), os.environ.get("KERNEL_FORKS_LOG")
    own = _entries(environ.get("PYTHONPATH", ""), os.getcwd())
    base = [p for p in sys.path if p not in own]  # the path without this process's PYTHONPATH
    imported = {name: module.__spec__.origin for name, module in list(sys.modules.items())  # top-level, from files
                if "." not in name and getattr(module, "__spec__", None) is not None
                and module.__spec__.origin is not None and os.path.isabs(module.__spec__.origin)}
    gc.collect()
    gc.freeze()  # the children share these pages rather than copying them at their first collection
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    kernels: dict[int, socket.socket] = {}
    try:
        while os.getppid() == parent:
            ready, _, _ = select.select([listener, wake_r], [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 512)
            while kernels:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = kernels.pop(pid, None)
                if conn is not None:
                    try:
                        conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
                    except OSError:
                        pass
                    conn.close()
            if listener in ready:
                conn, _ = listener.accept()
                fds: list[int] = []
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
                    while not msg.endswith(b"\n"):
                        msg += _recv_line(conn)
                    request = json.loads(msg)
                    path = _search_path(request, own, base, imported)
                    differ = _differing(request["env"], startup, added)
                    same_project = _project_files() == project
                    if log_to:  # KERNEL_FORKS_LOG: why a kernel was not forked
                        with open(log_to, "a") as log:
                            log.write(f"{json.dumps({'differ': differ, 'project edited': not same_project, 'path': path is not None})}\n")
                    if differ or not same_project or path is None:
                        conn.sendall(b"0\n")  # declined: an ordinary kernel
                        raise ValueError("declined")
                except (OSError, ValueError, KeyError, TypeError, ConnectionError):
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    _child(conn, fds, request, added, filters, path)
                for fd in fds:
                    os.close(fd)
                kernels[pid] = conn  # reaped whatever happens to its launcher
                try:
                    conn.sendall(b"%d\n" % pid)
                except OSError:  # the launcher went away before it heard: its kernel sees the socket close and exits
                    pass
    finally:
        for pid in kernels:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# ---- the pytest side (nbs/conftest.py) ----
class Template:
    "A template process for this pytest process's kernels, and the kernel command that uses it."

    def __init__(self, preload=PRELOAD):
        import subprocess
        import tempfile
        import time

        self.dir = tempfile.mkdtemp(prefix="kernels-")
        self.sock = os.path.join(self.dir, "template.sock")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", self.sock, *preload],
                                     stdin=subprocess.DEVNULL)
        self.argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), "launch", self.sock]
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock) and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # it listens before it imports: a launcher from now on waits for it, never misses it

    def kernel_argv(self, argv: list[str]) -> list[str]:
        "`argv` of a kernelspec, through this template when it starts ipykernel in this Python; else unchanged."
        if len(argv) >= 3 and argv[1:3] == ["-m", "ipykernel_launcher"] and _same_python(argv[0]):
            return [*self.argv, *argv[3:]]
        return argv

    def close(self):
        import shutil

        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _same_python(exe: str) -> bool:
    import shutil

    path = exe if os.sep in exe else shutil.which(exe)
    try:
        return path is not None and os.path.samefile(path, sys.executable)
    except OSError:
        return False


def _environ() -> dict:
    "This process's environment as a kernel started now would inherit it (but pytest's name of the running test)."
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


class Spares:
    """One kernel started ahead for each (kernel name, folder), so that a notebook's kernel has been getting ready
    while the notebook before it ran; and kernels shut down in the background. Waiting for a kernel costs about
    0.5 s however fast it starts (jupyter_client waits 0.2 s for IOPub on its first `kernel_info`); shutting one down
    0.1 s (it polls the process). A spare is started (its environment fixed) when the kernel before it is taken."""

    def __init__(self, start):
        import threading

        self._start, self._threading = start, threading
        self._spares: dict = {}
        self._stopping: list = []

    def _spare(self, startup_timeout, kernel_name, kwargs):
        from jupyter_client.manager import KernelManager
        from nbval.kernel import NbvalKernelspecManager

        km = KernelManager(kernel_name=kernel_name, kernel_spec_manager=NbvalKernelspecManager())
        km.start_kernel(stderr=open(os.devnull, "w"), **kwargs)  # noqa: SIM115 - the kernel's, as nbval's is
        kc = km.client()
        spare = {"km": km, "kc": kc, "error": None, "environ": _environ(), "argv": list(km.kernel_spec.argv),
                 "env": dict(km.kernel_spec.env)}

        def ready():
            try:
                kc.start_channels()
                kc.wait_for_ready(timeout=startup_timeout)
            except BaseException as e:  # noqa: BLE001 - told to the taker, who starts a kernel of its own
                spare["error"] = e

        spare["thread"] = self._threading.Thread(target=ready, daemon=True, name="spare-kernel")
        spare["thread"].start()
        return spare

    def _usable(self, spare, kernel_name) -> bool:
        "The spare is ready, alive, and started as a kernel started now would be (environment, kernelspec)."
        from nbval.kernel import NbvalKernelspecManager

        spec = NbvalKernelspecManager().get_kernel_spec(kernel_name)
        return (spare["error"] is None and spare["km"].is_alive() and spare["environ"] == _environ()
                and spare["argv"] == list(spec.argv) and spare["env"] == dict(spec.env))

    def start_new_kernel(self, startup_timeout=60, kernel_name="python", **kwargs):
        "nbval's `start_new_kernel`: the spare for this name and folder when it is ready, and a new spare."
        kwargs.pop("stderr", None)
        key = (kernel_name, kwargs.get("cwd"))
        spare = self._spares.pop(key, None)
        if spare is not None:
            spare["thread"].join(startup_timeout)
            if not spare["thread"].is_alive() and self._usable(spare, kernel_name):
                self._spares[key] = self._spare(startup_timeout, kernel_name, kwargs)
                return spare["km"], spare["kc"]
            self._discard(spare)
        started = self._start(startup_timeout=startup_timeout, kernel_name=kernel_name,
                              stderr=open(os.devnull, "w"), **kwargs)  # noqa: SIM115
        self._spares[key] = self._spare(startup_timeout, kernel_name, kwargs)
        return started

    def _discard(self, spare):
        "Shut a spare down in the background; its channels are closed only once its start has given up."
        def down():
            spare["km"].shutdown_kernel(now=True)
            spare["thread"].join(60)
            spare["kc"].stop_channels()

        thread = self._threading.Thread(target=down, daemon=True, name="spare-discarded")
        thread.start()
        self._stopping.append(thread)

    def _shutdown(self, km, kc):
        kc.stop_channels()
        thread = self._threading.Thread(target=km.shutdown_kernel, kwargs={"now": True}, daemon=True)
        thread.start()
        self._stopping.append(thread)

    def stop(self, running):
        "nbval's `RunningKernel.stop`, its kernel shut down in the background."
        self._shutdown(running.km, running.kc)
        del running.km

    def close(self):
        for spare in self._spares.values():
            self._discard(spare)
        self._spares.clear()
        for thread in self._stopping:
            thread.join(30)


class Kernels:
    "What `install` did: the template (None when forks are off) and the spares."

    def __init__(self, template, spares):
        self.template, self.spares = template, spares

    def close(self):
        self.spares.close()
        if self.template is not None:
            self.template.close()


SHARED = "KERNEL_TEMPLATE"  # the socket of a template another process (pytest-xdist's controller) started for its workers


class Shared:
    "A template this process did not start (its workers share the controller's): the kernel command only."

    def __init__(self, sock: str):
        self.sock, self.argv = sock, [sys.executable, "-I", "-S", os.path.abspath(__file__), "launch", sock]

    kernel_argv = Template.kernel_argv

    def close(self):
        pass


def start_shared() -> Template | None:
    """In pytest-xdist's controller, before it starts its workers: one template for all of them (they inherit its
    socket in KERNEL_TEMPLATE), so that its imports are done once, while the workers collect."""
    if os.environ.get("KERNEL_FORKS", "1") == "0" or not hasattr(os, "fork"):
        return None
    template = Template()
    os.environ[SHARED] = f"{os.getpid()}:{template.sock}"  # for this process's children only (see `install`)
    return template


def install(env: dict[str, str] | None = None) -> Kernels:
    """Send nbval's kernels through a template (unless KERNEL_FORKS=0): the controller's when it started one, else one
    of this process's own; keep one kernel started ahead (unless KERNEL_SPARES=0); and give each kernel the variables
    in `env` besides this process's environment."""
    from nbval import kernel

    template = None
    if os.environ.get("KERNEL_FORKS", "1") != "0" and hasattr(os, "fork"):
        parent, _, sock = os.environ.get(SHARED, "").partition(":")
        # a process started by another (a pytest run inside a test) must not take its parent's parent's template
        template = Shared(sock) if parent == str(os.getppid()) else Template()
    get_spec = kernel.NbvalKernelspecManager.get_kernel_spec

    def get_kernel_spec(self, kernel_name):
        spec = get_spec(self, kernel_name)
        if template is not None:
            spec.argv = template.kernel_argv(list(spec.argv))
        spec.env = {**spec.env, **(env or {})}
        return spec

    kernel.NbvalKernelspecManager.get_kernel_spec = get_kernel_spec
    spares = Spares(kernel.start_new_kernel)
    if os.environ.get("KERNEL_SPARES", "1") != "0":
        kernel.start_new_kernel = spares.start_new_kernel
        kernel.RunningKernel.stop = lambda running: spares.stop(running)
    return Kernels(template, spares)


if __name__ == "__main__":
    if sys.argv[1] == "launch":
        launch(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
