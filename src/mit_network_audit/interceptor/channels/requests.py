"""requests — one row per HTTP exchange, owned at ``HTTPAdapter.send``.

The adapter is called once per hop (``Session.send`` and each redirect of ``resolve_redirects``),
so a redirect chain gives one row per hop; urllib3's retries happen inside one adapter call and
stay in its row.  The body is counted by http.client's counting proxy as the caller reads it.
"""

from __future__ import annotations

from .. import capture
from ._body import counting_body

NAME = "requests"
TARGET = "requests.adapters"


def install(patches) -> None:
    import importlib

    adapters = importlib.import_module(TARGET)  # not requests.adapters: may run mid-import of requests

    begin, end = capture.begin, capture.end

    def make_send(original):
        # HTTPAdapter.send's own signature (stable since requests 2.0): no *args/**kwargs re-packing.
        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            call = begin(NAME)
            if call is None:
                return original(self, request, stream, timeout, verify, cert, proxies)
            wrapped = None  # the caller's body while a counting proxy stands in for it
            try:
                call.method = request.method
                call.url = request.url
                headers = request.headers
                store = getattr(headers, "_store", None)  # _pairs(), inlined
                call.req_headers = list(store.values()) if isinstance(store, dict) else list(headers.items())
                body = request.body
                if body is None:
                    pass
                elif isinstance(body, _TEXT):
                    call.add_request_body(body.encode("utf-8") if isinstance(body, str) else body)
                else:
                    # a buffer, a file-like or an iterable of chunks: counted as urllib3 sends it (a reader
                    # with no length goes out chunked); a counting proxy stands in, put back after the send
                    counted = counting_body(body, call)
                    if counted is not body:
                        request.body, wrapped = counted, body
            except Exception:
                capture.counters["errors.capture"] += 1
            try:
                response = original(self, request, stream, timeout, verify, cert, proxies)
            except BaseException as exc:
                if wrapped is not None:
                    request.body = wrapped
                capture.end(call, exc)
                raise
            if wrapped is not None:  # the body is sent before send() returns
                request.body = wrapped
            try:
                call.status = response.status_code
                headers = response.headers
                store = getattr(headers, "_store", None)
                call.resp_headers = list(store.values()) if isinstance(store, dict) else _pairs(headers)
            except Exception:
                capture.counters["errors.capture"] += 1
            end(call)
            return response

        return send

    patches.wrap(adapters.HTTPAdapter, "send", make_send)


_TEXT = (bytes, str)


def _pairs(headers) -> list:
    """(name, value) pairs of a requests ``CaseInsensitiveDict`` without its Python-level
    iteration: its ``_store`` maps lower-case names to (name, value) already."""
    store = getattr(headers, "_store", None)
    if isinstance(store, dict):  # an OrderedDict
        return list(store.values())
    return list(headers.items())

