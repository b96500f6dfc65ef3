"""Counting wrappers for bodies that stream: the bytes are counted, never kept."""

from __future__ import annotations

import io

from .. import capture

_new = object.__new__
_enter, _leave = capture.enter_callers_code, capture.leave_callers_code


class CountingReader:
    """Proxy for a response's file object (http.client's ``fp``): counts what the reader takes,
    releases the call's row when the body is closed or collected.  Reads are passed through as is.

    Collection is noticed by ``__del__`` rather than ``weakref.finalize`` (which costs a registry
    entry per response); a body still open at exit is finished by ``capture.finish_pending``."""

    __slots__ = ("_raw", "_call", "_released", "__weakref__")

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call
        self._released = False
        call._holds += 1  # call.hold(), inlined (once per HTTP response)
        if call._ended and not call._deferred:
            call.defer()

    @classmethod
    def wrap(cls, raw, call) -> CountingReader:
        """``CountingReader(raw, call)`` without the ``__init__`` call (once per HTTP response)."""
        self = _new(cls)
        self._raw = raw
        self._call = call
        self._released = False
        call._holds += 1
        if call._ended and not call._deferred:
            call.defer()
        return self

    def _release(self) -> None:
        if not self._released:
            self._released = True
            call = self._call
            try:  # capture.release(call), inlined: this runs once per HTTP response
                call._holds -= 1
                if call._holds <= 0 and call._ended:
                    capture.finish(call)
            except Exception:
                capture.counters["errors.capture"] += 1

    def __del__(self):
        if self._released:  # the usual case (closed before collected): no second Python call
            return
        try:
            self._release()
        except Exception:  # during interpreter shutdown globals may be gone: never raise here
            pass

    def read(self, *args):
        data = self._raw.read(*args)
        self._call.resp_bytes += len(data)
        return data

    def read1(self, *args):
        data = self._raw.read1(*args)
        self._call.resp_bytes += len(data)
        return data

    def readline(self, *args):
        data = self._raw.readline(*args)
        self._call.resp_bytes += len(data)
        return data

    def readinto(self, buffer):
        n = self._raw.readinto(buffer)
        if n:
            self._call.resp_bytes += n
        return n

    def peek(self, *args):
        return self._raw.peek(*args)

    def close(self):
        try:
            return self._raw.close()
        finally:
            if not self._released:  # self._release(), inlined
                self._released = True
                call = self._call
                try:
                    call._holds -= 1
                    if call._holds <= 0 and call._ended:
                        capture.finish(call)
                except Exception:
                    capture.counters["errors.capture"] += 1

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def __iter__(self):
        return iter(self.readline, b"")


class ChunkedCountingReader(CountingReader):
    """A chunked response (``Transfer-Encoding: chunked``): the reader sees the framing too (size
    lines, CRLFs, trailer), read by http.client or by urllib3 in its own way.  Every byte passes here
    in order, so a small decoder of the framing counts the body's data bytes only, the same figure a
    ``Content-Length`` response gives.  A framing it cannot parse: the rest counts as it comes."""

    __slots__ = ("_left", "_skip", "_line", "_state")

    @classmethod
    def wrap(cls, raw, call) -> ChunkedCountingReader:
        self = super().wrap(raw, call)
        self._left, self._skip, self._line, self._state = 0, 0, b"", "size"
        return self

    def _feed(self, data) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._state == "raw":
                self._call.resp_bytes += n - i
                return
            if self._left:  # inside a chunk's data
                take = min(self._left, n - i)
                self._call.resp_bytes += take
                self._left -= take
                i += take
                if not self._left:
                    self._skip = 2  # the CRLF after the data
            elif self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
            elif self._state == "trailer":  # after the last chunk: framing only
                return
            else:  # a size line: hex digits [; extensions] CRLF
                j = data.find(b"\n", i)
                if j < 0:
                    self._line += data[i:]
                    return
                line, self._line, i = self._line + data[i:j], b"", j + 1
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._state = "raw"
                    continue
                if size:
                    self._left = size
                else:
                    self._state = "trailer"

    def read(self, *args):
        data = self._raw.read(*args)
        self._feed(data)
        return data

    def read1(self, *args):
        data = self._raw.read1(*args)
        self._feed(data)
        return data

    def readline(self, *args):
        data = self._raw.readline(*args)
        self._feed(data)
        return data

    def readinto(self, buffer):
        n = self._raw.readinto(buffer)
        if n:
            self._feed(bytes(memoryview(buffer)[:n]))
        return n


class CountingIterable:
    """Wraps a request body iterable (generator, chunked upload): counts and fingerprints each chunk
    as the library pulls it; the chunks themselves go on unchanged.  The caller's iterator runs
    outside the call (``capture.enter_callers_code``): a call it makes is its own row."""

    __slots__ = ("_it", "_call")

    def __init__(self, iterable, call) -> None:
        self._it = iterable
        self._call = call

    def __iter__(self):
        call = self._call
        it = None
        while True:
            token = _enter()
            try:
                if it is None:
                    it = iter(self._it)
                chunk = next(it)
            except StopIteration:
                return
            finally:
                _leave(token)
            call.add_request_body(chunk)
            yield chunk


class CountingFile:
    """A file-like request body: the library reads it in blocks; count what it reads (the caller's
    ``read`` runs outside the call, as a body generator does)."""

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call

    def read(self, *args):
        token = _enter()
        try:
            data = self._raw.read(*args)
        finally:
            _leave(token)
        self._call.add_request_body(data)
        return data

    def __getattr__(self, name):  # seek/tell (rewinds on retry), fileno (fstat for a length), ...
        return getattr(self._raw, name)


class CountingTextFile(CountingFile):
    """A text file as a request body: http.client encodes what it reads when the body is an
    ``io.TextIOBase`` (``_is_textIO``), so the proxy must pass for one (a virtual subclass: none of the
    base's "unsupported" methods shadow the file's own ``seek``/``tell``/``fileno``)."""


io.TextIOBase.register(CountingTextFile)


def counting_body(body, call):
    """A request body that counts (and fingerprints) itself as the library sends it: a buffer
    (bytes, memoryview, array) is counted at once and sent as it is; a file counts what is read of
    it; an iterable of chunks counts each chunk.  Anything else goes on uncounted."""
    if isinstance(body, bytes | bytearray):
        call.add_request_body(body)
        return body
    if isinstance(body, str):
        call.add_request_body(body.encode("iso-8859-1", "replace"))
        return body
    try:
        view = memoryview(body)
    except TypeError:
        pass
    else:
        call.add_request_body(view.cast("B") if view.ndim == 1 and view.c_contiguous else view.tobytes())
        return body
    if hasattr(body, "read"):
        return (CountingTextFile if isinstance(body, io.TextIOBase) else CountingFile)(body, call)
    try:
        iter(body)
    except TypeError:
        return body
    return CountingIterable(body, call)
