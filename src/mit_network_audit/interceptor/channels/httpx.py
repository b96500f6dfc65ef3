"""httpx, sync and async — one row per HTTP exchange, owned at ``_send_single_request`` (called once
per redirect hop by ``Client.send``).  The row waits for the body: it is emitted when the
response is closed, which httpx does itself once the body has been read."""

from __future__ import annotations

import weakref

from .. import capture

NAME = "httpx"
TARGET = "httpx"


_counting_stream = None  # made by install(): a byte stream httpx accepts, counting what it sends


def _start(request):
    call = capture.begin(NAME, method=request.method, url=str(request.url))
    if call is None:
        return None
    try:
        call.req_headers = list(request.headers.items())
        try:
            call.add_request_body(request.content)
        except Exception:  # a streaming body (a generator, a file): counted as httpx sends it
            stream = request.stream
            if isinstance(stream, _counting_stream):
                stream.call = call  # a redirect hop re-sends the same stream: this hop's row counts it
            else:
                request.stream = _counting_stream(stream, call)
    except Exception:
        capture.counters["errors.capture"] += 1
    return call


def _attach(call, response) -> None:
    try:
        call.status = response.status_code
        call.resp_headers = list(response.headers.items())
        network = response.extensions.get("network_stream")
        peer = network.get_extra_info("server_addr") if network is not None else None
        if isinstance(peer, tuple):
            call.enrich(dest_ip=peer[0], dest_port=peer[1])
        response.__dict__["_mna_call"] = call
        call.hold()
        weakref.finalize(response, _release_once, call, response.__dict__.setdefault("_mna_state", [False]), None)
        if response.is_closed:  # read and closed before it got here (a transport that gives a body in memory)
            _on_close(response)
    except Exception:
        capture.counters["errors.capture"] += 1


def _release_once(call, state, response) -> None:
    if not state[0]:
        state[0] = True
        if response is not None:
            call.resp_bytes = response.num_bytes_downloaded
        capture.release(call)


def _on_close(response) -> None:
    call = response.__dict__.get("_mna_call")
    if call is not None:
        _release_once(call, response.__dict__["_mna_state"], response)


def install(patches) -> None:
    import importlib

    httpx = importlib.import_module("httpx")
    enter, leave = capture.enter_callers_code, capture.leave_callers_code

    class CountingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        """The request's own stream, passed through chunk by chunk; each chunk counted (and
        fingerprinted) into the row of the hop sending it.  Both kinds, as httpx's own streams are."""

        def __init__(self, stream, call) -> None:
            self.stream, self.call = stream, call

        # The request's stream pulls the caller's own generator or file: that runs outside the call
        # (capture.enter_callers_code), so a call it makes is its own row.
        def __iter__(self):
            it = None
            while True:
                token = enter()
                try:
                    if it is None:
                        it = iter(self.stream)
                    chunk = next(it)
                except StopIteration:
                    return
                finally:
                    leave(token)
                self.call.add_request_body(chunk)
                yield chunk

        async def __aiter__(self):
            it = None
            while True:
                token = enter()
                try:
                    if it is None:
                        it = self.stream.__aiter__()
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    leave(token)
                self.call.add_request_body(chunk)
                yield chunk

        def close(self) -> None:
            close = getattr(self.stream, "close", None)
            if close is not None:
                close()

        async def aclose(self) -> None:
            aclose = getattr(self.stream, "aclose", None)
            if aclose is not None:
                await aclose()

    global _counting_stream
    _counting_stream = CountingStream

    def make_sync(original):
        def _send_single_request(self, request, *args, **kwargs):
            call = _start(request)
            if call is None:
                return original(self, request, *args, **kwargs)
            try:
                response = original(self, request, *args, **kwargs)
            except BaseException as exc:
                capture.end(call, exc)
                raise
            _attach(call, response)
            capture.end(call)
            return response
        return _send_single_request

    def make_async(original):
        async def _send_single_request(self, request, *args, **kwargs):
            call = _start(request)
            if call is None:
                return await original(self, request, *args, **kwargs)
            try:
                response = await original(self, request, *args, **kwargs)
            except BaseException as exc:
                capture.end(call, exc)
                raise
            _attach(call, response)
            capture.end(call)
            return response
        return _send_single_request

    def make_close(original):
        def close(self):
            try:
                return original(self)
            finally:
                _on_close(self)
        return close

    def make_aclose(original):
        async def aclose(self):
            try:
                return await original(self)
            finally:
                _on_close(self)
        return aclose

    patches.wrap(httpx.Client, "_send_single_request", make_sync)
    patches.wrap(httpx.AsyncClient, "_send_single_request", make_async)
    patches.wrap(httpx.Response, "close", make_close)
    patches.wrap(httpx.Response, "aclose", make_aclose)
