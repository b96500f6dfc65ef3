"""`mit-network-audit run`: an unmodified program (ours, and pip — a real one nobody here wrote)."""

import os
import subprocess
import sys
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify

CLI = [sys.executable, "-m", "mit_network_audit.cli"]


def test_run_script_rows_attributed_to_script(tmp_path, http_server):
    script = tmp_path / "fetch.py"
    script.write_text(f"import urllib.request\nurllib.request.urlopen('{http_server}/echo').read()\n")
    user_site = tmp_path / "usersite"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import os\nos.environ['USER_SITECUSTOMIZE_RAN'] = '1'\n")
    check = tmp_path / "check.py"
    check.write_text("import os, sys\nsys.exit(0 if os.environ.get('USER_SITECUSTOMIZE_RAN') else 3)\n")
    dsn = f"sqlite:///{tmp_path}/run.db"
    env = {**os.environ, "PYTHONPATH": str(user_site)}
    assert subprocess.run([*CLI, "run", "--db", dsn, "--", "python", str(script)], env=env, timeout=60).returncode == 0
    # the user's own sitecustomize still runs, and the child's exit code passes through
    assert subprocess.run([*CLI, "run", "--db", dsn, "--", "python", str(check)], env=env, timeout=60).returncode == 0
    store = open_store(dsn)
    out = [r.event for r in store.rows(limit=100) if r.event.direction == "outbound"]
    assert [(e.channel, e.addon, e.call_site) for e in out] == [("urllib", "__main__", "fetch.py:2 in <module>")]
    kinds = sorted(r.event.method for r in store.rows(limit=100) if r.event.direction == "internal")
    assert kinds == ["start", "start", "stop", "stop"]
    assert verify(store).ok


def _wheel(directory):
    name = "mna_demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(directory / name, "w") as zf:
        zf.writestr("mna_demo_pkg/__init__.py", "")
        zf.writestr("mna_demo_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: mna-demo-pkg\nVersion: 1.0\n")
        zf.writestr("mna_demo_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("mna_demo_pkg-1.0.dist-info/RECORD", "")
    return name


def test_run_pip_download_attributed_to_pip(tmp_path):
    index = tmp_path / "index"
    (index / "simple" / "mna-demo-pkg").mkdir(parents=True)
    wheel = _wheel(index)
    (index / "simple" / "mna-demo-pkg" / "index.html").write_text(f'<a href="../../{wheel}">{wheel}</a>\n')
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = partial(Quiet, directory=str(index))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"sqlite:///{tmp_path}/pip.db"
    try:
        done = subprocess.run([*CLI, "run", "--db", dsn, "--", sys.executable, "-m", "pip", "download", "--no-deps",
                               "--no-cache-dir", "--index-url", f"http://127.0.0.1:{server.server_port}/simple/",
                               "-d", str(tmp_path / "dl"), "mna-demo-pkg"], capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dl" / wheel).exists()
    rows = [r.event for r in open_store(dsn).rows(limit=100) if r.event.direction == "outbound"]
    # pip also spawns uname/lsb_release/rustc for its user agent: process rows, attributed to pip too
    assert {e.addon for e in rows if e.channel == "subprocess"} <= {"pip"}
    out = [e for e in rows if e.channel != "subprocess"]
    assert len(out) >= 2  # the index page and the wheel
    assert {e.addon for e in out} == {"pip"}
    assert all(e.channel == "http.client" and "urllib3" in e.via for e in out), [(e.channel, e.via) for e in out]
    # the wheel's file name mixes letters and digits like a token: masked, on the safe side
    assert {e.path for e in out} >= {"/simple/mna-demo-pkg/", "/:token"}


def test_run_audits_a_child_python_that_lacks_the_package(tmp_path, http_server):
    """A child interpreter other than ours (here a bare venv: no pip, no mit_network_audit), started
    through a shell, is still audited: the sitecustomize loads the package by location."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    bare_python = bare / "bin" / "python"
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('mit_network_audit') is not None)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert subprocess.run([str(bare_python), "-c", probe], env=env).returncode == 0  # really lacks it
    script = tmp_path / "child.py"
    script.write_text(
        "import os, sys, urllib.request\n"
        f"urllib.request.urlopen('{http_server}/from-bare').read()\n"
        "top = os.path.dirname(os.path.dirname(sys.modules['mit_network_audit'].__file__))\n"
        "print('mit_network_audit' in sys.modules, top in [os.path.abspath(p) for p in sys.path])\n"
    )
    dsn = f"sqlite:///{tmp_path}/bare.db"
    out = subprocess.run([*CLI, "run", "--db", dsn, "--", "sh", "-c", f"'{bare_python}' '{script}'"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "auditing disabled" not in out.stderr
    assert out.stdout.split() == ["True", "False"]  # loaded, and the program's sys.path is untouched
    store = open_store(dsn)
    rows = [r.event for r in store.rows(limit=100) if r.event.direction == "outbound"]
    assert [(e.channel, e.path, e.addon) for e in rows] == [("urllib", "/from-bare", "__main__")]
    assert verify(store).ok


def test_run_hands_the_process_over_same_pid_signals_and_exit_status(tmp_path):
    """`run` execs the program (as opentelemetry-instrument does): a supervisor's SIGTERM, a pidfile
    and the exit status are the program's own, a death by signal included."""
    import signal

    dsn = f"sqlite:///{tmp_path}/run.db"
    script = tmp_path / "serve.py"
    script.write_text("import os, signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
                      "print(os.getpid(), flush=True)\n"
                      "time.sleep(60)\n")
    proc = subprocess.Popen([*CLI, "run", "--db", dsn, "--", "python", str(script)], stdout=subprocess.PIPE, text=True)
    assert int(proc.stdout.readline()) == proc.pid
    proc.send_signal(signal.SIGTERM)  # to the PID the supervisor knows: the program's handler runs
    assert proc.wait(30) == 7
    killed = subprocess.run([*CLI, "run", "--db", dsn, "--", "python", "-c",
                             "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    missing = subprocess.run([*CLI, "run", "--db", dsn, "--", "no-such-program-here"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    store = open_store(dsn)
    assert [r.event.method for r in store.rows(limit=10)][::-1][:2] == ["start", "stop"]  # the handler's exit flushed


def test_run_with_a_relative_journal_path_keeps_every_child_in_that_journal(tmp_path, http_server):
    """`run --db rel.db`: the program changes directory, then starts a Python child; the child's
    rows go to the journal named (against run's own directory), not to a second rel.db elsewhere."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    child = f"import urllib.request; urllib.request.urlopen('{http_server}/echo').read()"
    program = (f"import os, subprocess, sys\nos.chdir({str(elsewhere)!r})\n"
               f"sys.exit(subprocess.run([sys.executable, '-c', {child!r}]).returncode)\n")
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # this checkout, from any directory
    for dsn in ("rel.db", "sqlite:///rel2.db"):
        done = subprocess.run([*CLI, "run", "--db", dsn, "--", "python", "-c", program], cwd=here, env=env,
                              timeout=60)
        assert done.returncode == 0
    assert os.listdir(elsewhere) == []
    for name in ("rel.db", "rel2.db"):
        store = open_store(str(here / name), create=False)
        rows = [r.event for r in store.rows(limit=100)]
        assert [e.path for e in rows if e.channel == "urllib"] == ["/echo"]  # the child's call
        assert verify(store).ok


def test_run_a_script_whose_file_name_is_not_utf8(tmp_path, http_server):
    """Every row's call_site names the script: a name that is not UTF-8 (a lone surrogate in Python)
    made each batch unwritable and the process's whole record a single gap row."""
    script = os.path.join(os.fsencode(tmp_path), b"\xffshop.py")
    with open(script, "wb") as fh:
        fh.write(f"import urllib.request\nurllib.request.urlopen('{http_server}/echo').read()\n".encode())
    dsn = f"sqlite:///{tmp_path}/run.db"
    assert subprocess.run([*CLI, "run", "--db", dsn, "--", "python", script], timeout=60).returncode == 0
    store = open_store(dsn)
    rows = [r.event for r in store.rows(limit=100)]
    assert sorted(e.method for e in rows) == ["GET", "start", "stop"], [(e.method, e.detail) for e in rows]
    assert [e.call_site for e in rows if e.method == "GET"] == ["\\udcffshop.py:2 in <module>"]
    assert verify(store).ok


def test_a_hostile_request_does_not_stop_a_postgresql_journal(tmp_path, pg_dsn):
    """A client sends a request whose method holds a NUL byte to a wsgiref app under `run` on
    PostgreSQL: its row (method escaped) and every row after it are written. The row used to make
    each batch unwritable, so nothing more was journaled for the life of the process."""
    import signal
    import socket
    import time

    app = tmp_path / "app.py"
    app.write_text(
        "import sys\nfrom wsgiref.simple_server import make_server, WSGIRequestHandler\n"
        "class Quiet(WSGIRequestHandler):\n    def log_message(self, *a): pass\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n"
        "srv = make_server('127.0.0.1', 0, app, handler_class=Quiet)\n"
        "print(srv.server_port, flush=True)\nsrv.serve_forever()\n")
    proc = subprocess.Popen([*CLI, "run", "--db", pg_dsn, "--", "python", str(app)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        for request in (b"G\x00T /hostile HTTP/1.0\r\n\r\n", b"GET /after HTTP/1.0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(request)
                assert s.recv(100).startswith(b"HTTP/1.0 200")
        store = open_store(pg_dsn, create=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            paths = [r.event.path for r in store.rows(limit=100) if r.event.direction == "inbound"]
            if "/after" in paths:
                break
            time.sleep(0.2)
        assert sorted(paths) == ["/after", "/hostile"], paths
        assert [r.event.method for r in store.rows(limit=100) if r.event.path == "/hostile"] == ["G\\x00T"]
        assert verify(store).ok
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
