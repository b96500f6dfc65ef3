"""http.client — the base of urllib, urllib3, requests and pip's vendored copies.

Used directly, a logical call spans ``putrequest`` ... ``getresponse`` ... reading the body, so
the call is created without becoming current and made current only inside the library's own
methods (``capture.scope``), where the socket layer below can enrich it.  Under an outer layer
(requests, urllib3, urllib) it only enriches: peer address, and the body byte count through a
counting proxy on the response's file object.
"""

from __future__ import annotations

import http.client

from .. import capture
from ._body import CountingReader

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


def install(patches) -> None:
    HTTPConnection = http.client.HTTPConnection

    def make_putrequest(original):
        def putrequest(self, method, url, *args, **kwargs):
            outer = capture.current()
            call = None
            if outer is not None:
                outer.add_layer(NAME)
            else:
                scheme = "https" if isinstance(self, http.client.HTTPSConnection) else "http"
                host = self.host if ":" not in self.host else f"[{self.host}]"
                full = url if "://" in url else f"{scheme}://{host}:{self.port}{url}"
                call = capture.begin(NAME, activate=False, method=method, url=full, protocol=scheme)
                if call is not None:
                    call.req_headers = []
            self.__dict__["_mna_call"] = call
            self.__dict__["_mna_body"] = False
            with capture.scope(call):
                try:
                    return original(self, method, url, *args, **kwargs)
                except BaseException as exc:
                    if call is not None:
                        self.__dict__["_mna_call"] = None
                        capture.end(call, exc)
                    raise
        return putrequest

    def make_putheader(original):
        def putheader(self, header, *values):
            call = self.__dict__.get("_mna_call")
            if call is not None:
                try:
                    call.req_headers.append((header, b", ".join(v if isinstance(v, bytes) else str(v).encode()
                                                                for v in values)))
                except Exception:
                    capture.counters["errors.capture"] += 1
            return original(self, header, *values)
        return putheader

    def make_send_output(original):
        def _send_output(self, message_body=None, *args, **kwargs):
            call = self.__dict__.get("_mna_call")
            if call is None:
                return original(self, message_body, *args, **kwargs)
            if isinstance(message_body, bytes | bytearray | str):
                call.add_request_body(message_body if not isinstance(message_body, str)
                                      else message_body.encode("iso-8859-1", "replace"))
            elif message_body is not None:
                message_body = _counting(message_body, call)
            with capture.scope(call):
                try:
                    result = original(self, message_body, *args, **kwargs)
                except BaseException as exc:
                    self.__dict__["_mna_call"] = None
                    capture.end(call, exc)
                    raise
            self.__dict__["_mna_body"] = True  # later send() calls carry body bytes (urllib3 style)
            return result
        return _send_output

    def make_send(original):
        def send(self, data):
            call = self.__dict__.get("_mna_call")
            if call is not None and self.__dict__.get("_mna_body"):
                call.add_request_body(data if not hasattr(data, "read") else b"")
            return original(self, data)
        return send

    def make_getresponse(original):
        def getresponse(self):
            call = self.__dict__.get("_mna_call")
            owner = call if call is not None else capture.current()
            with capture.scope(call):
                try:
                    response = original(self)
                except BaseException as exc:
                    if call is not None:
                        self.__dict__["_mna_call"] = None
                        capture.end(call, exc)
                    raise
            if owner is None:
                return response
            try:
                if owner.dest_ip is None and self.sock is not None:
                    owner.enrich(**_peer(self.sock))
                if call is not None:
                    self.__dict__["_mna_call"] = None
                    call.status = response.status
                    call.resp_headers = response.getheaders()
                if response.fp is not None:
                    response.fp = CountingReader(response.fp, owner)
            except Exception:
                capture.counters["errors.capture"] += 1
            if call is not None:
                capture.end(call)
            return response
        return getresponse

    patches.wrap(HTTPConnection, "putrequest", make_putrequest)
    patches.wrap(HTTPConnection, "putheader", make_putheader)
    patches.wrap(HTTPConnection, "_send_output", make_send_output)
    patches.wrap(HTTPConnection, "send", make_send)
    patches.wrap(HTTPConnection, "getresponse", make_getresponse)


def _counting(body, call):
    if hasattr(body, "read"):
        return _CountingFile(body, call)
    try:
        iter(body)
    except TypeError:
        return body
    from ._body import CountingIterable

    return CountingIterable(body, call)


class _CountingFile:
    """A file-like request body: http.client reads it in blocks; count what it reads."""

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call

    def read(self, *args):
        data = self._raw.read(*args)
        self._call.add_request_body(data)
        return data

    def __getattr__(self, name):
        return getattr(self._raw, name)
