"""aiohttp client — owned at ``ClientSession._request``: one row per HTTP exchange.  aiohttp follows
redirects inside one ``_request``; each hop's ``ClientRequest.send`` after a redirect response ends
the hop before (its row, its 3xx status) and opens the next one, so a chain gives one row per hop as
requests and httpx do — a redirect to another host is named.  The row waits for the body: emitted on
``release``/``close`` of the response (an ``async with`` block, or reading the body), or when the
response is collected."""

from __future__ import annotations

import inspect
import weakref

from .. import capture

NAME = "aiohttp"
TARGET = "aiohttp"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _hop(call):
    """The call of the hop in progress (the last one a redirect opened), for ``call``'s ``_request``."""
    return getattr(call, "mna_hop", call)


def _release_once(call, state, response) -> None:
    if not state[0]:
        state[0] = True
        try:
            if response is not None:
                call.resp_bytes = response.content.total_bytes
        except Exception:
            pass
        capture.release(call)


async def _callers_generator(agen):
    """The caller's async generator body, pulled by aiohttp's writer task — where the aiohttp call is
    current: its code runs outside the call (``capture.enter_callers_code``), so a call it makes (a
    relay's download inside its upload) is its own row.  Closed early, it closes the caller's too."""
    enter, leave = capture.enter_callers_code, capture.leave_callers_code
    try:
        while True:
            token = enter()
            try:
                chunk = await agen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                leave(token)
            yield chunk
    finally:
        token = enter()
        try:
            await agen.aclose()
        finally:
            leave(token)


def install(patches) -> None:
    import importlib

    client = importlib.import_module("aiohttp.client")
    client_reqrep = importlib.import_module("aiohttp.client_reqrep")

    def make_request(original):
        async def _request(self, method, str_or_url, *args, **kwargs):
            call = capture.begin(NAME, method=str(method).upper(), url=str(str_or_url))
            if call is None:
                return await original(self, method, str_or_url, *args, **kwargs)
            try:
                # the URL as aiohttp builds it: a relative one joined to the session's base_url, params added
                url = self._build_url(str_or_url)
                params = kwargs.get("params")
                call.url = str(url.extend_query(params) if params else url)
            except Exception:
                pass  # aiohttp raises its own error for such a URL (InvalidUrlClientError): the row says what was given
            try:
                call.req_headers = list(dict(kwargs.get("headers") or {}).items())
                data = kwargs.get("data")
                if isinstance(data, bytes | str):
                    call.add_request_body(data.encode() if isinstance(data, str) else data)
                elif kwargs.get("json") is not None:
                    import json

                    call.req_bytes += len(json.dumps(kwargs["json"]).encode())
                elif data is not None:  # a stream (async generator, file, form...): counted as written
                    call.mna_count_writes = True
                    if inspect.isasyncgen(data):
                        kwargs["data"] = _callers_generator(data)
            except Exception:
                capture.counters["errors.capture"] += 1
            try:
                response = await original(self, method, str_or_url, *args, **kwargs)
            except BaseException as exc:
                first, call = call, _hop(call)
                if isinstance(exc, client.ClientResponseError):  # raise_for_status, too many redirects
                    call.status = exc.status or call.status
                capture.end(call, exc)
                if first is not call:
                    capture.end(first)  # already finished as a hop: only its scope
                raise
            first, call = call, _hop(call)
            if first is not call:
                capture.end(first)
            try:
                call.status = response.status
                call.resp_headers = list(response.headers.items())
                peer = response.connection.transport.get_extra_info("peername") if response.connection else None
                if isinstance(peer, tuple):
                    call.enrich(dest_ip=peer[0], dest_port=peer[1])
                state = [False]
                response._mna_call = (call, state)
                call.hold()
                weakref.finalize(response, _release_once, call, state, None)
            except Exception:
                capture.counters["errors.capture"] += 1
            capture.end(call)
            return response
        return _request

    def make_release(original):
        def release(self, *args, **kwargs):
            try:
                return original(self, *args, **kwargs)
            finally:
                pair = getattr(self, "_mna_call", None)
                if pair is not None:
                    _release_once(pair[0], pair[1], self)
        return release

    def make_read(original):
        async def read(self, *args, **kwargs):
            body = await original(self, *args, **kwargs)
            pair = getattr(self, "_mna_call", None)
            if pair is not None:  # the whole body is in: the row can go
                _release_once(pair[0], pair[1], self)
            return body
        return read

    current = capture._active_get

    def make_send(original):
        # Once per hop.  After a redirect response (the status start() put on the hop's call), the hop
        # before is complete: its row goes, and this request is the next hop's call.
        async def send(self, conn, *args, **kwargs):
            hop = current()
            if hop is not None and hop.channel == NAME and hop.status in _REDIRECTS:
                try:
                    root = getattr(hop, "mna_root", hop)
                    capture.end(hop)
                    following = capture.begin(NAME, method=str(self.method).upper(), url=str(self.url))
                    if following is not None:
                        following.mna_root = root
                        following.mna_count_writes = getattr(root, "mna_count_writes", False)
                        following.req_headers = list(self.headers.items())
                        root.mna_hop = following
                except Exception:
                    capture.counters["errors.capture"] += 1
            return await original(self, conn, *args, **kwargs)
        return send

    def make_start(original):
        async def start(self, connection, *args, **kwargs):
            response = await original(self, connection, *args, **kwargs)
            hop = current()
            if hop is not None and hop.channel == NAME:
                hop.status = self.status  # each hop's own: a redirect's tells send() a new hop begins
            return response
        return start

    def make_write(original):
        # The body as aiohttp writes it, before its chunked framing or compression: the writer task
        # runs in a copy of the request's context, so the aiohttp call is current there.
        async def write(self, chunk, *args, **kwargs):
            call = current()
            if call is not None and getattr(call, "mna_count_writes", False):
                call.add_request_body(chunk)
            return await original(self, chunk, *args, **kwargs)
        return write

    patches.wrap(importlib.import_module("aiohttp.http_writer").StreamWriter, "write", make_write)
    patches.wrap(client.ClientSession, "_request", make_request)
    patches.wrap(client_reqrep.ClientRequest, "send", make_send)
    patches.wrap(client_reqrep.ClientResponse, "start", make_start)
    patches.wrap(client_reqrep.ClientResponse, "read", make_read)
    patches.wrap(client_reqrep.ClientResponse, "release", make_release)
    patches.wrap(client_reqrep.ClientResponse, "close", make_release)
