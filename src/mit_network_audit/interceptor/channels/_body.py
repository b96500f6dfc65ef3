"""Counting wrappers for bodies that stream: the bytes are counted, never kept."""

from __future__ import annotations

import weakref

from .. import capture


def _release_once(call, state) -> None:
    if not state[0]:
        state[0] = True
        capture.release(call)


class CountingReader:
    """Proxy for a response's file object (http.client's ``fp``): counts what the reader takes,
    releases the call's row when the body is closed or collected.  Reads are passed through as is."""

    __slots__ = ("_raw", "_call", "_state", "_finalizer", "__weakref__")

    def __init__(self, raw, call) -> None:
        self._raw = raw
        self._call = call
        self._state = [False]
        call.hold()
        self._finalizer = weakref.finalize(self, _release_once, call, self._state)

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
            self._finalizer()

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
