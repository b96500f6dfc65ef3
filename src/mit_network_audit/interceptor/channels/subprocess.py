"""Processes: ``subprocess.Popen`` (and so ``run``/``call``/``check_output``), ``os.system``,
``os.posix_spawn[p]``, ``os.exec*``, ``os.spawn*``, ``_posixsubprocess.fork_exec`` (multiprocessing's
spawn and forkserver) — one ``subprocess`` row per spawned process.

Row: ``channel`` = ``subprocess``, ``protocol`` = ``exec``, ``method`` = how it was started
(``popen``, ``system``, ``posix_spawn``, ``exec``, ``spawn``, ``fork_exec``, ``uvloop``, ``audit``),
``path`` = the executable's base name (for a shell command — ``shell=True``, ``os.system``,
``sh -c`` — the first word of the command: what the shell runs), ``host``/``port`` = the first
argument that is a URL (``scheme://host[:port]/...``), a ``host:port`` or ``user@host:path``
(and ``user@host`` for ssh-like programs): that host only.  Arguments, the rest of the command
line and the environment are never stored.  ``status`` = the exit code where the call waits for
it (``os.system``), else null; ``outcome`` = ``error`` when the spawn itself fails.

``os.exec*`` replaces the process: its row is written (and the sink flushed) before.  A Python
child audits itself when it inherits ``mit-network-audit run``'s environment; when the program
passes an explicit ``env`` that lacks it, the auditor's variables (``MNA_*`` and its
``sitecustomize`` directory on ``PYTHONPATH``) are added to a copy of that env — the only change
we make to a child, and only under ``run``.

Backstop: an audit hook (PEP 578) for ``subprocess.Popen``, ``os.system``, ``os.exec`` and
``os.posix_spawn`` events that did not pass a wrapper (a reference taken before install, a
restored original).
"""

from __future__ import annotations

import contextvars
import os
import re
import shlex
from urllib.parse import urlsplit

from .. import capture
from . import _audit_events

NAME = "subprocess"
TARGET = None

# Inside one of our spawn wrappers.  A context variable, not a thread-local: greenlets (gevent) share
# a thread but not a context; and it survives fork into the child (whose exec must not add a row).
_busy: contextvars.ContextVar[bool] = contextvars.ContextVar("mna_spawning", default=False)
_AUDIT_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"})

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish"})
_PREFIX_WORDS = frozenset({"exec", "env", "nohup", "nice", "command", "time", "sudo", "stdbuf", "timeout"})
_SSH_LIKE = frozenset({"ssh", "scp", "sftp", "rsync", "mosh", "git", "autossh", "sshfs"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]{0,30}://")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"(?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9\-]*|localhost|\d{{1,3}}(?:\.\d{{1,3}}){{3}}"
_HOST_PORT = re.compile(rf"^(?:[^@/\s]+@)?(\[[0-9A-Fa-f:.]+\]|{_HOSTNAME}):(\d{{1,5}})$")
_SCP = re.compile(rf"^[^@/\s:]+@({_HOSTNAME}|\[[0-9A-Fa-f:.]+\]):")
_USER_AT = re.compile(rf"^[^@/\s:]+@({_HOSTNAME})$")


# -- what a command line tells (and all it may tell) --------------------------------------------------
def _text(value) -> str:
    if isinstance(value, bytes | bytearray):
        return os.fsdecode(bytes(value))
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _program(words: list[str]) -> tuple[str | None, list[str]]:
    """The executable's base name and the words after it, looking through ``sh -c`` and ``env``-like prefixes."""
    depth = 0
    while words and depth < 4:
        depth += 1
        while words and ("=" in words[0] and not words[0].startswith(("-", "/", "."))
                         and words[0].split("=", 1)[0].isidentifier()):
            words = words[1:]  # VAR=value assignments before the command
        if not words:
            return None, []
        base = os.path.basename(words[0])
        if base in _SHELLS and len(words) >= 3 and words[1].startswith("-") and "c" in words[1]:
            words = _split(words[2])
            continue
        if base in _PREFIX_WORDS and len(words) >= 2:
            rest = words[1:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            if base == "timeout" and rest:
                rest = rest[1:]
            words = rest
            continue
        return base, words[1:]
    return (os.path.basename(words[0]) if words else None), words[1:]


def find_host(program: str | None, args: list[str]) -> tuple[str | None, int | None]:
    """The first destination named in ``args``: host (and port) only."""
    for arg in args:
        for token in (arg, arg.split("=", 1)[1] if "=" in arg else None):
            if not token:
                continue
            if _URL.match(token):
                try:
                    parts = urlsplit(token)
                    host = parts.hostname
                    try:
                        port = parts.port
                    except ValueError:
                        port = None
                except ValueError:
                    continue
                if host:
                    return host, port
                continue
            match = _HOST_PORT.match(token)
            if match and 0 < int(match.group(2)) < 65536:
                return match.group(1).strip("[]"), int(match.group(2))
            match = _SCP.match(token)
            if match:
                return match.group(1).strip("[]"), None
            if program in _SSH_LIKE:
                match = _USER_AT.match(token)
                if match:
                    return match.group(1), None
    return None, None


def describe(argv=None, command=None, executable=None) -> dict:
    """Row fields for a process started with ``argv`` (a list) or a shell ``command`` (a string)."""
    try:
        if command is not None:
            words = _split(_text(command))
        elif isinstance(argv, str | bytes | os.PathLike):
            words = [_text(argv)]
        else:
            words = [_text(a) for a in (argv or ())]
        program, rest = _program(words)
        if executable is not None and not command:
            exe = os.path.basename(_text(executable))
            if exe not in _SHELLS:
                program = exe
        host, port = find_host(program, rest)
        return {"path": program, "host": host, "port": port}
    except Exception:
        capture.counters["errors.subprocess_describe"] += 1
        return {}


# -- env inheritance under `mit-network-audit run` -------------------------------------------------------
def _audit_site_dir() -> str | None:
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and "mit_network_audit" in entry and os.path.isfile(os.path.join(entry, "sitecustomize.py")):
            return entry
    return None


def propagate_env(env):
    """A copy of an explicit child ``env`` that keeps the child audited (only under ``run``)."""
    try:
        if env is None or not os.environ.get("MNA_DB") or not hasattr(env, "keys"):
            return env
        if any(isinstance(k, bytes) for k in env.keys()) or "MNA_DB" in env:
            return env
        new = dict(env)
        for key, value in os.environ.items():
            if key.startswith("MNA_"):
                new[key] = value
        site = _audit_site_dir()
        if site:
            old = new.get("PYTHONPATH", "")
            new["PYTHONPATH"] = os.pathsep.join(p for p in (site, old) if p)
        return new
    except Exception:
        capture.counters["errors.subprocess_env"] += 1
        return env


# -- rows ---------------------------------------------------------------------------------------------
def _begin(method: str, fields: dict, activate: bool = True):
    if _busy.get():
        return None
    call = capture.begin(NAME, activate=activate, protocol="exec", method=method,
                         **{k: v for k, v in fields.items() if v is not None})
    return call


def _flush_before_exec() -> None:
    """The process image is about to be replaced: nothing queued may be lost."""
    try:
        capture.finish_pending()
        flush = getattr(capture.runtime.sink, "flush", None)
        if flush is not None:
            try:
                flush(timeout=3.0)
            except TypeError:
                flush()
    except Exception:
        capture.counters["errors.subprocess_flush"] += 1


def _spawning(method: str, fields_of, original, *, exec_like=False, status_of=None, env_index=None):
    """A wrapper: one row around ``original`` unless an outer spawn wrapper owns this process."""
    def wrapper(*args, **kwargs):
        if not capture.runtime.active or _busy.get() or capture.current() is not None:
            return original(*args, **kwargs)
        try:
            fields = fields_of(*args, **kwargs)
        except Exception:  # odd arguments: the original raises its own error, we only lose the details
            fields = {}
        call = _begin(method, fields)
        if call is None:
            return original(*args, **kwargs)
        if env_index is not None:
            if "env" in kwargs:
                kwargs["env"] = propagate_env(kwargs["env"])
            elif len(args) > env_index:
                args = (*args[:env_index], propagate_env(args[env_index]), *args[env_index + 1:])
        token = _busy.set(True)
        try:
            if exec_like:
                capture.end(call)
                _flush_before_exec()
                return original(*args, **kwargs)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                capture.end(call, exc)
                raise
            if status_of is not None:
                try:
                    call.status = status_of(result)
                except Exception:
                    pass
            capture.end(call)
            return result
        finally:
            _busy.reset(token)
    return wrapper


def _argv_fields(path_index: int, argv_index: int):
    def fields(*args, **kwargs):
        argv = args[argv_index] if len(args) > argv_index else kwargs.get("argv") or kwargs.get("args")
        path = args[path_index] if len(args) > path_index else kwargs.get("path")
        return describe(argv, executable=path)
    return fields


def _popen_fields(self, args=None, bufsize=-1, executable=None, *rest, **kwargs):
    shell = kwargs.get("shell", rest[5] if len(rest) > 5 else False)
    if shell and isinstance(args, str | bytes):
        return describe(command=args)
    return describe(args, executable=executable)


def _system_status(result):
    return os.waitstatus_to_exitcode(result) if result >= 0 else None


def install(patches) -> None:
    import subprocess

    patches.wrap(subprocess.Popen, "__init__",
                 lambda o: _spawning("popen", _popen_fields, o, env_index=11))
    patches.wrap(os, "system", lambda o: _spawning("system", lambda cmd, *a, **k: describe(command=cmd), o,
                                                   status_of=_system_status))
    for name in ("posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            patches.wrap(os, name, lambda o: _spawning("posix_spawn", _argv_fields(0, 1), o, env_index=2))
    for name, env_index in (("execv", None), ("execve", 2), ("execvp", None), ("execvpe", 2)):
        patches.wrap(os, name, lambda o, i=env_index: _spawning("exec", _argv_fields(0, 1), o, exec_like=True,
                                                                  env_index=i))
    for name, env_index in (("spawnv", None), ("spawnve", 3), ("spawnvp", None), ("spawnvpe", 3)):
        if hasattr(os, name):
            patches.wrap(os, name, lambda o, i=env_index: _spawning("spawn", _argv_fields(1, 2), o, env_index=i))
    try:
        import _posixsubprocess

        patches.wrap(_posixsubprocess, "fork_exec", lambda o: _spawning("fork_exec", _fork_exec_fields, o))
    except (ImportError, AttributeError):
        pass
    _audit_events.register(_AUDIT_EVENTS, _hook)


def uninstall() -> None:
    _audit_events.unregister(_AUDIT_EVENTS)


def _fork_exec_fields(*args, **kwargs):
    argv = args[0] if args else None
    executables = args[1] if len(args) > 1 else None
    exe = executables[0] if executables else None
    return describe(argv, executable=exe)


def _hook(event, args):
    try:
        if _busy.get() or capture.current() is not None or not capture.runtime.active:
            return
        if event == "os.system":
            fields = describe(command=args[0])
        elif event == "subprocess.Popen":
            fields = describe(args[1], executable=args[0])
        elif event == "os.spawn":
            fields = describe(args[2], executable=args[1])
        else:  # os.exec, os.posix_spawn: (path, argv, env)
            fields = describe(args[1], executable=args[0])
        call = capture.begin(NAME, protocol="exec", method="audit",
                             **{k: v for k, v in fields.items() if v is not None})
        if call is None:
            return
        capture.end(call)
        if event == "os.exec":
            _flush_before_exec()
    except Exception:
        capture.counters["errors.subprocess_hook"] += 1
