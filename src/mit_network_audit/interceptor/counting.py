"""File-object proxies that count the bytes a library reads through them, never keeping them:
``RequestBodyCounter`` adds to ``call.req_bytes`` (a WSGI request body, an FTP upload source),
``ResponseCounter`` to ``call.resp_bytes`` (an SMTP reply stream).  (The HTTP response reader,
which also releases its call, is ``channels._body.CountingReader``.)"""

from __future__ import annotations


class RequestBodyCounter:
    __slots__ = ("_raw", "_call")

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call

    def read(self, *args):
        data = self._raw.read(*args)
        self._call.req_bytes += len(data)
        return data

    def readline(self, *args):
        data = self._raw.readline(*args)
        self._call.req_bytes += len(data)
        return data

    def readlines(self, *args):
        lines = self._raw.readlines(*args)
        self._call.req_bytes += sum(len(x) for x in lines)
        return lines

    def __iter__(self):
        for line in self._raw:
            self._call.req_bytes += len(line)
            yield line

    def __getattr__(self, name):
        return getattr(self._raw, name)


class _ReadintoRequestBodyCounter(RequestBodyCounter):
    """For a stream that has ``readinto`` (wsgiref's and werkzeug's socket files): werkzeug's
    ``LimitedStream`` — Flask's ``request.get_data()``, its form parser — reads through it when it is
    there (and through ``read`` when not: so it is only there when the stream has it)."""

    __slots__ = ()

    def readinto(self, buffer):
        n = self._raw.readinto(buffer)
        if n:
            self._call.req_bytes += n
        return n


def request_body_counter(raw, call) -> RequestBodyCounter:
    """A ``RequestBodyCounter`` for ``raw`` with the same read methods as ``raw``."""
    return (_ReadintoRequestBodyCounter if hasattr(raw, "readinto") else RequestBodyCounter)(raw, call)


class ResponseCounter:
    __slots__ = ("_raw", "_call")

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call

    def read(self, *args):
        data = self._raw.read(*args)
        self._call.resp_bytes += len(data)
        return data

    def readline(self, *args):
        data = self._raw.readline(*args)
        self._call.resp_bytes += len(data)
        return data

    def close(self):
        return self._raw.close()

    def __getattr__(self, name):
        return getattr(self._raw, name)
