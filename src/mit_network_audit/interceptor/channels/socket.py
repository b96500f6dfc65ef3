"""The socket backstop: every TCP connect (and first UDP sendto) the process makes in Python, and
every TCP connection it accepts.

Under an outer layer (an HTTP library, a mail session) a connect only enriches that layer's row
with the peer address.  A raw socket — code that bypasses every library we know — gets its own
``socket`` row, with the bytes sent and received on it, emitted when the socket is closed or
collected (or at exit).  Unix-domain sockets are not network traffic: only counted.

Inbound the same way: a connection ``accept()`` returns gets an ``inbound`` ``socket`` row (client
address, local address, bytes both ways), owned by the module that made the socket listen — a raw
TCP server, or a listener a module opened for itself, is seen like any other call.  A connection
that carries requests an inbound HTTP layer records (the WSGI/ASGI middleware) is that layer's: its
first request claims the connection (``claim_inbound``, by the client's address) and the
connection's own row is dropped, so a request served is one row, as outbound.
"""

from __future__ import annotations

import _socket
import errno
import inspect
import socket
import sys
import threading
import types
import weakref

from .. import capture

NAME = "socket"
TARGET = None

# Sockets with a row of their own: id(sock) -> Call.  Byte counters only look here, so sockets
# owned by an outer layer cost one failed dict lookup per send/recv.
_tracked: dict[int, capture.Call] = {}
in_wrapper = threading.local()  # the audit hook skips connects our wrapper already saw
AF_UNIX = getattr(socket, "AF_UNIX", None)
_SO_ERROR = (socket.SOL_SOCKET, socket.SO_ERROR)


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


_numeric: dict = {}  # host string -> True if it is an IP address in canonical form


def _is_numeric(host) -> bool:
    known = _numeric.get(host)
    if known is None:
        known = False
        if isinstance(host, str):
            for family in (socket.AF_INET, socket.AF_INET6):
                try:
                    known = socket.inet_ntop(family, socket.inet_pton(family, host)) == host
                except (OSError, ValueError):
                    continue
                break
        if len(_numeric) < 4096:
            _numeric[host] = known
    return known


def _enrich_connected(call, sock, address) -> None:
    """Peer and local address after a successful connect.  The peer is the connect() argument
    when that is a numeric address (what getpeername() would return: no syscall); only the
    local address needs one (getsockname)."""
    try:
        host = address[0]
        if _is_numeric(host):
            if call.dest_ip is None:
                call.dest_ip, call.dest_port = host, address[1]
            if call.src_ip is None:
                local = sock.getsockname()
                call.src_ip, call.src_port = local[0], local[1]
        else:
            _enrich_peer(call, sock)
    except (OSError, TypeError, IndexError):
        pass


def count(call, n: int, sent: bool) -> None:
    """Bytes sent or received on a tracked socket.  A request is what the other side sends: an
    accepted connection's received bytes are its request, a connected one's sent bytes."""
    if sent is (call.inbound_peer is None):
        call.req_bytes += n
    else:
        call.resp_bytes += n


def release(call) -> None:
    """A tracked socket closed: its row is finished (an accepted one is no longer claimable)."""
    if call.inbound_peer is not None and _inbound.get(call.inbound_peer) is call:
        del _inbound[call.inbound_peer]
    capture.release(call)


def _forget(key, call) -> None:
    """``call``'s socket is gone (collected, uninstall): release its row — if the socket still holds it."""
    if _tracked.get(key) is call and _tracked.pop(key, None) is call:
        release(call)


# -- inbound ---------------------------------------------------------------------------------------
# Accepted connections not claimed yet: (client ip, client port) -> Call.  The Call keeps a weak
# reference to its socket (to stop counting once claimed) and the local port (the fallback claim).
_inbound: dict[tuple, capture.Call] = {}
# Listening sockets -> (the Owner of the code that made them listen, their local address unless it is
# a wildcard).  The owner: an asyncio server accepts from the event loop's frames, which name no
# module.  The address: a connection to a listener bound to one address needs no getsockname().
_listeners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_INET = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))


def _attribute(frame):
    attributor = capture.runtime.attributor
    if attributor is None or frame is None:
        return None
    try:
        return attributor.attribute(frame)
    except Exception:
        capture.counters["errors.attribution"] += 1
        return None


def start_inbound_row(listener, conn, address, frame) -> None:
    """A row for a connection ``accept()`` returned; finished when it closes, unless claimed."""
    try:
        family = conn.family
    except OSError:
        return
    if family not in _INET:
        capture.counters["socket.unix"] += 1
        return
    call = capture.begin(NAME, "inbound", activate=False, protocol="tcp")
    if call is None:
        return
    peer_ip, peer_port = _address(address)
    call.src_ip, call.src_port = peer_ip, peer_port
    owner, local = _listeners.get(listener, (None, None))
    try:
        local = local or conn.getsockname()
        call.dest_ip = call.host = local[0]
        call.dest_port = call.port = local[1]
    except (OSError, TypeError, IndexError):
        pass
    call.owner = owner if owner is not None else _attribute(frame)
    call.inbound_peer = (peer_ip, peer_port)
    call.inbound_sock = weakref.ref(conn)
    _inbound[call.inbound_peer] = call  # bounded by the open connections: close, __del__ or a claim removes it
    _track(conn, call)


def claim_inbound(peer_ip, peer_port, local_port=None) -> None:
    """An inbound HTTP layer serves a request that arrived from (peer_ip, peer_port): the accepted
    connection's row, if it has one, is that layer's now and is dropped.  Without the client's port
    (wsgiref's environ has none) the oldest unclaimed connection from that address to ``local_port``
    is taken.  Never raises."""
    try:
        call = _inbound.pop((peer_ip, peer_port), None) if peer_port else None
        if call is None and peer_ip and local_port and not peer_port:
            for key, candidate in list(_inbound.items()):
                if key[0] == peer_ip and candidate.dest_port == local_port:
                    call = _inbound.pop(key, None)
                    break
        if call is None:
            return
        capture.discard(call)
        sock = call.inbound_sock()
        cls = type(sock)
        if sock is not None and cls in _counting_classes.values():
            _tracked.pop(id(sock), None)
            sock.__class__ = cls.__mro__[1]  # back to its own class: send/recv at C speed again
    except Exception:
        capture.counters["errors.capture"] += 1


def start_raw_row(sock, address, channel: str = NAME):
    """A row for a socket nobody owns; finished when the socket closes or is collected."""
    host, port = _address(address)
    call = capture.begin(
        channel,
        activate=False,
        protocol=_protocol(sock),
        host=str(host) if host else None,
        port=port if isinstance(port, int) else None,
    )
    if call is None:
        return None
    if isinstance(host, str):
        call.dest_ip, call.dest_port = host, port
    return call


def _track(sock, call) -> None:
    key = id(sock)
    previous = _tracked.pop(key, None)
    if previous is not None:  # connected again (a UDP socket to another peer): the earlier row is complete
        release(previous)
    _tracked[key] = call
    call.hold()
    if not _count_bytes_of(sock):  # a counting class finishes the row when collected (its __del__)
        weakref.finalize(sock, _forget, key, call)
    capture.end(call)  # the scope ends; the row waits for close (hold)


# Byte counting.  Only sockets with a row of their own count their bytes, so only they pay for
# it: such a socket's class is switched to a counting subclass of its own class (same layout, same
# repr), made once per class.  Every other socket — those under an HTTP/mail owner, the journal's,
# a server's — keeps its class and runs send/recv at C speed, without a Python wrapper.
_counting_classes: dict[type, type] = {}


def _count_bytes_of(sock) -> bool:
    """Switch the socket to its counting class; False if it cannot be (the caller then needs a
    weakref.finalize to finish the row when the socket is collected)."""
    cls = type(sock)
    if cls in _counting_classes.values():
        return True
    try:
        counting = _counting_classes.get(cls)
        if counting is None:
            counting = _counting_classes[cls] = _counting_class(cls)
            share_multiprocessing_reducers()
        sock.__class__ = counting
        return True
    except Exception:  # an exotic socket class: the row still comes, without byte counts
        capture.counters["errors.socket_counting"] += 1
        return False


def share_multiprocessing_reducers() -> None:
    """multiprocessing pickles a socket (a ``Queue.put``, a worker's arguments) with a reducer it
    looks up by the socket's *exact* class: a counting class gets its base's, or a socket with a row
    of its own could not be handed to a worker any more (``TypeError: cannot pickle 'socket'``).
    Called when a counting class is made and when multiprocessing is loaded (channels/mp_flush.py)."""
    reduction = sys.modules.get("multiprocessing.reduction")
    try:
        reducers = reduction.ForkingPickler._extra_reducers
        for base, counting in list(_counting_classes.items()):
            if base in reducers and counting not in reducers:
                reducers[counting] = reducers[base]
    except Exception:  # not loaded (AttributeError on None), or not the multiprocessing we know
        pass


def _counting_class(base: type) -> type:
    def counting(name: str, sent: bool):
        original = getattr(base, name)

        def method(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            call = _tracked.get(id(self))
            if call is not None:
                n = (
                    result
                    if isinstance(result, int)
                    else (
                        len(result)
                        if isinstance(result, bytes)
                        else len(result[0])
                        if isinstance(result, tuple)
                        else 0
                    )
                )
                if sent and result is None:
                    n = len(args[0]) if args else 0
                count(call, n, sent)
            return result

        method.__name__ = method.__qualname__ = name
        return method

    def sendall_counting():
        original = base.sendall

        def sendall(self, data, *args):
            result = original(self, data, *args)
            call = _tracked.get(id(self))
            if call is not None:
                count(call, len(data), True)
            return result

        return sendall

    def closing(name: str):
        original = getattr(base, name)

        def close(self):
            call = _tracked.pop(id(self), None)
            try:
                return original(self)
            finally:
                if call is not None:
                    release(call)

        close.__name__ = close.__qualname__ = name
        return close

    def getsockopt_watching():
        # A non-blocking connect (asyncio, selectors) has its outcome read as SO_ERROR once the socket
        # is writable: an error there is the connect's failure (the row said "ok" for a refused one).
        original = base.getsockopt

        def getsockopt(self, *args):
            result = original(self, *args)
            if args[:2] == _SO_ERROR and isinstance(result, int):
                call = _tracked.get(id(self))
                if call is None:
                    pass
                elif not result:  # connected: now the local address is known
                    if call.src_ip is None:
                        _enrich_peer(call, self)
                elif call.outcome == "ok":
                    capture.fail(call, OSError(result, ""))  # ECONNREFUSED -> ConnectionRefusedError, as connect() raises
            return result

        return getsockopt

    base_finalizer = getattr(base, "__del__", None)  # _socket.socket's: it closes a forgotten fd

    def collected(self):
        # A socket dropped without close(): its row is finished now (a weakref.finalize per socket
        # cost ~5 us at creation and again when called, on every raw and accepted socket).
        try:
            call = _tracked.pop(id(self), None)
            if call is not None:
                release(call)
        except Exception:
            pass
        finally:
            if base_finalizer is not None:
                base_finalizer(self)

    namespace = {
        "__slots__": (),
        "__del__": collected,
        "getsockopt": getsockopt_watching(),
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "send": counting("send", True),
        "recv": counting("recv", False),
        "recv_into": counting("recv_into", False),
        "recvfrom": counting("recvfrom", False),
        "close": closing("close"),
        "detach": closing("detach"),
    }
    if not isinstance(inspect.getattr_static(base, "sendall", None), types.FunctionType):
        # A C sendall (the stdlib's) bypasses send: count it.  A Python one (gevent's) loops over
        # self.send, which counts already.
        namespace["sendall"] = sendall_counting()
    return type(base.__name__, (base,), namespace)


def install(patches) -> None:
    cls = socket.socket

    active_get = capture._active_get
    suppressed_get = capture._suppressed_get
    rt = capture.runtime
    family_of = _socket.socket.family.__get__  # the raw int: socket.family's enum conversion is slow
    numeric_get = _numeric.get  # a host already known to be a canonical IP address (see _is_numeric)

    def make_connect(original, returns_errno=False):
        def connect(self, address):
            if not rt.active or suppressed_get():
                return original(self, address)
            if type(address) is not tuple and family_of(self) == AF_UNIX:
                capture.counters["socket.unix"] += 1
                return original(self, address)
            outer = active_get()
            if outer is not None:
                # The hot path (every HTTP/mail/FTP connect): the owner's row gets the addresses.
                # The audit hook sees an owner and stays out, so no thread-local flag is needed.
                result = original(self, address)
                if outer.src_ip is None and (not returns_errno or result == 0):
                    if numeric_get(address[0]) and outer.dest_ip is None:  # _enrich_connected(), inlined
                        outer.dest_ip, outer.dest_port = address[0], address[1]
                        try:
                            local = self.getsockname()
                            outer.src_ip, outer.src_port = local[0], local[1]
                        except (OSError, TypeError, IndexError):
                            pass
                    else:
                        _enrich_connected(outer, self, address)
                return result
            call = start_raw_row(self, address)
            in_wrapper.active = True
            try:
                result = original(self, address)
            except (BlockingIOError, InterruptedError):
                if call is not None:  # non-blocking connect in progress (asyncio): still ours
                    _enrich_connected(call, self, address)  # the local port is bound already
                    _track(self, call)
                raise
            except BaseException as exc:
                if call is not None:
                    capture.end(call, exc)
                raise
            finally:
                in_wrapper.active = False
            if call is not None:
                if returns_errno and result not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                    call.outcome = "error"
                    call.error = f"OSError.{errno.errorcode.get(result, result)}"
                    capture.end(call)
                else:
                    if result == 0 or not returns_errno:
                        _enrich_connected(call, self, address)
                    _track(self, call)
            return result

        return connect

    def make_sendto(original):
        def sendto(self, data, *args):
            key = id(self)
            if (
                key not in _tracked
                and capture.runtime.active
                and not capture.is_suppressed()
                and capture.current() is None
                and self.family != getattr(socket, "AF_UNIX", None)
            ):
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

    def make_listen(original):
        def listen(self, *args):
            result = original(self, *args)
            if rt.active and not suppressed_get():
                try:
                    local = self.getsockname()
                    if not isinstance(local, tuple) or local[0] in _WILDCARDS:
                        local = None
                    _listeners[self] = (_attribute(sys._getframe(1)), local)
                except Exception:
                    capture.counters["errors.capture"] += 1
            return result

        return listen

    def make_accept(original):
        def accept(self):
            conn, address = original(self)
            if rt.active and not suppressed_get() and NAME not in rt.disabled and active_get() is None:
                try:
                    start_inbound_row(self, conn, address, sys._getframe(1))
                except Exception:
                    capture.counters["errors.capture"] += 1
            return conn, address

        return accept

    patches.wrap(cls, "connect", make_connect)
    patches.wrap(cls, "connect_ex", lambda o: make_connect(o, returns_errno=True))
    patches.wrap(cls, "sendto", make_sendto)
    patches.wrap(cls, "listen", make_listen)
    patches.wrap(cls, "accept", make_accept)
    # send/sendall/recv*/close/detach: not wrapped on the class; see _count_bytes_of().


def uninstall() -> None:
    for key, call in list(_tracked.items()):
        _forget(key, call)
    _inbound.clear()
