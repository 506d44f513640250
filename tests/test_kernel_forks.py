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
         f" 'nbs_on_path': any(os.path.abspath(p or '.') == {NBS!r} for p in sys.path[1:]),"
         " 'random': __import__('random').random(), 'orig_argv': sys.orig_argv[1:3]})")


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
        assert second["random"] != first["random"], "two kernels drew the same random numbers"
        assert first["orig_argv"] == ["-m", "ipykernel_launcher"]
    finally:
        kc2.stop_channels()
        km2.shutdown_kernel(now=True)


def test_the_launcher_forwards_jupyters_interrupt(template, tmp_path):
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path)
    try:
        msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)  # as nbval runs cells
        while not ((m := kc.get_iopub_msg(timeout=20))["msg_type"] == "execute_input"
                   and m["parent_header"].get("msg_id") == msg_id):
            pass  # an idle kernel ignores SIGINT: interrupt once the cell runs
        time.sleep(0.2)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"
        assert run(kc, "'\"still here\"'") == "still here"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def assert_gone(pid: int, says: str) -> None:
    "The process ends within 5 s (else it is killed and the test fails, saying so)."
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(says)


@pytest.mark.parametrize("now", [True, False], ids=["killed", "asked to shut down"])
def test_a_kernel_is_gone_when_its_manager_ends_it(now, template, tmp_path):
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path)
    pid = run(kc, PROBE)["pid"]
    kc.stop_channels()
    km.shutdown_kernel(now=now)
    assert_gone(pid, f"kernel {pid} outlived its manager's shutdown_kernel(now={now})")


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


def nbvals_own_start():
    "nbval's `start_new_kernel`, as it is before `install` (which replaces it in a session that runs notebooks)."
    from nbval import kernel

    start = kernel.start_new_kernel
    return start.__self__._start if isinstance(getattr(start, "__self__", None), kernel_forks.Spares) else start


def test_spares_give_each_notebook_a_kernel_of_its_own_started_ahead(tmp_path):
    spares = kernel_forks.Spares(nbvals_own_start())
    try:
        pids, ahead = [], None
        for _ in range(3):
            km, kc = spares.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
            assert ahead is None or km is ahead, "the kernel started ahead was not the one given"
            ahead = spares._spares[("python3", str(tmp_path))]["km"]
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


def test_a_spare_started_in_another_environment_is_not_given(tmp_path, monkeypatch):
    spares = kernel_forks.Spares(nbvals_own_start())
    try:
        km, kc = spares.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
        ahead = spares._spares[("python3", str(tmp_path))]["km"]
        monkeypatch.setenv("PROBE_VALUE", "changed after the spare started")
        km2, kc2 = spares.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
        assert km2 is not ahead and run(kc2, PROBE)["env"] == "changed after the spare started"
        for m, c in ((km, kc), (km2, kc2)):
            running = type("Running", (), {})()
            running.km, running.kc = m, c
            spares.stop(running)
    finally:
        spares.close()


def test_what_a_notebook_started_dies_with_its_kernel(template, tmp_path):
    "A forked kernel leads a process group of its own, which its end takes with it, as a kernel jupyter_client starts."
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path)
    child = run(kc, "import subprocess, json; json.dumps(subprocess.Popen(['sleep', '60']).pid)")
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    assert_gone(child, "a process the notebook started outlived its kernel")


def test_a_kernel_in_another_python_environment_is_an_ordinary_one(template, tmp_path):
    "PYTHONHASHSEED and the like act as Python starts: a fork of the template could not honour them."
    km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path, PYTHONHASHSEED="123")
    try:
        probe = run(kc, PROBE)
        assert not probe["preloaded"] and probe["pid"] == km.provisioner.process.pid
        assert run(kc, "import json; json.dumps(hash('abc'))") == run(kc, "import json; json.dumps(hash('abc'))")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_install_sends_nbvals_kernels_through_a_template(tmp_path, monkeypatch):
    from nbval import kernel

    for name in ("start_new_kernel",):  # undone after the test, whatever `install` replaced
        monkeypatch.setattr(kernel, name, getattr(kernel, name))
    monkeypatch.setattr(kernel.NbvalKernelspecManager, "get_kernel_spec", kernel.NbvalKernelspecManager.get_kernel_spec)
    monkeypatch.setattr(kernel.RunningKernel, "stop", kernel.RunningKernel.stop)
    monkeypatch.setenv("KERNEL_SPARES", "0")
    installed = kernel_forks.install({"PROBE_VALUE": "given to every kernel"})
    try:
        km, kc = kernel.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
        try:
            probe = run(kc, PROBE)
            assert probe["env"] == "given to every kernel" and probe["cwd"] == str(tmp_path)
            assert probe["pid"] != km.provisioner.process.pid, "nbval's kernel was not forked from a template"
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    finally:
        installed.close()


def test_a_kernel_whose_pythonpath_holds_another_copy_of_a_preloaded_module_is_an_ordinary_one(template, tmp_path):
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "wave.py").write_text("SHADOW = True\n")  # the template imported the standard library's
    (tmp_path / "other").mkdir()
    pythonpath = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", "")]))
    probe = "import json, os, sys, wave; json.dumps([os.getpid(), hasattr(wave, 'SHADOW'), sys.path])"
    for folder, forked in (("other", True), ("shadow", False)):
        km, kc = start(template.kernel_argv(list(kernel_forks.KERNEL)), tmp_path,
                       PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path / folder), pythonpath])))
        try:
            pid, shadowed, path = run(kc, probe)
            assert (pid != km.provisioner.process.pid) == forked and shadowed == (folder == "shadow")
            assert str(tmp_path / folder) in path
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
