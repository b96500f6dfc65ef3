"""urllib3 used directly — owned at ``PoolManager.urlopen`` / ``HTTPConnectionPool.urlopen``.

Under requests it only records that it carried the call.  Redirects that urllib3 follows itself
stay in one row (one ``urlopen`` call by the caller); retries likewise.
"""

from __future__ import annotations

from .. import capture
from ._body import counting_body

NAME = "urllib3"
TARGET = "urllib3"


def install(patches) -> None:
    import urllib3
    import urllib3.connectionpool
    import urllib3.poolmanager

    current = capture._active_get

    def wrap_urlopen(full_url):
        def make(original):
            def urlopen(self, method, url, *args, **kwargs):
                outer = current()
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
                    capture.end(call, exc)
                    raise
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
