"""urllib3 used directly — owned at ``PoolManager.urlopen`` / ``HTTPConnectionPool.urlopen``.

Under requests it only records that it carried the call.  Redirects that urllib3 follows itself
(used directly) are one row per hop, as requests and httpx give: urllib3 follows one by calling
``urlopen`` again inside the call in progress, after a redirect response (its status, which
http.client's getresponse put on the call) — that inner call ends the hop before and is a row of
its own.  Retries stay in one row (the inner call after a failure or a retryable status), and so
does a PoolManager handing the call to its pool.
"""

from __future__ import annotations

from .. import capture
from ._body import counting_body

NAME = "urllib3"
TARGET = "urllib3"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def install(patches) -> None:
    import urllib3
    import urllib3.connectionpool
    import urllib3.poolmanager

    current = capture._active_get

    def wrap_urlopen(full_url):
        def make(original):
            def urlopen(self, method, url, *args, **kwargs):
                outer = current()
                if outer is not None and outer.channel == NAME and outer.status in _REDIRECTS and not outer._ended:
                    capture.end_hop(outer)  # urllib3 follows a redirect: the hop before is complete
                    outer = None
                if outer is not None:  # under requests: only note the layer (one contextvar read)
                    layers = outer.layers
                    if layers is None:
                        outer.layers = [NAME]
                    elif NAME not in layers:
                        layers.append(NAME)
                    return original(self, method, url, *args, **kwargs)
                call = capture.begin(NAME, method=method, url=full_url(self, url))
                if call is None:
                    return original(self, method, url, *args, **kwargs)
                try:
                    headers = kwargs.get("headers") or (args[1] if len(args) > 1 else None) or {}
                    call.req_headers = list(dict(headers).items())
                    body = kwargs.get("body", args[0] if args else None)
                    if isinstance(body, str):  # urllib3 sends text as UTF-8
                        call.add_request_body(body.encode("utf-8"))
                    elif body is not None:
                        counted = counting_body(body, call)
                        if counted is not body:
                            if "body" in kwargs:
                                kwargs["body"] = counted
                            else:
                                args = (counted, *args[1:])
                except Exception:
                    capture.counters["errors.capture"] += 1
                try:
                    response = original(self, method, url, *args, **kwargs)
                except BaseException as exc:
                    if not call.hopped:
                        capture.end(call, exc)
                    raise
                if call.hopped:  # the response is the last hop's, in that hop's row
                    return response
                try:
                    call.status = response.status
                    call.resp_headers = list(response.headers.items())
                except Exception:
                    capture.counters["errors.capture"] += 1
                capture.end(call)
                return response

            return urlopen

        return make

    def pool_url(pool, url):
        if "://" in url:
            return url
        host = pool.host if ":" not in pool.host else f"[{pool.host}]"
        return f"{pool.scheme}://{host}:{pool.port}{url}"

    patches.wrap(urllib3.poolmanager.PoolManager, "urlopen", wrap_urlopen(lambda pm, url: url))
    patches.wrap(urllib3.connectionpool.HTTPConnectionPool, "urlopen", wrap_urlopen(pool_url))
