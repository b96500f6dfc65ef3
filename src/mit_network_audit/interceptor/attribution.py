"""Attributor: which module's code made a call (stack -> owner).

The default attributor walks the stack outwards from the wire.  Frames of the auditor itself,
of the standard library and of known transport libraries (requests, urllib3, httpx, ...) are
"in between" and become ``via``; the first other frame is the owner's: its installed
distribution (``importlib.metadata``), else the application's top-level package, else
``__main__``.  Everything per frame is cached by code object, so attribution costs
microseconds.  Odoo supplies its own attributor (module path -> addon) through the same protocol.

The interceptor's own frames (the channel wrapper between the wire and the caller) are skipped;
only the rest of the auditor counts as "the auditor's own call".  A walk that reaches asyncio's
loop (``Handle._run``: the task's root coroutine is a library's, as in ``gather(session.get(u))``)
continues in the task awaiting this one, if there is one yet; the loop's runner never owns a call.
A call handed to a thread pool as is (``pool.submit(requests.get, url)``) has no owner: the pool
does not say who submitted it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import sys
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

_SELF = __name__.split(".")[0]
_INTERCEPTOR = __name__.rsplit(".", 1)[0]  # mit_network_audit.interceptor

# Libraries that carry calls on behalf of their caller: never owners, reported in ``via``.
TRANSPORT_LIBRARIES = frozenset(
    {
        "requests",
        "urllib3",
        "httpx",
        "httpcore",
        "h11",
        "h2",
        "hpack",
        "hyperframe",
        "anyio",
        "sniffio",
        "aiohttp",
        "aiohappyeyeballs",
        "aiosignal",
        "yarl",
        "multidict",
        "frozenlist",
        "async_timeout",
        "certifi",
        "idna",
        "charset_normalizer",
        "chardet",
        "socks",
        "sockshandler",
        "requests_toolbelt",
        "gevent",
        "greenlet",
        "eventlet",
        "uvloop",
        "wrapt",
        "opentelemetry",
        "sentry_sdk",
        "trio",
        "aiosmtplib",
        "aioimaplib",
        "pycurl",
        "websocket",
        "websockets",
        "zeep",
        "suds",
    }
)
# Standard-library modules worth naming in ``via`` (the rest of the stdlib is skipped silently).
STDLIB_VIA = frozenset(
    {
        "http.client",
        "urllib.request",
        "smtplib",
        "imaplib",
        "poplib",
        "ftplib",
        "ssl",
        "socket",
        "asyncio.streams",
        "asyncio.base_events",
        "xmlrpc.client",
        "subprocess",
    }
)
_STDLIB_TOP = frozenset(sys.stdlib_module_names) | {"__future__", "_pytest", "pytest", "pluggy", "runpy"}

_SKIP, _VIA, _OWNER, _SELF_KIND = 0, 1, 2, 3
_CANDIDATE = 5  # (the Odoo attributor, a subclass, uses 4 for its own kind)
_TASK_EDGE = 6  # asyncio's loop running a task step: the frames further out are the loop's runner


def _awaiting_task(future, depth: int = 0):
    """The asyncio task that awaits ``future``: directly (its wake-up is a callback of the future),
    or through ``gather``/``wait``/``wait_for``/``shield`` (a future of theirs in the callback's
    closure or arguments) or a ``TaskGroup`` (its parent task).  None if nobody awaits it (yet)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or depth > 4:
        return None
    for callback, _context in getattr(future, "_callbacks", None) or ():
        candidates = [getattr(callback, "__self__", None), getattr(callback, "func", None),
                      *getattr(callback, "args", ())]
        for cell in getattr(callback, "__closure__", None) or ():
            try:
                candidates.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        for candidate in candidates:
            if isinstance(candidate, asyncio.Task):
                return candidate
            parent = getattr(candidate, "_parent_task", None)  # a TaskGroup's
            if isinstance(parent, asyncio.Task):
                return parent
            if isinstance(candidate, asyncio.Future) and candidate is not future:
                task = _awaiting_task(candidate, depth + 1)
                if task is not None:
                    return task
    return None


def _awaiter_frames() -> list | None:
    """The frames of the task awaiting the current one, outermost first (a suspended task's await
    chain: its frames have no ``f_back``); None when the loop itself was asked to run this task
    (``asyncio.run(client.get(url))``, ``run_until_complete``: the code further out awaits it); []
    when that cannot be known."""
    try:
        task = sys.modules["asyncio"].current_task()
        if task is None:
            return []
        for callback, _context in getattr(task, "_callbacks", None) or ():
            if getattr(callback, "__name__", None) == "_run_until_complete_cb":
                return None
        parent = _awaiting_task(task)
        if parent is None:
            return []
        frames: list = []
        coro = parent.get_coro()
        while coro is not None:  # down the await chain: root coroutine ... the one awaiting us
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            frames.append(frame)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return frames
    except Exception:
        return []


@dataclass(frozen=True, slots=True)
class Owner:
    addon: str
    author: str | None
    call_site: str
    via: tuple[str, ...]


@runtime_checkable
class Attributor(Protocol):
    def attribute(self, frame) -> Owner | None:
        """``frame`` is the innermost frame of the caller (the wrapped library's caller chain)."""


def module_relpath(module: str, filename: str) -> str:
    """``acme/client.py`` for module ``acme.client``: the path below the import root."""
    base = os.path.basename(filename)
    parts = module.split(".")
    if base.startswith("__init__."):
        return "/".join([*parts, base])
    return "/".join([*parts[:-1], base])


class DistributionAttributor:
    """Owner = installed distribution owning the module, else its top-level package, else __main__."""

    def __init__(self, transport_libraries=TRANSPORT_LIBRARIES, max_depth: int = 200) -> None:
        self._transport = frozenset(transport_libraries)
        self._max_depth = max_depth
        self._module_cache: dict = {}  # module name -> what the name alone decides
        self._code_cache: dict = {}  # (file, first line, qualname) -> (kind, ..., code)
        self._owners: dict[tuple, tuple] = {}  # (code key, f_lasti, *via) -> (code, Owner)
        self._owner_cache: dict[str, tuple[str, str | None]] = {}
        self._dist_map: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    # -- the protocol -------------------------------------------------------------------------
    def attribute(self, frame) -> Owner | None:
        # The hot path.  Per frame: ``f_globals`` (module name) and one dict lookup.  Reading a
        # frame's ``f_code`` raises an ``object.__getattr__`` audit event (PEP 578), which costs
        # a call into every audit hook of the process, so the code object is read only for
        # frames of modules that may own the call (usually just the owner's frame).  The Owner
        # itself is cached by (owner code, line, via): a repeated call site allocates nothing but
        # the small key tuple.
        via: list[str] = []
        modules = self._module_cache
        codes = self._code_cache
        depth = 0
        saw_self = False
        max_depth = self._max_depth
        awaiter = None  # frames of the task awaiting this one, once the walk reached the loop
        while frame is not None and depth < max_depth:
            name = frame.f_globals.get("__name__")
            info = modules.get(name)
            if info is None:
                info = self._classify_module(name)
                if len(modules) < 8192:
                    modules[name] = info
            kind = info[0]
            if kind == _CANDIDATE:
                code = frame.f_code
                # Keyed by (file, first line, qualified name), not by the code object (hashing a
                # code object rehashes its constants) nor by id(code) (``id()`` raises a
                # ``builtins.id`` audit event: a call into every audit hook).  The entry keeps the
                # code object and is checked by identity, so a key shared by two code objects only
                # costs a re-classification, never a wrong answer.
                ckey = (code.co_filename, code.co_firstlineno, code.co_qualname)
                cinfo = codes.get(ckey)
                if cinfo is None or cinfo[-1] is not code:
                    cinfo = codes[ckey] = (*self._classify_code(name, info, code), code)
                kind = cinfo[0]
                if kind == _OWNER:
                    # Keyed by the instruction offset: f_lineno scans the code's line table.
                    lasti = frame.f_lasti
                    if via:
                        via.reverse()
                        key = (ckey, lasti, *via)
                    else:
                        key = (ckey, lasti)
                    owners = self._owners
                    entry = owners.get(key)
                    if entry is not None and entry[0] is code:
                        return entry[1]
                    owner = Owner(
                        cinfo[1], cinfo[2], f"{cinfo[3]}:{frame.f_lineno} in {code.co_name}", tuple(via)
                    )
                    if len(owners) < 8192:
                        owners[key] = (code, owner)
                    return owner
                info = cinfo
            if kind == _VIA:
                if info[1] not in via:
                    via.append(info[1])
            elif kind == _SELF_KIND:
                saw_self = True
            elif kind == _TASK_EDGE and awaiter is None:
                # The task's own frames are done (its root coroutine is a library's: gather(session.get(u)),
                # create_task(client.get(u))): whoever runs the loop did not make the call — the task
                # awaiting this one did, if it is known.  Its frames have no f_back: walk them as a list.
                awaiter = _awaiter_frames()
                if awaiter is not None:
                    frame = awaiter.pop() if awaiter else None
                    depth += 1
                    continue
                awaiter = []  # the loop runs it for the code further out: go on outwards
            frame = frame.f_back
            if frame is None and awaiter:
                frame = awaiter.pop()
            depth += 1
        if saw_self:  # only the auditor's own frames: its own call — the report raises an alarm
            via.reverse()
            return Owner(_SELF, None, "mit_network_audit", tuple(via))
        return None

    # -- per module and per code object, cached ---------------------------------------------------
    def _classify_module(self, module) -> tuple:
        """What the module name alone decides; ``_CANDIDATE``: the code object decides."""
        module = module if isinstance(module, str) else ""
        top = module.split(".", 1)[0]
        if top == _SELF:
            # The interceptor's own frames (a channel's wrapper, the capture core) are on the stack of
            # every call it sees: they say nothing about who made it.  Only the rest of the auditor
            # (journal, web, cli, report) can make a call of its own — the alarm of DESIGN §2.
            if module == _INTERCEPTOR or module.startswith(_INTERCEPTOR + "."):
                return (_SKIP,)
            return (_SELF_KIND,)
        if "._vendor." in module or module.endswith("._vendor"):
            # pip._vendor.requests: a vendored transport; its owner is found further out (pip).
            vendored = module.split("._vendor.", 1)[-1].split(".", 1)[0]
            return (_VIA, vendored) if vendored in self._transport else (_SKIP,)
        if top in self._transport:
            return (_VIA, top)
        if module == "__main__" or module == "__mp_main__":
            return (_CANDIDATE, True)
        if module == "asyncio.events":  # Handle._run: the standard loop running a callback or task step
            return (_TASK_EDGE,)
        if top in _STDLIB_TOP:
            return self._stdlib_kind(module)
        if not top:
            return (_SKIP,)
        return (_CANDIDATE, False)

    @staticmethod
    def _stdlib_kind(module: str) -> tuple:
        for name in (module, module.rsplit(".", 1)[0]):
            if name in STDLIB_VIA:
                return (_VIA, name)
        return (_SKIP,)

    def _classify_code(self, module, info: tuple, code) -> tuple:
        module = module if isinstance(module, str) else ""
        filename = code.co_filename
        if info[1]:  # __main__
            return (_OWNER, "__main__", None, os.path.basename(filename))
        if filename.startswith("<frozen"):
            return self._stdlib_kind(module)
        if filename.startswith("<"):
            return (_SKIP,)
        top = module.split(".", 1)[0]
        addon, author = self._owner_of(top)
        return (_OWNER, addon, author, module_relpath(module, filename))

    def _classify(self, frame) -> tuple:
        """The classification of one frame (module first, then its code object if needed)."""
        name = frame.f_globals.get("__name__")
        info = self._classify_module(name)
        if info[0] == _CANDIDATE:
            return self._classify_code(name, info, frame.f_code)
        return info

    def _owner_of(self, top: str) -> tuple[str, str | None]:
        cached = self._owner_cache.get(top)
        if cached is not None:
            return cached
        with self._lock:
            if self._dist_map is None:
                try:
                    self._dist_map = metadata.packages_distributions()
                except Exception:
                    self._dist_map = {}
        dists = self._dist_map.get(top) or []
        result: tuple[str, str | None] = (top, None)
        if dists:
            name = dists[0]
            try:
                meta = metadata.metadata(name)
                author = meta.get("Author") or _name_part(meta.get("Author-email"))
            except Exception:
                author = None
            result = (name, author or None)
        self._owner_cache[top] = result
        return result


def _name_part(author_email: str | None) -> str | None:
    """``Jane Doe <jane@example.org>`` -> ``Jane Doe`` (an address is contact data, not needed)."""
    if not author_email:
        return None
    first = author_email.split(",")[0]
    name = first.split("<", 1)[0].strip().strip('"')
    return name or None
