"""urllib.request — owned at ``OpenerDirector.open``: one row per HTTP exchange.  urllib follows a
redirect (and retries with credentials after a 401) by opening the next request *inside* the open
in progress; that inner open ends the hop before it (its row, with its 3xx/401 status) and is a
row of its own, so a chain gives one row per hop as requests and httpx do — a redirect to another
host is named.  Non-HTTP schemes (file:, data:) make no row."""

from __future__ import annotations

from .. import capture
from ._body import counting_body

NAME = "urllib"
TARGET = None
_NETWORK_SCHEMES = ("http:", "https:", "ftp:")


def install(patches) -> None:
    import urllib.request

    def make_open(original):
        def open(self, fullurl, data=None, *args, **kwargs):
            url = fullurl if isinstance(fullurl, str) else getattr(fullurl, "full_url", "")
            if not url.lower().startswith(_NETWORK_SCHEMES):
                return original(self, fullurl, data, *args, **kwargs)
            method = None
            if not isinstance(fullurl, str):
                method = fullurl.get_method()
            previous = capture.current()
            if previous is not None and previous.channel == NAME and not previous._ended:
                capture.end_hop(previous)
            call = capture.begin(NAME, method=method or ("POST" if data is not None else "GET"), url=url)
            if call is None:
                return original(self, fullurl, data, *args, **kwargs)
            swapped = None  # a Request whose streamed body is counted while this call sends it
            try:
                if data is not None and not isinstance(fullurl, str):
                    # what open() does first; only then does the Request know its method (POST)
                    fullurl.data, data = data, None
                    call.method = fullurl.get_method()
                body = data if data is not None else getattr(fullurl, "data", None)
                if isinstance(body, bytes | bytearray):
                    call.add_request_body(body)
                elif body is not None:
                    counted = counting_body(body, call)
                    if counted is not body:
                        if isinstance(fullurl, str):
                            data = counted  # urlopen builds its own Request around it
                        else:
                            # the counting proxy, not through the setter (it drops Content-Length);
                            # the caller's object is put back after the call
                            swapped = fullurl
                            fullurl._data = counted
                if not isinstance(fullurl, str):
                    call.req_headers = list(fullurl.header_items())
            except Exception:
                capture.counters["errors.capture"] += 1
            try:
                response = original(self, fullurl, data, *args, **kwargs)
            except BaseException as exc:
                if not call.hopped:
                    try:
                        call.status = getattr(exc, "code", None)
                    except Exception:
                        pass
                    capture.end(call, exc)
                raise
            finally:
                if swapped is not None:
                    swapped._data = body
            if call.hopped:  # a redirect's hop: the response is the last hop's, in that hop's row
                return response
            try:
                call.status = getattr(response, "status", None)
                call.resp_headers = list(response.getheaders()) if hasattr(response, "getheaders") else ()
            except Exception:
                capture.counters["errors.capture"] += 1
            capture.end(call)
            return response
        return open

    patches.wrap(urllib.request.OpenerDirector, "open", make_open)
