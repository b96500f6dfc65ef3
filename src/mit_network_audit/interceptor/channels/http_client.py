"""http.client — the base of urllib, urllib3, requests and pip's vendored copies.

Used directly, a logical call spans ``putrequest`` ... ``getresponse`` ... reading the body, so
the call is created without becoming current and made current only inside the library's own
methods (``capture.scope``), where the socket layer below can enrich it.  Under an outer layer
(requests, urllib3, urllib) it only enriches: peer address, and the body byte count through a
counting proxy on the response's file object.
"""

from __future__ import annotations

import http.client
import types

from .. import capture
from ._body import ChunkedCountingReader, CountingReader, counting_body

NAME = "http.client"
TARGET = None


def _peer(sock):
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
        if isinstance(peer, tuple):
            return dict(dest_ip=peer[0], dest_port=peer[1], src_ip=local[0], src_port=local[1])
    except (OSError, AttributeError, TypeError, IndexError):
        pass
    return {}


def _peer_cached(conn, sock) -> dict:
    """Peer and local address of ``conn``'s socket, read once per socket (keep-alive reuses it:
    no syscalls on the hot path).  The cache holds the socket itself, so a new socket (a
    reconnect) can never be mistaken for the old one."""
    d = conn.__dict__
    cached = d.get("_mna_peer")
    if cached is not None and cached[0] is sock:
        return cached[1]
    fields = _peer(sock)
    d["_mna_peer"] = (sock, fields)
    return fields


def _attach_direct(conn) -> None:  # replaced by install()
    pass


def _detach_direct(conn) -> None:
    """The direct call ended: drop the per-connection wrappers (and the cycle they make)."""
    d = conn.__dict__
    d.pop("_send_output", None)
    d.pop("send", None)
    d["_mna_call"] = None


def _end_direct(conn, call, exc: BaseException | None = None) -> None:
    """A direct call is over (its response is in, it failed, or it was abandoned): the row goes
    now, or when the response body that holds it is done.  A direct call is deferred from its
    start (``putrequest``), so a request whose response nobody asks for — the connection closed,
    the object dropped, the process ending — still gets its row (at close, or at exit)."""
    _detach_direct(conn)
    _end_call(call, exc)


def _end_call(call, exc: BaseException | None = None) -> None:
    capture.end(call, exc)
    if call._holds <= 0:
        capture.finish(call)


def _abandoned(conn) -> None:
    """The connection is closed (or reused by a new request) while a direct call still waits for
    ``getresponse``: its request may well have gone out, so its row is emitted now."""
    call = conn.__dict__.get("_mna_call")
    if call is not None:
        _end_direct(conn, call)


def _buffer_headers(buffer) -> list:
    """Header (name, value) pairs of a request as http.client buffered it (``putheader`` lines)."""
    out = []
    for line in buffer[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name, value.strip().replace(b"\r\n\t", b", ")))
    return out


def install(patches) -> None:
    HTTPConnection = http.client.HTTPConnection
    HTTPSConnection = http.client.HTTPSConnection
    current = capture._active_get
    counting_reader = CountingReader.wrap
    chunked_reader = ChunkedCountingReader.wrap
    scope = capture.scope

    def make_putrequest(original):
        def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
            outer = current()
            d = self.__dict__
            if outer is not None:  # an outer layer owns the call: note the layer, nothing more
                layers = outer.layers
                if layers is None:
                    outer.layers = [NAME]
                elif NAME not in layers:
                    layers.append(NAME)
                d["_mna_call"] = None
                return original(self, method, url, skip_host, skip_accept_encoding)
            args, kwargs = (skip_host, skip_accept_encoding), {}
            scheme = "https" if isinstance(self, HTTPSConnection) else "http"
            # Through a CONNECT tunnel (set_tunnel) the destination is the tunnel's far end, not the proxy.
            tunnel = getattr(self, "_tunnel_host", None)
            host, port = (tunnel, self._tunnel_port) if tunnel else (self.host, self.port)
            host = host if ":" not in host else f"[{host}]"
            full = url if "://" in url else f"{scheme}://{host}:{port}{url}"
            call = capture.begin(NAME, activate=False, method=method, url=full, protocol=scheme)
            if call is None:
                result = original(self, method, url, *args, **kwargs)
                _abandoned(self)  # putrequest succeeds only on an idle connection: an earlier call is over
                d["_mna_call"] = None
                return result
            call.defer()  # see _end_direct
            with scope(call):
                try:
                    result = original(self, method, url, *args, **kwargs)
                except BaseException as exc:
                    # the connection was busy (CannotSendRequest) or the request line invalid: an
                    # earlier call on it stays as it is, still waiting for its getresponse
                    _end_call(call, exc)
                    raise
            _abandoned(self)
            d["_mna_call"] = call
            d["_mna_body"] = False
            _attach_direct(self)
            return result

        return putrequest

    def make_send_output(original):
        def _send_output(self, message_body=None, *args, **kwargs):
            call = self.__dict__.get("_mna_call")
            if call is None:
                return original(self, message_body, *args, **kwargs)
            try:  # the request's headers, as buffered by putheader (no per-header wrapper needed)
                call.req_headers = _buffer_headers(self._buffer)
            except Exception:
                capture.counters["errors.capture"] += 1
            if isinstance(message_body, bytes | bytearray | str):
                call.add_request_body(
                    message_body
                    if not isinstance(message_body, str)
                    else message_body.encode("iso-8859-1", "replace")
                )
            elif message_body is not None:
                message_body = counting_body(message_body, call)
            with scope(call):
                try:
                    result = original(self, message_body, *args, **kwargs)
                except BaseException as exc:
                    _end_direct(self, call, exc)
                    raise
            self.__dict__["_mna_body"] = True  # later send() calls carry body bytes (urllib3 style)
            return result

        return _send_output

    def make_send(original):
        def send(self, data):
            d = self.__dict__
            call = d.get("_mna_call")
            if call is not None and d.get("_mna_body"):
                call.add_request_body(data if not hasattr(data, "read") else b"")
            return original(self, data)

        return send

    def make_getresponse(original):
        def getresponse(self):
            call = self.__dict__.get("_mna_call")
            if call is None:
                owner = current()
                response = original(self)
                if owner is None:
                    return response
                try:  # under an outer layer: peer address (once per socket) and the body count
                    sock = self.sock
                    if owner.src_ip is None and sock is not None:
                        cached = self.__dict__.get("_mna_peer")  # _peer_cached(), inlined
                        peer = (
                            cached[1]
                            if cached is not None and cached[0] is sock
                            else _peer_cached(self, sock)
                        )
                        if peer:
                            if owner.dest_ip is None:
                                owner.dest_ip, owner.dest_port = peer["dest_ip"], peer["dest_port"]
                            owner.src_ip, owner.src_port = peer["src_ip"], peer["src_port"]
                    owner.status = response.status  # each hop's own (urllib ends a hop when it redirects)
                    if response.fp is not None:
                        response.fp = (chunked_reader if response.chunked else counting_reader)(response.fp, owner)
                except Exception:
                    capture.counters["errors.capture"] += 1
                return response
            # not the connection's call any more while the response comes: getresponse closes a
            # connection that will close (close() must not take the call for an abandoned one)
            self.__dict__["_mna_call"] = None
            with scope(call):
                try:
                    response = original(self)
                except BaseException as exc:
                    _end_direct(self, call, exc)
                    raise
            try:
                if call.dest_ip is None and self.sock is not None:
                    call.enrich(**_peer_cached(self, self.sock))
                _detach_direct(self)
                call.status = response.status
                call.resp_headers = response.getheaders()
                if response.fp is not None:
                    response.fp = (chunked_reader if response.chunked else CountingReader.wrap)(response.fp, call)
            except Exception:
                capture.counters["errors.capture"] += 1
            _end_call(call)  # now, or when the body is done (the reader holds the row)
            return response

        return getresponse

    # http.client used directly: its call spans putrequest ... endheaders/_send_output ... send(body)
    # ... getresponse.  putrequest and getresponse are wrapped on the class (getresponse also
    # serves outer layers: peer address, body count); _send_output and send only matter to a
    # direct call, so they are attached to that connection object alone while its call runs —
    # under requests/urllib3 (an outer owner) they cost nothing.
    def attach_direct(conn) -> None:
        cls, d = type(conn), conn.__dict__
        # Around the class's own methods, so a subclass's overrides still run.
        d["_send_output"] = types.MethodType(make_send_output(cls._send_output), conn)
        d["send"] = types.MethodType(make_send(cls.send), conn)

    global _attach_direct
    _attach_direct = attach_direct

    def make_close(original):
        def close(self):
            if self.__dict__.get("_mna_call") is not None:
                _abandoned(self)
            return original(self)

        return close

    patches.wrap(HTTPConnection, "putrequest", make_putrequest)
    patches.wrap(HTTPConnection, "getresponse", make_getresponse)
    patches.wrap(HTTPConnection, "close", make_close)
