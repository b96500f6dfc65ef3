"""The forensic body tap: buffers request bodies of in-scope calls in memory, hands them over, forgets.

Installed as ``capture.runtime.body_tap`` only while forensic capture is switched on (see
``runner.forensic_boot``); when it is None the interceptor pays nothing.  Standard library only:
the tap never touches a disk or a database.  It keeps at most ``max_bytes`` of each call's request
body in ``call.tap_state`` (a ``truncated`` flag says there was more), and when the row is built
(``finish``) it either hands the bytes to ``deliver`` — the journal side encrypts and stores them —
or drops them because the call is out of scope.

Scope: a call is in scope when its owner (``event.addon``) is in ``addons`` *and* its host is in
``hosts``; an empty list does not restrict.  With both lists empty nothing is in scope: capture of
every call must be asked for explicitly with ``*``.  Internal rows are never in scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class _Buffer:
    __slots__ = ("data", "seen", "truncated", "skip")

    def __init__(self) -> None:
        self.data = bytearray()
        self.seen = 0
        self.truncated = False
        self.skip = False


def _norm(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values or () if v and v.strip())


class BodyTap:
    """``feed(call, chunk)`` / ``finish(call, event)`` as ``capture.Call`` expects them."""

    def __init__(
        self,
        deliver: Callable[[str, int, bytes, int, bool], None],
        *,
        addons: Iterable[str] = (),
        hosts: Iterable[str] = (),
        max_bytes: int = 65536,
    ) -> None:
        self.deliver = deliver
        self.counters = {"delivered": 0, "out_of_scope": 0, "truncated": 0}
        self.configure(addons=addons, hosts=hosts, max_bytes=max_bytes)

    def configure(
        self, *, addons: Iterable[str] = (), hosts: Iterable[str] = (), max_bytes: int = 65536
    ) -> None:
        """Re-scope a live tap (calls already in flight are judged by the new scope when they end)."""
        addons, hosts = _norm(addons), _norm(hosts)
        self._all_addons = not addons or "*" in addons
        self._all_hosts = not hosts or "*" in hosts
        self._nothing = not addons and not hosts
        self.addons, self.hosts = addons, hosts
        self.max_bytes = max(0, int(max_bytes))

    # -- scope ----------------------------------------------------------------------------------
    def _host_ok(self, host) -> bool:
        return self._all_hosts or (host is not None and str(host).lower() in self.hosts)

    def in_scope(self, event) -> bool:
        if self._nothing or getattr(event, "direction", None) == "internal":
            return False
        addon = getattr(event, "addon", None)
        if not self._all_addons and (addon is None or addon.lower() not in self.addons):
            return False
        return self._host_ok(getattr(event, "host", None))

    # -- the hook ---------------------------------------------------------------------------------
    def feed(self, call, chunk) -> None:
        buf = call.tap_state
        if buf is None:
            buf = call.tap_state = _Buffer()
            # Early out (no copy at all) when the host is already known to be out of scope.
            if self._nothing or (call.host is not None and not self._host_ok(call.host)):
                buf.skip = True
        if buf.skip:
            return
        data = (
            chunk
            if isinstance(chunk, (bytes, bytearray, memoryview))
            else str(chunk).encode("utf-8", "replace")
        )
        n = len(data)
        buf.seen += n
        room = self.max_bytes - len(buf.data)
        if room > 0:
            buf.data += data[:room] if n > room else data
        if n > room:
            buf.truncated = True

    def finish(self, call, event) -> None:
        buf, call.tap_state = call.tap_state, None
        if buf is None:
            return
        if buf.skip or not self.in_scope(event):
            self.counters["out_of_scope"] += 1
            buf.data.clear()
            return
        if buf.truncated:
            self.counters["truncated"] += 1
        self.deliver(event.event_id, event.logged_at_us, bytes(buf.data), buf.seen, buf.truncated)
        buf.data.clear()
        self.counters["delivered"] += 1
