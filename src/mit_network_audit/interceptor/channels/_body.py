"""Counting wrappers for bodies that stream: the bytes are counted, never kept."""

from __future__ import annotations

from .. import capture

_new = object.__new__


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


class CountingIterable:
    """Wraps a request body iterable (generator, chunked upload): counts and fingerprints each chunk
    as the library pulls it; the chunks themselves go on unchanged."""

    __slots__ = ("_it", "_call")

    def __init__(self, iterable, call) -> None:
        self._it = iterable
        self._call = call

    def __iter__(self):
        call = self._call
        for chunk in self._it:
            call.add_request_body(chunk)
            yield chunk


class CountingFile:
    """A file-like request body: the library reads it in blocks; count what it reads."""

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call

    def read(self, *args):
        data = self._raw.read(*args)
        self._call.add_request_body(data)
        return data

    def __getattr__(self, name):  # seek/tell (rewinds on retry), fileno (fstat for a length), ...
        return getattr(self._raw, name)


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
        return CountingFile(body, call)
    try:
        iter(body)
    except TypeError:
        return body
    return CountingIterable(body, call)
