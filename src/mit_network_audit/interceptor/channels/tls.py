"""TLS: ``ssl.SSLContext.wrap_socket`` and ``wrap_bio`` (asyncio's TLS).

Under an owner (an HTTPS call) wrapping only marks the call's protocol.  For a raw socket the
socket layer's row follows the socket into its TLS wrapper (the plain socket is detached by
``ssl``), its protocol becomes ``tls`` and the bytes are counted on the SSLSocket — application
bytes, since that is what the caller sends and reads."""

from __future__ import annotations

import ssl
import weakref

from .. import capture
from . import socket as socket_channel

NAME = "ssl"
TARGET = None


def install(patches) -> None:
    def make_wrap_socket(original):
        def wrap_socket(self, sock, *args, **kwargs):
            owner = capture.current()
            if owner is not None and owner.url is None and owner.protocol in (None, "tcp"):
                owner.protocol = "tls"  # an URL's scheme already says https
            call = socket_channel._tracked.pop(id(sock), None)  # a raw socket's row moves to the wrapper
            try:
                wrapped = original(self, sock, *args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    call.protocol = "tls"
                    capture.fail(call, exc)
                    capture.release(call)
                raise
            if call is not None:
                call.protocol = "tls"
                if kwargs.get("server_hostname") and call.host is None:
                    call.host = kwargs["server_hostname"]
                socket_channel._tracked[id(wrapped)] = call
                weakref.finalize(wrapped, socket_channel._forget, id(wrapped), call)
            return wrapped
        return wrap_socket

    def make_wrap_bio(original):
        def wrap_bio(self, incoming, outgoing, *args, **kwargs):
            owner = capture.current()
            if owner is not None and owner.url is None and owner.protocol in (None, "tcp"):
                owner.protocol = "tls"  # an URL's scheme already says https
            return original(self, incoming, outgoing, *args, **kwargs)
        return wrap_bio

    def counting(original, sent: bool):
        def method(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            call = socket_channel._tracked.get(id(self))
            if call is not None:
                n = result if isinstance(result, int) else len(result) if isinstance(result, bytes) else 0
                if sent and not n and args:
                    n = len(args[0])
                socket_channel.count(call, n, sent)
            return result
        return method

    patches.wrap(ssl.SSLContext, "wrap_socket", make_wrap_socket)
    patches.wrap(ssl.SSLContext, "wrap_bio", make_wrap_bio)
    # In CPython, sendall() loops over send(), and recv()/recv_into() go through read(): counting
    # send, write and read sees every application byte exactly once.
    patches.wrap(ssl.SSLSocket, "send", lambda o: counting(o, True))
    patches.wrap(ssl.SSLSocket, "write", lambda o: counting(o, True))
    patches.wrap(ssl.SSLSocket, "read", lambda o: counting(o, False))
    patches.wrap(ssl.SSLSocket, "close", lambda o: _closing(o))


def _closing(original):
    def close(self):
        call = socket_channel._tracked.pop(id(self), None)
        try:
            return original(self)
        finally:
            if call is not None:
                socket_channel.release(call)
    return close
