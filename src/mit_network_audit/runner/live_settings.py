"""Live settings inside an audited process: a change reaches every running process without a restart.

``start(dsn)`` reads the settings once (synchronously, so the first call is already captured — or
not — as the settings say) and starts one daemon poller thread per process.  Every
``$MNA_SETTINGS_POLL_S`` seconds (default 2) the poller reads one meta value, the ``settings_version``
token that every ``journal.settings.set_setting`` replaces; only when it changed does it read the
settings (one more query) and hand the full dict to every ``on_change`` callback.  A full read every
``FULL_READ_EVERY`` polls also catches a value written without a new token.

* The poller never audits itself: its thread is suppressed (``capture.suppress_current_thread``).
* Fail-open: a database that is down keeps the last settings (the failure is counted in
  ``capture.stats()``, the connection is re-opened at the next poll); a callback that raises is
  counted and the others still run.
* Fork-safe: a forked child (prefork servers) drops the parent's connection and starts its own
  poller thread.

``follow_disabled_channels(base)`` subscribes the interceptor itself: ``capture.disabled_channels``
(plus ``base``, the channels disabled at launch with ``run --disable``) becomes the interceptor's
per-channel switch, which ``capture.begin`` checks on every call; each change also writes a health
row (``heartbeat``) naming the channels now disabled, so the Trust Report sees it at once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable

from ..interceptor import capture

POLL_ENV = "MNA_SETTINGS_POLL_S"
DEFAULT_POLL_S = 2.0
FULL_READ_EVERY = 15  # polls between full reads (a value written without a new version token)

_lock = threading.RLock()
_callbacks: list[Callable[[dict], None]] = []
_state: dict = {
    "dsn": None,
    "settings": None,  # the last settings read (dict), or None before the first successful read
    "version": None,
    "thread": None,
    "pid": None,
    "store": None,
    "store_pid": None,
    "fork_hook": False,
    "base_disabled": frozenset(),
    "following": False,
}
_wake = threading.Event()
_orphans: list = []  # stores inherited through fork: kept referenced, never closed by the child
counters = {"polls": 0, "reads": 0, "changes": 0, "errors": 0}


def poll_interval() -> float:
    try:
        return max(0.05, float(os.environ.get(POLL_ENV, "") or DEFAULT_POLL_S))
    except ValueError:
        return DEFAULT_POLL_S


def current() -> dict | None:
    """The settings this process runs with (None if they could never be read)."""
    settings = _state["settings"]
    return dict(settings) if settings is not None else None


def on_change(callback: Callable[[dict], None], *, now: bool = True) -> None:
    """Call ``callback(settings)`` with the full settings dict whenever they change (and once now,
    with the current settings, if they were read already and ``now``).  Registered once."""
    with _lock:
        if callback not in _callbacks:
            _callbacks.append(callback)
        settings = current()
    if settings is not None and now:
        _call(callback, settings)


def start(dsn: str) -> None:
    """Follow the settings of the journal at ``dsn`` in this process.  Idempotent; never raises."""
    try:
        with _lock:
            if dsn != _state["dsn"]:
                _drop_store()
                _state.update(dsn=dsn, version=None, settings=None)  # another journal's settings
            _read(full=True)
            _ensure_thread()
    except Exception:
        capture.counters["errors.live_settings"] += 1


def stop() -> None:
    """Stop following (the poller thread ends at its next wake-up)."""
    with _lock:
        _state["dsn"] = None
        _drop_store()
    _wake.set()


def refresh() -> bool:
    """Read now (outside the poll period); True if the settings changed.  For tests and callers that
    just changed a setting in this process."""
    with _lock:
        return _read(full=True)


# -- the poller -------------------------------------------------------------------------------------
def _ensure_thread() -> None:
    thread = _state["thread"]
    if thread is not None and thread.is_alive() and _state["pid"] == os.getpid():
        return
    thread = threading.Thread(target=_run, name="mna-live-settings", daemon=True)
    _state.update(thread=thread, pid=os.getpid())
    thread.start()
    if not _state["fork_hook"]:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _state["fork_hook"] = True


def _after_fork_in_child() -> None:
    global _lock, _wake
    _lock = threading.RLock()  # another thread of the parent may have held it at fork
    _wake = threading.Event()
    if _state["store"] is not None:
        _orphans.append(_state["store"])  # the parent's connection: closing it here would end the parent's
    _state.update(thread=None, pid=None, store=None, store_pid=None)
    if _state["dsn"] is not None:
        try:
            _ensure_thread()
        except Exception:
            capture.counters["errors.live_settings"] += 1


def _run() -> None:
    capture.suppress_current_thread()  # the auditor never audits itself
    polls = 0
    me = threading.current_thread()
    while True:
        _wake.wait(poll_interval())
        _wake.clear()
        if _state["thread"] is not me or _state["dsn"] is None or not capture.runtime.active:
            return  # replaced (a fork, a restart), stopped, or the interceptor was uninstalled
        polls += 1
        try:
            with _lock:
                _read(full=polls % FULL_READ_EVERY == 0)
        except Exception:
            capture.counters["errors.live_settings"] += 1


def _open():
    store = _state["store"]
    if store is not None and _state["store_pid"] == os.getpid():
        return store
    from ..journal import open_store

    store = open_store(_state["dsn"], create=False)
    _state.update(store=store, store_pid=os.getpid())
    return store


def _drop_store() -> None:
    store, pid = _state["store"], _state["store_pid"]
    _state.update(store=None, store_pid=None)
    if store is None:
        return
    if pid != os.getpid():
        _orphans.append(store)  # the parent's connection: never closed (nor collected) in a child
        return
    try:
        store.close()
    except Exception:
        pass


def _read(full: bool) -> bool:
    """One poll: the version token, then (if it moved, or ``full``) the settings.  Under ``_lock``.
    Returns True when the settings changed (callbacks were called).  Fail-open: keeps the last."""
    if _state["dsn"] is None:
        return False
    from ..journal import settings as journal_settings

    counters["polls"] += 1
    with capture.suppressed():
        try:
            store = _open()
            token = journal_settings.version(store)
            if not full and token == _state["version"] and _state["settings"] is not None:
                return False
            new = journal_settings.get_settings(store)
        except Exception:
            counters["errors"] += 1
            capture.counters["errors.live_settings_read"] += 1
            _drop_store()  # re-open at the next poll (a database that went away and came back)
            return False
    counters["reads"] += 1
    _state["version"] = token
    if new == _state["settings"]:
        return False
    _state["settings"] = new
    counters["changes"] += 1
    for callback in list(_callbacks):
        _call(callback, dict(new))
    return True


def _call(callback, settings: dict) -> None:
    try:
        with capture.suppressed():
            callback(settings)
    except Exception:
        capture.counters["errors.live_settings_callback"] += 1


# -- disabled channels ----------------------------------------------------------------------------
def follow_disabled_channels(base=()) -> None:
    """Make ``capture.disabled_channels`` (plus ``base``) the interceptor's disabled set, live.

    The current settings apply at once and silently (the caller's start row names them); every later
    change also writes a ``heartbeat`` health row with the channels now disabled."""
    _state["base_disabled"] = frozenset(c.strip() for c in base if c and c.strip())
    with _lock:
        first = not _state["following"]
        _state["following"] = True
    if first:
        on_change(_apply_disabled, now=False)
    settings = current()
    if settings is not None:
        _apply_disabled(settings, announce=False)


def _apply_disabled(settings: dict, announce: bool = True) -> None:
    wanted = frozenset(settings.get("capture.disabled_channels") or ()) | _state["base_disabled"]
    if wanted == capture.runtime.disabled:
        return
    capture.set_disabled(wanted)
    if announce and capture.runtime.active:
        from .. import interceptor
        from ..interceptor.event import internal_event

        detail = json.dumps(
            {"channels": sorted(interceptor.installed_channels()), "disabled": sorted(wanted),
             "reason": "settings"},
            sort_keys=True,
        )
        capture.emit(internal_event("heartbeat", detail=detail))
