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
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from . import event as _event_module
from . import process_counts as _process_counts
from .event import FIELD_NAMES, new_event_id
from .event import UnbuiltEvent as _UnbuiltEvent

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
    the pipeline turns them into the metadata-only NetEvent and the Call is dropped.

    Defaults live on the class: creating a call sets four attributes, not thirty (the hot path)."""

    protocol = method = url = host = port = path = None
    dest_ip = dest_port = src_ip = src_port = None
    status = None
    outcome = "ok"
    error = None
    req_bytes = 0
    resp_bytes = 0
    req_headers: Iterable = ()  # (name, value) pairs — values never leave memory
    resp_headers: Iterable = ()
    owner = None
    detail = None
    verbs: list[str] | None = None  # mail/FTP protocol verbs
    _fingerprint = None
    _deferred = False
    _done = False
    _holds = 0  # open response bodies still streaming; the row waits for them
    _ended = False
    layers: list[str] | None = None  # inner libraries that carried the call (for ``via``)
    _token = None
    tap_state = None
    _src_sock = None  # a socket whose local address is still to be read (see channels/socket.py)
    hopped = False  # ended early: a redirect's next hop began inside it (channels/urllib.py)
    inbound_peer = None  # an accepted connection's client address, until an HTTP layer claims it
    inbound_sock = None

    def __init__(self, channel: str, direction: str) -> None:
        self.channel = channel
        self.direction = direction
        self.started_at_us = _time_ns() // 1000
        self._t0 = _perf_ns()

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
        _pending.add(self)  # atomic under the GIL: no lock on the hot path

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


def discard(call: Call) -> None:
    """A call that will never be a row of its own (an inner layer's record covers it): done, not
    emitted, and counted as finished (a parent reading this process's counts sees no loss)."""
    if call._done:
        return
    call._done = True
    _flight[6] += 1  # H_FINISHED
    _pending.discard(call)


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


def enter_callers_code() -> contextvars.Token:
    """Before running the audited program's own code from inside a call — a body generator the
    library pulls, a file object it reads: no call is current there, so a call that code makes is a
    row of its own (a relay's download inside its upload), not an inner layer of ours whose bytes go
    to the upload.  Give the token back to ``leave_callers_code``."""
    return _active.set(None)


def leave_callers_code(token: contextvars.Token) -> None:
    try:
        _active.reset(token)
    except ValueError:  # resumed in another context: nothing of ours to put back there
        pass


def channel_enabled(channel: str) -> bool:
    return runtime.active and channel not in runtime.disabled and not _suppressed.get()


def begin(
    channel: str, direction: str = "outbound", *, frame=None, activate: bool = True, **fields
) -> Call | None:
    """Open a call scope, or return None when an outer layer owns the call (or we must not audit).

    ``activate=False`` creates the call without making it current: for libraries whose logical
    call spans several entry points (http.client's request ... getresponse ... read), which
    then make it current only inside their own code with ``with capture.scope(call):``."""
    try:
        rt = runtime
        if not rt.active or _active_get() is not None or _suppressed_get() or channel in rt.disabled:
            return None
        call = _object_new(Call)  # Call.__init__, inlined (one Python call less per call)
        call.channel = channel
        call.direction = direction
        call.started_at_us = _time_ns() // 1000
        call._t0 = _perf_ns()
        if fields:
            for key, value in fields.items():
                setattr(call, key, value)
        attributor = rt.attributor
        if attributor is not None and direction != "inbound":
            try:
                if frame is None:
                    try:
                        frame = _next(_resumer).f_back  # our caller: sys._getframe(1), no audit event
                    except ValueError:  # another thread is resuming it right now
                        frame = _getframe(1)
                call.owner = attributor.attribute(frame)
            except Exception:
                counters["errors.attribution"] += 1
        if activate:
            call._token = _active_set(call)
        _flight[5] += 1  # H_BEGUN: a parent reads it if this process dies (process_counts)
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
        token = call._token
        if token is not None:
            call._token = None
            try:
                _active.reset(token)
            except ValueError:  # ended in another context (a callback): just clear ours
                _active.set(None)
        call._ended = True
        if exc is not None:
            fail(call, exc)
        if call._deferred:
            return
        if call._holds > 0:  # a body still streams: the row waits for it (call.defer(), inlined)
            call._deferred = True
            _pending.add(call)
            return
        finish(call)
    except Exception:
        counters["errors.capture"] += 1


def end_hop(call: Call) -> None:
    """A library follows a redirect inside ``call`` (urllib, urllib3): this hop's row is complete now;
    the wrapper that began it sees ``hopped`` and takes nothing more from its own return."""
    call.hopped = True
    end(call)


def fail(call: Call, exc: BaseException) -> None:
    call.outcome = "error"
    cls = type(exc)
    call.error = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def finish(call: Call) -> None:
    """Hand the call's row to the sink, once.  Never raises.

    Only the raw values are taken here, on the calling thread (duration, capture time); the
    pipeline (redaction, classification, the NetEvent's fields) runs later, off the caller's
    path: the event is a ``PendingEvent`` built on first read — by the journal sink's writer
    thread, in batches (``stats()`` and a body tap build at once).  A background builder of our
    own was tried and dropped: on a 2-core machine its GIL hand-offs and cache pollution cost
    the calling thread more than building in place."""
    if call._done:
        return
    call._done = True
    _flight[6] += 1  # H_FINISHED
    if call._deferred:
        _pending.discard(call)
    try:
        event = _new_pending(_UnbuiltEvent)  # fields come later (UnbuiltEvent.__getattr__)
        _set_attr(
            event,
            "_src",
            (_build, call, _perf_ns() - call._t0, _time_ns() // 1000, runtime.pipeline, _pid[0]),
        )
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
    sink = runtime.sink
    if sink is None:
        return
    try:
        sink.emit(event)
        counters["events"] += 1
    except Exception:
        counters["errors.sink"] += 1
        counters["dropped"] += 1
    _unbuilt_append(event)  # bounded: stats() builds the recent ones so its error counters include them


def _build(call: Call, duration_ns: int, logged_at_us: int, pipeline, pid: int) -> dict:
    """The pipeline proper: a finished call's raw values -> NetEvent fields.  Never raises."""
    ev: dict = {}
    for stage_name, stage in pipeline:
        try:
            stage(call, ev)
        except Exception:
            counters[f"errors.{stage_name}"] += 1
            _SAFE_DEFAULTS.get(stage_name, _noop)(ev)
    if "event_id" not in ev:  # the base stage failed: a minimal row still says a call happened
        ev.update(
            event_id=_new_event_id(),
            started_at_us=call.started_at_us,
            direction=call.direction,
            channel=call.channel,
        )
    ev["logged_at_us"] = logged_at_us
    ev["duration_us"] = duration_ns // 1000
    ev["pid"] = pid
    sock = call._src_sock
    if sock is not None:  # a local address left for later by the socket layer (see channels/socket.py)
        call._src_sock = None
        if ev.get("src_ip") is None:
            try:
                local = sock.getsockname()
                ev["src_ip"], ev["src_port"] = local[0], local[1]
            except Exception:
                pass
    if not _EVENT_FIELDS.issuperset(ev):  # a stage wrote a field the schema does not have: drop it, count it
        counters["errors.pipeline"] += 1
        for key in [key for key in ev if key not in _EVENT_FIELDS]:
            del ev[key]
    return ev


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
    for call in list(_pending):  # list(set) is atomic under the GIL
        finish(call)


def build_pending() -> None:
    """Build every emitted event not built yet, here and now (``stats()`` does this first, so
    its error counters include the stages of every call made so far)."""
    while True:
        try:
            event = _unbuilt.popleft()
        except IndexError:
            return
        try:
            event._built_values()  # the pipeline runs; the slots stay for a reader to fill
        except Exception:
            counters["errors.pipeline"] += 1


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
    build_pending()
    snapshot = dict(counters)
    snapshot["pending"] = len(_pending)
    return snapshot


def reset_after_fork() -> None:
    global _flight, _resumer
    _flight = _process_counts.header()  # the page this child's parent reads (or a private one)
    _active.set(None)
    _pending.clear()
    _pid[0] = os.getpid()
    _resumer = _new_resumer()  # the parent may have forked while a thread was resuming it
    _unbuilt.clear()  # the parent's; a read in the child still builds them
    _event_module._build_lock = threading.RLock()  # another thread of the parent may have held it


def set_disabled(channels: Iterable[str]) -> None:
    runtime.disabled = frozenset(c.strip() for c in channels if c and c.strip())


# Hot-path aliases (a global load instead of an attribute lookup per call).
_active_get = _active.get
_active_set = _active.set
_suppressed_get = _suppressed.get
_getframe = sys._getframe
_next = next
_time_ns = time.time_ns
_perf_ns = time.perf_counter_ns
_pid = [os.getpid()]
# Calls begun / finished (slots H_BEGUN=5, H_FINISHED=6 of this process's page): see process_counts.
_flight = _process_counts.header()
# The most recent emitted PendingEvents (not necessarily built yet): stats() builds them first.
# Bounded, so a sink that drops events unread (a counter, a sampler) does not keep them alive.
_unbuilt: deque = deque(maxlen=1024)
_unbuilt_append = _unbuilt.append
_new_pending = _object_new = object.__new__
_set_attr = object.__setattr__
_new_event_id = new_event_id
_EVENT_FIELDS = frozenset(FIELD_NAMES)


def _resumers():
    """Yields the frame that resumed it: ``sys._getframe(1)`` without its audit event.

    ``sys._getframe`` raises a ``sys._getframe`` audit event (PEP 578): a call into every audit
    hook of the process, ~2.8k instructions, on every audited call.  A running generator's frame
    links back to whoever resumed it, and ``f_back`` raises no event; the generator's own frame is
    read once (that read is audited).  Two threads cannot resume one generator at once: the one
    that finds it running gets ValueError and falls back to ``sys._getframe``."""
    me = yield
    while True:
        yield me.f_back


def _new_resumer():
    gen = _resumers()
    next(gen)
    gen.send(gen.gi_frame)
    return gen


_resumer = _new_resumer()  # begin() reads its caller's frame through it
