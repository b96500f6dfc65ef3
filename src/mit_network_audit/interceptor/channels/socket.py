"""The socket backstop: every TCP connect (and first UDP sendto) the process makes in Python.

Under an outer layer (an HTTP library, a mail session) a connect only enriches that layer's row
with the peer address.  A raw socket — code that bypasses every library we know — gets its own
``socket`` row, with the bytes sent and received on it, emitted when the socket is closed or
collected (or at exit).  Unix-domain sockets are not network traffic: only counted.
"""

from __future__ import annotations

import errno
import socket
import threading
import weakref

from .. import capture

NAME = "socket"
TARGET = None

# Sockets with a row of their own: id(sock) -> Call.  Byte counters only look here, so sockets
# owned by an outer layer cost one failed dict lookup per send/recv.
_tracked: dict[int, capture.Call] = {}
in_wrapper = threading.local()  # the audit hook skips connects our wrapper already saw


def _address(address):
    if isinstance(address, tuple) and len(address) >= 2:
        return address[0], address[1]
    return None, None


def _protocol(sock) -> str:
    try:
        return "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    except OSError:
        return "tcp"


def _enrich_peer(call, sock) -> None:
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
        if isinstance(peer, tuple):
            call.enrich(dest_ip=peer[0], dest_port=peer[1], src_ip=local[0], src_port=local[1])
    except (OSError, TypeError, IndexError):
        pass


def _forget(key, call) -> None:
    if _tracked.pop(key, None) is not None:
        capture.release(call)


def start_raw_row(sock, address, channel: str = NAME):
    """A row for a socket nobody owns; finished when the socket closes or is collected."""
    host, port = _address(address)
    call = capture.begin(channel, activate=False, protocol=_protocol(sock), host=str(host) if host else None,
                         port=port if isinstance(port, int) else None)
    if call is None:
        return None
    if isinstance(host, str):
        call.dest_ip, call.dest_port = host, port
    return call


def _track(sock, call) -> None:
    key = id(sock)
    _tracked[key] = call
    call.hold()
    weakref.finalize(sock, _forget, key, call)
    capture.end(call)  # the scope ends; the row waits for close (hold)


def install(patches) -> None:
    cls = socket.socket

    def make_connect(original, returns_errno=False):
        def connect(self, address):
            if not capture.runtime.active or capture.is_suppressed():
                return original(self, address)
            if self.family == getattr(socket, "AF_UNIX", None):
                capture.counters["socket.unix"] += 1
                return original(self, address)
            outer = capture.current()
            call = None if outer is not None else start_raw_row(self, address)
            in_wrapper.active = True
            try:
                result = original(self, address)
            except (BlockingIOError, InterruptedError):
                if call is not None:  # non-blocking connect in progress (asyncio): still ours
                    _track(self, call)
                raise
            except BaseException as exc:
                if call is not None:
                    capture.end(call, exc)
                raise
            finally:
                in_wrapper.active = False
            target = outer if outer is not None else call
            if target is not None:
                _enrich_peer(target, self)
            if call is not None:
                if returns_errno and result not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                    call.outcome = "error"
                    call.error = f"OSError.{errno.errorcode.get(result, result)}"
                    capture.end(call)
                else:
                    _track(self, call)
            return result
        return connect

    def make_counting(original, sent: bool):
        def method(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            call = _tracked.get(id(self))
            if call is not None:
                n = result if isinstance(result, int) else (len(result) if isinstance(result, bytes) else
                                                            len(result[0]) if isinstance(result, tuple) else 0)
                if sent:
                    call.req_bytes += n if result is not None else len(args[0]) if args else 0
                else:
                    call.resp_bytes += n
            return result
        return method

    def make_sendall(original):
        def sendall(self, data, *args):
            result = original(self, data, *args)
            call = _tracked.get(id(self))
            if call is not None:
                call.req_bytes += len(data)
            return result
        return sendall

    def make_sendto(original):
        def sendto(self, data, *args):
            key = id(self)
            if key not in _tracked and capture.runtime.active and not capture.is_suppressed() \
                    and capture.current() is None and self.family != getattr(socket, "AF_UNIX", None):
                call = start_raw_row(self, args[-1] if args else None)
                if call is not None:
                    _track(self, call)
            in_wrapper.active = True
            try:
                n = original(self, data, *args)
            finally:
                in_wrapper.active = False
            call = _tracked.get(key)
            if call is not None:
                call.req_bytes += n
            return n
        return sendto

    def make_close(original):
        def close(self):
            call = _tracked.pop(id(self), None)
            try:
                return original(self)
            finally:
                if call is not None:
                    capture.release(call)
        return close

    patches.wrap(cls, "connect", make_connect)
    patches.wrap(cls, "connect_ex", lambda o: make_connect(o, returns_errno=True))
    patches.wrap(cls, "send", lambda o: make_counting(o, sent=True))
    patches.wrap(cls, "sendall", make_sendall)
    patches.wrap(cls, "sendto", make_sendto)
    patches.wrap(cls, "recv", lambda o: make_counting(o, sent=False))
    patches.wrap(cls, "recv_into", lambda o: make_counting(o, sent=False))
    patches.wrap(cls, "recvfrom", lambda o: make_counting(o, sent=False))
    patches.wrap(cls, "close", make_close)
    patches.wrap(cls, "detach", make_close)


def uninstall() -> None:
    for key, call in list(_tracked.items()):
        _forget(key, call)
