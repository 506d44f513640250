"""Jupyter kernels for the notebook tests, forked from a process that has already imported what kernels import.

nbval starts a fresh kernel for each notebook: a new Python that imports ipykernel, IPython and zmq (about 0.3 CPU-s),
then the notebook's own imports (numpy, pandas, pydantic, torch in the training chapters: up to 2 CPU-s more). With
51 notebooks on 2 cores that start-up was a third of `make test-fast`. Here one *template* process per pytest worker
imports all of that once; each kernel is a `fork` of it that then runs `ipykernel`'s own start (`launch_new_instance`,
as `python -m ipykernel_launcher` does), in the notebook's folder, with the environment jupyter_client gives it.
Every notebook still gets a kernel of its own that nothing has run code in; only the imports are shared.

The process jupyter_client starts and watches is a small *launcher* (`python -I -S kernel_forks.py launch SOCKET -f
CONNECTION_FILE`). It hands its request and its stdin, stdout and stderr to the template over a Unix socket and stands
for the kernel: it forwards every signal jupyter_client sends (SIGINT interrupts), exits with the kernel's status, and
if it is killed (a `shutdown_kernel(now=True)`) the kernel sees the socket close and exits at once. When the template is
not running, the launcher becomes an ordinary kernel (`exec` of `python -m ipykernel_launcher`): nothing depends on it.
`KERNEL_FORKS=0` turns it off.
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
        pid = int(_recv_line(conn))
    except (OSError, ValueError):  # no template (or it went away): be the kernel jupyter_client asked for
        conn.close()
        os.execv(KERNEL[0], [*KERNEL, *argv])
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _frame: os.kill(pid, s))
    try:
        status = int(_recv_line(conn))
    except (OSError, ValueError):
        status = 1
    sys.exit(status)


# ---- the template ----
def _child(conn: socket.socket, fds: list[int], request: dict) -> None:
    "In the forked process: become the kernel jupyter_client asked for, and exit when its launcher is gone."
    import atexit
    import threading
    import traceback

    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import ipykernel_launcher

        sys.argv = [ipykernel_launcher.__file__, *request["argv"]]

        def watch():  # the launcher never writes after its request: the first read returns when it exits
            try:
                conn.recv(1)
            finally:
                os._exit(1)

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


def serve(sock_path: str, preload=PRELOAD) -> None:
    "Listen first (launchers queue), import `preload`, then fork one kernel per launcher until the parent goes."
    import gc
    import importlib
    import select

    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # the kernels' sys.path is ipykernel_launcher's, not this script's folder
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(64)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a kernel imports what it needs itself
            pass
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
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
                    while not msg.endswith(b"\n"):
                        msg += _recv_line(conn)
                    request = json.loads(msg)
                except (OSError, ValueError, ConnectionError):
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
                    _child(conn, fds, request)
                for fd in fds:
                    os.close(fd)
                conn.sendall(b"%d\n" % pid)
                kernels[pid] = conn
    finally:
        for pid in kernels:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
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
        spare = {"km": km, "kc": kc, "error": None}

        def ready():
            try:
                kc.start_channels()
                kc.wait_for_ready(timeout=startup_timeout)
            except BaseException as e:  # noqa: BLE001 - told to the taker, who starts a kernel of its own
                spare["error"] = e

        spare["thread"] = self._threading.Thread(target=ready, daemon=True, name="spare-kernel")
        spare["thread"].start()
        return spare

    def start_new_kernel(self, startup_timeout=60, kernel_name="python", **kwargs):
        "nbval's `start_new_kernel`: the spare for this name and folder when it is ready, and a new spare."
        kwargs.pop("stderr", None)
        key = (kernel_name, kwargs.get("cwd"))
        spare = self._spares.pop(key, None)
        self._spares[key] = self._spare(startup_timeout, kernel_name, kwargs)
        if spare is not None:
            spare["thread"].join(startup_timeout)
            if spare["error"] is None and not spare["thread"].is_alive() and spare["km"].is_alive():
                return spare["km"], spare["kc"]
            self._shutdown(spare["km"], spare["kc"])
        return self._start(startup_timeout=startup_timeout, kernel_name=kernel_name,
                           stderr=open(os.devnull, "w"), **kwargs)  # noqa: SIM115

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
            spare["thread"].join(60)
            self._shutdown(spare["km"], spare["kc"])
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
