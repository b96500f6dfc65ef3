"""The capture core: call scopes, ownership of rows, suppression, fail-open accounting.

A channel wraps a library function like this::

    call = capture.begin("requests", method=m, url=u, req_headers=h)
    if call is None:              # an outer layer owns this call, we are suppressed or disabled
        return original(*a, **kw)
    try:
        result = original(*a, **kw)
    except BaseException as exc:
        capture.end(call, exc)
        raise
    call.status = result.status
    capture.end(call)
    return result

Rules (DESIGN §2): the *outermost* layer that sees a call owns its row (``begin`` returns None
to inner layers, which may enrich the owner through ``capture.current()``); nothing here ever
raises into the audited program; every swallowed failure is counted in ``stats()``.
State lives in context variables, so threads and asyncio tasks never see each other's calls.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable

# The call that currently owns the row in this thread / task, if any.
_active: contextvars.ContextVar[Call | None] = contextvars.ContextVar("mna_active_call", default=None)
# Set in code paths that must never be audited: the journal writer, the auditor's own I/O.
_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("mna_suppressed", default=False)

counters: Counter[str] = Counter()
_pending_lock = threading.Lock()
_pending: set[Call] = set()  # deferred calls not finished yet (streamed bodies), finished at exit


class Runtime:
    """What ``install()`` configured: the collaborators and the live switches."""

    active = False
    sink = None
    attributor = None
    redaction = None
    classifier = None
    disabled: frozenset[str] = frozenset()
    pipeline: tuple = ()
    # Forensic body capture, off (None) by default.  When set, an object with
    # ``feed(call, chunk)`` (request body bytes as they stream; it keeps its state in
    # ``call.tap_state``) and ``finish(call, event)`` (the row is built: store or drop the body).
    body_tap = None


runtime = Runtime()


class Call:
    """One logical network call in flight.  Holds raw values (URL, header values) in memory only:
    the pipeline turns them into the metadata-only NetEvent and the Call is dropped."""

    __slots__ = (
        "channel", "direction", "protocol", "method", "url", "host", "port", "path",
        "dest_ip", "dest_port", "src_ip", "src_port", "status", "outcome", "error",
        "req_bytes", "resp_bytes", "req_headers", "resp_headers", "owner", "detail",
        "started_at_us", "_t0", "_token", "_deferred", "_done", "_fingerprint", "verbs", "_holds", "_ended",
        "layers", "tap_state",
        "__weakref__",
    )

    def __init__(self, channel: str, direction: str) -> None:
        self.channel = channel
        self.direction = direction
        self.protocol = self.method = self.url = self.host = self.port = self.path = None
        self.dest_ip = self.dest_port = self.src_ip = self.src_port = None
        self.status = None
        self.outcome = "ok"
        self.error = None
        self.req_bytes = 0
        self.resp_bytes = 0
        self.req_headers = ()  # iterable of (name, value) pairs — values never leave memory
        self.resp_headers = ()
        self.owner = None
        self.detail = None
        self.verbs: list[str] | None = None
        self._fingerprint = None
        self._deferred = False
        self._done = False
        self._holds = 0  # open response bodies still streaming; the row waits for them
        self._ended = False
        self.layers: list[str] | None = None  # inner libraries that carried the call (for ``via``)
        self._token = None
        self.tap_state = None
        self.started_at_us = time.time_ns() // 1000
        self._t0 = time.perf_counter_ns()

    # -- enrichment helpers used by channels ------------------------------------------------
    def enrich(self, **fields) -> None:
        """Set fields that are still unknown; an outer layer's values win."""
        for key, value in fields.items():
            if value is not None and getattr(self, key, None) is None:
                setattr(self, key, value)

    def add_request_body(self, chunk) -> None:
        """Count (and fingerprint) request body bytes as they stream; the bytes are not kept."""
        try:
            n = len(chunk)
            self.req_bytes += n
            fp = self._fingerprint
            if fp is None:
                fp = self._fingerprint = _new_fingerprint(self)
            if fp is not None:
                fp.update(chunk if isinstance(chunk, (bytes, bytearray, memoryview)) else str(chunk).encode())
        except Exception:
            counters["errors.fingerprint"] += 1
        tap = runtime.body_tap
        if tap is not None:
            try:
                tap.feed(self, chunk)
            except Exception:
                counters["errors.body_tap"] += 1

    def add_response_bytes(self, n: int) -> None:
        self.resp_bytes += n

    def add_verb(self, verb: str) -> None:
        """Mail/FTP sessions: protocol verbs in order of first use, without repeats."""
        verbs = self.verbs
        if verbs is None:
            verbs = self.verbs = []
        verb = verb.upper()
        if verb not in verbs:
            verbs.append(verb)

    def add_layer(self, name: str) -> None:
        layers = self.layers
        if layers is None:
            self.layers = [name]
        elif name not in layers:
            layers.append(name)

    def defer(self) -> None:
        """The response body streams after the call returns: ``finish()`` emits the row later."""
        self._deferred = True
        with _pending_lock:
            _pending.add(self)

    def hold(self) -> None:
        """A response body is attached and may still stream: keep the row open until ``release``."""
        self._holds += 1
        if self._ended and not self._deferred:
            self.defer()


    def fingerprint_hex(self) -> str | None:
        fp = self._fingerprint
        if fp is None:
            fp = self._fingerprint = _new_fingerprint(self)
        return fp.hexdigest() if fp is not None else None


def release(call: Call) -> None:
    """A body attached with ``hold`` is finished (read to the end, closed or collected)."""
    try:
        call._holds -= 1
        if call._holds <= 0 and call._ended:
            finish(call)
    except Exception:
        counters["errors.capture"] += 1


def _new_fingerprint(call: Call):
    redaction = runtime.redaction
    if redaction is None or call.url is None:
        return None
    return redaction.fingerprint(call.method or "", call.url)


def is_suppressed() -> bool:
    return _suppressed.get()


class suppressed:
    """``with capture.suppressed():`` — nothing inside is audited (the auditor's own I/O)."""

    __slots__ = ("_token",)

    def __enter__(self):
        self._token = _suppressed.set(True)
        return self

    def __exit__(self, *exc):
        _suppressed.reset(self._token)
        return False


def suppress_current_thread() -> None:
    """For threads that only ever do the auditor's own work (the journal writer)."""
    _suppressed.set(True)


def current() -> Call | None:
    """The call owning the row here, for inner layers to enrich."""
    return _active.get()


def channel_enabled(channel: str) -> bool:
    return runtime.active and channel not in runtime.disabled and not _suppressed.get()


def begin(channel: str, direction: str = "outbound", *, frame=None, activate: bool = True,
          **fields) -> Call | None:
    """Open a call scope, or return None when an outer layer owns the call (or we must not audit).

    ``activate=False`` creates the call without making it current: for libraries whose logical
    call spans several entry points (http.client's request ... getresponse ... read), which
    then make it current only inside their own code with ``with capture.scope(call):``."""
    try:
        if not runtime.active or _suppressed.get() or channel in runtime.disabled:
            return None
        if _active.get() is not None:
            return None
        call = Call(channel, direction)
        for key, value in fields.items():
            setattr(call, key, value)
        attributor = runtime.attributor
        if attributor is not None and direction != "inbound":
            try:
                call.owner = attributor.attribute(frame if frame is not None else sys._getframe(1))
            except Exception:
                counters["errors.attribution"] += 1
        if activate:
            call._token = _active.set(call)
        return call
    except Exception:
        counters["errors.capture"] += 1
        return None


class scope:
    """Make an existing call current inside a block (inner layers then enrich it)."""

    __slots__ = ("_call", "_token")

    def __init__(self, call: Call | None) -> None:
        self._call = call
        self._token = None

    def __enter__(self):
        if self._call is not None:
            self._token = _active.set(self._call)
        return self._call

    def __exit__(self, *exc):
        if self._token is not None:
            try:
                _active.reset(self._token)
            except ValueError:
                _active.set(None)
        return False


def end(call: Call, exc: BaseException | None = None) -> None:
    """Close the scope opened by ``begin``; emit the row unless the call was deferred."""
    try:
        token, call._token = call._token, None
        if token is not None:
            try:
                _active.reset(token)
            except ValueError:  # ended in another context (a callback): just clear ours
                _active.set(None)
        call._ended = True
        if exc is not None:
            fail(call, exc)
        if call._holds > 0 and not call._deferred:
            call.defer()
        if not call._deferred:
            finish(call)
    except Exception:
        counters["errors.capture"] += 1


def fail(call: Call, exc: BaseException) -> None:
    call.outcome = "error"
    cls = type(exc)
    call.error = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def finish(call: Call) -> None:
    """Run the pipeline and hand the event to the sink, once.  Never raises."""
    if call._done:
        return
    call._done = True
    if call._deferred:
        with _pending_lock:
            _pending.discard(call)
    duration_ns = time.perf_counter_ns() - call._t0
    try:
        event = None
        ev: dict = {}
        for stage_name, stage in runtime.pipeline:
            try:
                stage(call, ev)
            except Exception:
                counters[f"errors.{stage_name}"] += 1
                _SAFE_DEFAULTS.get(stage_name, _noop)(ev)
        ev["duration_us"] = duration_ns // 1000
        from .event import NetEvent  # local: keeps import cycles impossible

        event = NetEvent(**ev)
    except Exception:
        counters["errors.pipeline"] += 1
        counters["dropped"] += 1
        return
    if call.tap_state is not None:
        tap = runtime.body_tap
        try:
            if tap is not None:
                tap.finish(call, event)
        except Exception:
            counters["errors.body_tap"] += 1
        call.tap_state = None
    emit(event)


def emit(event) -> None:
    sink = runtime.sink
    if sink is None:
        return
    try:
        sink.emit(event)
        counters["events"] += 1
    except Exception:
        counters["errors.sink"] += 1
        counters["dropped"] += 1


def finish_pending() -> None:
    """At exit (or uninstall): rows of streamed calls whose body was never fully read."""
    with _pending_lock:
        calls = list(_pending)
    for call in calls:
        finish(call)


def _noop(ev: dict) -> None:
    pass


def _redaction_failed(ev: dict) -> None:
    # Never let a raw value through when the policy broke: drop everything it would have judged.
    for key in ("path", "fingerprint"):
        ev[key] = None
    for key in ("query_keys", "req_headers", "resp_headers"):
        ev[key] = ()


_SAFE_DEFAULTS = {"redaction": _redaction_failed}


def stats() -> dict:
    """Counters: events emitted, dropped, and failures swallowed per stage."""
    snapshot = dict(counters)
    with _pending_lock:
        snapshot["pending"] = len(_pending)
    return snapshot


def reset_after_fork() -> None:
    _active.set(None)
    with _pending_lock:
        _pending.clear()


def set_disabled(channels: Iterable[str]) -> None:
    runtime.disabled = frozenset(c.strip() for c in channels if c and c.strip())
