"""Forensic body capture inside an audited process: install the body tap only while it is switched on.

``start(dsn)`` follows the settings (``forensic.enabled``, scope, size cap) through
``runner.live_settings`` (read now, then ``on_change``), so an officer's switch reaches a running
process within the live-settings poll period (``$MNA_SETTINGS_POLL_S``, default 2 s) without a
restart.  While capture is off, ``capture.runtime.body_tap`` stays None:
the interceptor's hot path pays one attribute read and nothing else.  Everything here is fail-open
for the audited program: a failure is counted in ``capture.stats()`` and capture stays off.
"""

from __future__ import annotations

import os
import threading

from ..interceptor import capture

_state: dict = {"dsn": None, "tap": None, "writer": None, "pid": None, "subscribed": False, "poller": None}
POLL_ENV = "MNA_FORENSIC_POLL"  # fallback poller's period, only when runner.live_settings is unusable
_lock = threading.RLock()
_poll_wake = threading.Event()


def _read_settings(dsn: str) -> dict:
    from ..journal import forensic, open_store

    with capture.suppressed():
        store = open_store(dsn)
        try:
            return forensic.current_settings(store)
        finally:
            store.close()


def apply(settings: dict) -> None:
    """Switch the tap on, re-scope it, or switch it off, from a settings dict (``get_settings`` keys)."""
    with _lock:
        try:
            _apply(settings)
        except Exception:
            capture.counters["errors.forensic_boot"] += 1


def _apply(settings: dict) -> None:
    from ..interceptor.forensic_tap import BodyTap
    from ..journal import forensic

    scope = forensic.scope_from_settings(settings)
    _state["scope"] = scope
    tap = _state["tap"]
    if not scope.enabled:
        if tap is not None:
            capture.runtime.body_tap = None
            _state["tap"] = None
            writer, _state["writer"] = _state["writer"], None
            if writer is not None:
                writer.close()
        return
    if tap is not None and _state["pid"] == os.getpid():
        tap.configure(addons=scope.addons, hosts=scope.hosts, max_bytes=scope.max_bytes)
        if _state["writer"] is not None:
            _state["writer"].retention_days = scope.retention_days
        return
    key = forensic.load_public_key(required=False)  # storing needs only the public key
    if key is None:
        # Capture asked for, but no key outside the database: nothing is stored, and it is counted.
        capture.counters["errors.forensic_no_key"] += 1
        return
    writer = forensic.BodyWriter(_state["dsn"], key, retention_days=scope.retention_days)
    tap = BodyTap(writer.submit, addons=scope.addons, hosts=scope.hosts, max_bytes=scope.max_bytes)
    _state.update(tap=tap, writer=writer, pid=os.getpid())
    capture.runtime.body_tap = tap


def start(dsn: str) -> None:
    """Called by ``boot.start`` after the interceptor is installed.  Never raises.

    Follows the settings through ``runner.live_settings`` (one poller per process, which also
    applies disabled channels): ``live_settings.start(dsn)`` reads them now and ``on_change(apply)``
    hands them to ``apply`` at once and at every later change (a journal that is down at start: at
    its first successful read).  Only without that module (or if it raises) do a read here and the
    fallback poller (``$MNA_FORENSIC_POLL`` seconds) do the same."""
    _state["dsn"] = dsn
    _state["scope"] = None
    _state["sink"] = capture.runtime.sink  # the poller follows this installation only
    try:
        from . import live_settings
    except ImportError:
        live_settings = None
    if live_settings is not None:
        try:
            live_settings.start(dsn)
            settings = live_settings.current()  # None: the journal could not be read (yet)
            if not _state["subscribed"]:
                # applies the current settings now (if read), then each change — including the first
                # successful read of a journal that was down at start (capture stays off until then)
                live_settings.on_change(apply)
                _state["subscribed"] = True
            elif settings is not None and _state["scope"] is None:  # unchanged, so not applied above
                apply(settings)
            return
        except Exception:
            capture.counters["errors.forensic_boot"] += 1
    try:
        apply(_read_settings(dsn))
    except Exception:
        capture.counters["errors.forensic_boot"] += 1
    _start_poller(float(os.environ.get(POLL_ENV, "5") or 0))


def _start_poller(interval: float) -> None:
    """Fallback when ``runner.live_settings`` is not available: re-read the forensic settings every
    ``interval`` seconds on one kept connection and apply a change.  0 disables it."""
    with _lock:
        _state["poll_interval"] = interval
        if _state["poller"] is not None and _state["poller"].is_alive():
            _poll_wake.set()  # the running poller picks up the new interval (0: it stops)
            return
        if interval <= 0:
            return

        def launch():
            if not capture.runtime.active:
                return
            thread = threading.Thread(
                target=_poll, args=(_state.get("scope"),), daemon=True, name="mna-forensic-settings"
            )
            _state["poller"] = thread
            thread.start()

        launch()
        if not _state.get("fork_hook"):
            os.register_at_fork(after_in_child=launch)
            _state["fork_hook"] = True


def _poll(last) -> None:
    from ..journal import forensic, open_store

    capture.suppress_current_thread()
    store, opened_for = None, None
    try:
        while True:
            _poll_wake.wait(max(0.0, _state.get("poll_interval", 0)))
            _poll_wake.clear()
            if not capture.runtime.active or _state.get("poll_interval", 0) <= 0:
                return
            if capture.runtime.sink is not _state.get("sink"):
                return  # the interceptor was re-installed by someone else: not ours to follow
            dsn = _state["dsn"]
            try:
                if store is None or opened_for != dsn:
                    if store is not None:
                        store.close()
                    if opened_for is not None:  # a new start() elsewhere in this process: its scope
                        last = _state.get("scope")
                    store, opened_for = open_store(dsn, create=False), dsn
                settings = forensic.current_settings(store)
            except Exception:
                capture.counters["errors.forensic_poll"] += 1
                store = None
                continue
            scope = forensic.scope_from_settings(settings)
            if scope != last:
                apply(settings)
            last = scope
    finally:
        if store is not None:
            try:
                store.close()
            except Exception:
                pass


def stop() -> None:
    apply({"forensic.enabled": False})
