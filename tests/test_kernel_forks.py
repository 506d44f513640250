"""The notebook tests' kernels (nbs/kernel_forks.py): forked from a template that has imported what kernels import, one
started ahead. Each must behave as the kernel `python -m ipykernel_launcher` starts: its own process in the folder and
environment jupyter_client gives it, a namespace nothing has run in, interrupted by jupyter_client's SIGINT, gone when
its manager kills it; and without a template, an ordinary kernel."""

import ast
import importlib.util
import json
import os
import signal
import sys
import time

import pytest
from jupyter_client.manager import KernelManager

from testkit import ROOT

_spec = importlib.util.spec_from_file_location("kernel_forks", ROOT / "nbs" / "kernel_forks.py")
kernel_forks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kernel_forks)


@pytest.fixture(scope="module")
def template():
    template = kernel_forks.Template(preload=("ipykernel.kernelapp", "wave"))  # wave: a module no kernel imports
    yield template
    template.close()


def start(argv: list[str], cwd, **env):
    "A kernel started by jupyter_client with `argv` as its kernelspec's, in `cwd`: its manager and a ready client."
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv = [*argv, "-f", "{connection_file}"]
    km.start_kernel(cwd=str(cwd), env=os.environ | env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def run(kc, code: str, timeout: float = 30) -> dict:
    "Run `code` in the kernel: its last line's value (a JSON string) decoded, None without one."
    outputs = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=outputs.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    results = [m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"]
    return json.loads(ast.literal_eval(results[0])) if results else None  # the repr of a str

NBS = str(ROOT / "nbs")
PROBE = ("import json, os, sys; json.dumps({'cwd': os.getcwd(), 'env': os.environ.get('PROBE_VALUE'), 'pid': os.getpid(),"
         " 'main_file': hasattr(sys.modules['__main__'], '__file__'), 'preloaded': 'wave' in sys.modules, 'x': 'x' in dir(),"
         f" 'nbs_on_path': any(os.path.abspath(p or '.') == {NBS!r} for p in sys.path[1:])}})")


def test_a_forked_kernel_is_a_fresh_kernel_in_its_own_folder_and_environment(template, tmp_path):
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path, PROBE_VALUE="given")
    try:
        first = run(kc, PROBE)
        assert first["cwd"] == str(tmp_path) and first["env"] == "given"
        assert first["pid"] not in (os.getpid(), km.provisioner.process.pid), "the kernel is not a process of its own"
        assert first["preloaded"], "the kernel was not forked from the template (it has not imported `wave`)"
        assert not first["main_file"] and not first["x"] and not first["nbs_on_path"]
        run(kc, "x = 1")
        assert run(kc, PROBE)["x"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    km2, kc2 = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path)
    try:
        second = run(kc2, PROBE)
        assert second["pid"] != first["pid"] and not second["x"], "a second kernel saw the first one's namespace"
    finally:
        kc2.stop_channels()
        km2.shutdown_kernel(now=True)


def test_the_launcher_forwards_jupyters_interrupt(template, tmp_path):
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path)
    try:
        msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)  # as nbval runs cells
        time.sleep(0.5)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"
        assert run(kc, "'\"still here\"'") == "still here"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("now", [True, False], ids=["killed", "asked to shut down"])
def test_a_kernel_is_gone_when_its_manager_ends_it(now, template, tmp_path):
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path)
    pid = run(kc, PROBE)["pid"]
    kc.stop_channels()
    km.shutdown_kernel(now=now)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"kernel {pid} outlived its manager's shutdown_kernel(now={now})")


def test_without_a_template_the_launcher_is_an_ordinary_kernel(tmp_path):
    argv = [sys.executable, "-I", "-S", str(ROOT / "nbs" / "kernel_forks.py"), "launch", str(tmp_path / "no.sock")]
    km, kc = start(argv, tmp_path, PROBE_VALUE="plain")
    try:
        probe = run(kc, PROBE)
        assert probe["env"] == "plain" and probe["cwd"] == str(tmp_path) and not probe["preloaded"]
        assert probe["pid"] == km.provisioner.process.pid, "the launcher did not become the kernel"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_spares_give_each_notebook_a_kernel_of_its_own_started_ahead(tmp_path):
    from nbval.kernel import start_new_kernel

    spares = kernel_forks.Spares(start_new_kernel)
    try:
        pids = []
        for _ in range(3):
            km, kc = spares.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
            assert run(kc, PROBE)["x"] is False
            run(kc, "x = 1")
            pids.append(run(kc, PROBE)["pid"])
            running = type("Running", (), {})()
            running.km, running.kc = km, kc
            spares.stop(running)
            assert not hasattr(running, "km")
        assert len(set(pids)) == 3
        (spare,) = spares._spares.values()
        spare["thread"].join(60)
        assert spare["km"].is_alive(), "no kernel was started ahead for the next notebook"
    finally:
        spares.close()
    assert not spare["km"].is_alive()
