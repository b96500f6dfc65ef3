"""NetEvent: one metadata-only row per logical network call (schema v1, DESIGN §3).

There is deliberately no body field: bodies may only be counted (``req_bytes``/``resp_bytes``)
and hashed (``fingerprint``).  Every value is a JSON scalar (str, int, bool, None) or a list of
str, so the canonical encoding of DESIGN §4 is plain ``json.dumps(sort_keys=True)``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter

SCHEMA_VERSION = 1

DIRECTIONS = ("inbound", "outbound", "internal")
DEST_CLASSES = ("vendor", "provider", "own", "local", "unknown")

# Internal rows (direction == "internal", channel == "audit") say what they are in ``method``.
INTERNAL_KINDS = (
    "gap",  # events lost (queue overflow, database down beyond the buffer); detail: {"lost": N, ...}
    "heartbeat",  # a process is alive and capturing; detail: channels enabled/disabled
    "tamper",  # a patch was removed or bypassed behind our back
    "settings",  # a setting changed: who, key, old -> new (never a secret value)
    "forensic_read",  # an officer read a captured body
    "anchor",  # retention vacuum cut point
    "checkpoint",  # a signed checkpoint was made
    "start",  # the auditor started in a process
    "stop",  # the process ended normally (a process without one that stops heart-beating went silent);
    # or, written by its parent for it, was killed by a signal: detail {"killed_by_signal": ..., ...}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetEvent:
    """One journal row's content, before chaining.  Field order is the schema's order."""

    v: int = SCHEMA_VERSION
    event_id: str
    logged_at_us: int
    started_at_us: int
    duration_us: int
    direction: str
    channel: str
    protocol: str | None = None
    method: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    query_keys: tuple[str, ...] = ()
    dest_ip: str | None = None
    dest_port: int | None = None
    src_ip: str | None = None
    src_port: int | None = None
    status: int | None = None
    outcome: str = "ok"
    error: str | None = None
    req_bytes: int = 0
    resp_bytes: int = 0
    req_headers: tuple[str, ...] = ()
    resp_headers: tuple[str, ...] = ()
    fingerprint: str | None = None
    addon: str | None = None
    addon_author: str | None = None
    call_site: str | None = None
    via: tuple[str, ...] = ()
    pid: int = 0
    hostname: str | None = None
    vendor_bound: bool = False
    component: str | None = None
    dest_class: str = "unknown"
    # Machine-readable facts of an internal row (a small JSON object as text), e.g. '{"lost": 12}'.
    # Never a secret, never a body.  Added to DESIGN §3 because gap/settings/tamper rows need it.
    detail: str | None = None

    def as_dict(self) -> dict:
        """Exactly the schema's fields; tuples become lists (JSON arrays)."""
        values = _field_values(self)
        out = dict(zip(FIELD_NAMES, values, strict=True))
        # C-level scans (this runs per row in the journal's writer, beside the audited program):
        # only the few tuple-valued fields get a Python step.
        for i in compress(_FIELD_INDEXES, map(isinstance, values, repeat(tuple))):
            out[FIELD_NAMES[i]] = list(values[i])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> NetEvent:
        kwargs = {}
        for name in FIELD_NAMES:
            if name in data:
                value = data[name]
                kwargs[name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(NetEvent))
_FIELD_INDEXES = range(len(FIELD_NAMES))
_field_values = attrgetter(*FIELD_NAMES)
_FIELD_SET = frozenset(FIELD_NAMES)
_set = object.__setattr__


class PendingEvent(NetEvent):
    """A NetEvent whose fields are computed on first use (DESIGN §2: capture stays cheap).

    The calling thread only records raw values (the ``Call``) in an ``UnbuiltEvent``; redaction,
    classification and the field-by-field build run when somebody first reads a field — in
    practice the journal's writer thread, in batches; ``capture.stats()`` builds the recent ones
    it still holds.  Field slots are unset until then, so a read falls through to
    ``UnbuiltEvent.__getattr__``, which builds every field once (under a lock) and then turns the
    object into a plain ``PendingEvent``: a class with a ``__getattr__`` sends *every* attribute
    read through a slower hook (~1.5k instructions a field instead of ~0.1k), so after the build
    reads cost what they cost on a NetEvent.  Everything that works on a NetEvent (``as_dict``,
    equality with a NetEvent, hashing, ``dataclasses.asdict/replace``, pickling) works on both."""

    __slots__ = ("_src",)

    def _materialize(self) -> None:
        with _build_lock:
            values = self._built_values()
            if values is None:
                return  # built already (or made whole by the dataclass __init__)
            # One C-level pass (map/deque) rather than a bytecode loop over every field.
            deque(map(_set, repeat(self), FIELD_NAMES, values), 0)
            _set(self, "_src", None)
            if type(self) is UnbuiltEvent:
                _set(self, "__class__", PendingEvent)  # same layout; drops the __getattr__ hook

    def _built_values(self) -> _Values | None:
        """The field values in FIELD_NAMES order, built once and kept in ``_src`` (the slots stay
        unset); None once the slots hold them."""
        with _build_lock:
            try:
                src = object.__getattribute__(self, "_src")
            except AttributeError:
                return None
            if src is None or type(src) is _Values:
                return src
            try:
                fields = src[0](*src[1:])
            except Exception:  # the builder never raises; belt and braces: a minimal valid row
                fields = {
                    "event_id": new_event_id(),
                    "logged_at_us": 0,
                    "started_at_us": 0,
                    "duration_us": 0,
                    "direction": "outbound",
                    "channel": "unknown",
                }
            values = _Values(map(fields.get, FIELD_NAMES, _DEFAULT_VALUES))
            _set(self, "_src", values)
            return values

    def __eq__(self, other):
        if isinstance(other, NetEvent):
            return all(getattr(self, n) == getattr(other, n) for n in FIELD_NAMES)
        return NotImplemented

    def __hash__(self):
        return hash(tuple(getattr(self, n) for n in FIELD_NAMES))

    def __repr__(self):
        return "NetEvent(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in FIELD_NAMES) + ")"

    def __reduce__(self):
        return (_rebuild, (tuple(getattr(self, n) for n in FIELD_NAMES),))


class _Values(tuple):
    """A PendingEvent's built field values, held in ``_src`` until (if ever) they go into its slots."""

    __slots__ = ()


def field_values(event: NetEvent) -> tuple:
    """Every field's value in FIELD_NAMES order.  An event not built yet is built *without* copying
    its values into its slots: the journal's writer reads each event once, and filling 36 slots
    first (~4 µs here) costs more than the read itself.  A later attribute read still works (it
    fills the slots from the same values)."""
    if type(event) is UnbuiltEvent:
        values = event._built_values()
        if values is not None:
            return values
    return _field_values(event)


class UnbuiltEvent(PendingEvent):
    """A captured call's event before its fields are built (what ``capture.finish`` emits)."""

    __slots__ = ()

    def __getattr__(self, name):
        if name not in _FIELD_SET:
            raise AttributeError(name)
        self._materialize()
        return object.__getattribute__(self, name)


def _rebuild(values) -> NetEvent:
    return NetEvent(**dict(zip(FIELD_NAMES, values, strict=True)))


def pending_event(builder, *args) -> PendingEvent:
    """A PendingEvent whose fields ``builder(*args)`` returns (a dict of NetEvent fields)."""
    ev = object.__new__(UnbuiltEvent)
    _set(ev, "_src", (builder, *args))
    return ev


def _default_of(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    return None


_DEFAULT_VALUES: tuple = tuple(_default_of(f) for f in dataclasses.fields(NetEvent))
_build_lock = threading.RLock()
LIST_FIELDS = frozenset({"query_keys", "req_headers", "resp_headers", "via"})
INT_FIELDS = frozenset(
    {
        "v",
        "logged_at_us",
        "started_at_us",
        "duration_us",
        "port",
        "dest_port",
        "src_port",
        "status",
        "req_bytes",
        "resp_bytes",
        "pid",
    }
)
BOOL_FIELDS = frozenset({"vendor_bound"})


def now_us() -> int:
    return time.time_ns() // 1000


def new_event_id() -> str:
    """128 bits, hex: 48 bits of Unix time in milliseconds, then 80 random bits.

    As unique as a random id (80 random bits per millisecond), but ids made close in time sort close
    together, so the journal's unique index on event_id takes each new row at its right-hand edge
    instead of on a random page (SQLite raw inserts 1.2x faster, docs/benchmarks.md).
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


_HOSTNAME = socket.gethostname()


def internal_event(kind: str, detail: str | None = None, **fields) -> NetEvent:
    """An ``internal`` row: the auditor's own facts (gaps, settings changes, heartbeats, ...)."""
    ts = now_us()
    base = dict(
        event_id=new_event_id(),
        logged_at_us=ts,
        started_at_us=ts,
        duration_us=0,
        direction="internal",
        channel="audit",
        protocol=None,
        method=kind,
        pid=os.getpid(),
        hostname=_HOSTNAME,
        dest_class="local",
        addon="mit_network_audit",
        detail=detail,
    )
    base.update(fields)
    return NetEvent(**base)
