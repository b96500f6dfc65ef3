"""ASGI middleware: one ``inbound`` row per HTTP request, one per websocket connection."""

from __future__ import annotations

from .. import capture
from ..channels.socket import claim_inbound
from .wsgi import OUTER_CALL, _owner_of, host_of, request_url

NAME = "asgi"


class AuditASGIMiddleware:
    def __init__(self, app, app_name: str | None = None) -> None:
        self.app = app
        self.owner = _owner_of(app, app_name)
        self.named = bool(app_name)

    async def __call__(self, scope, receive, send):
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        outer = scope.get(OUTER_CALL)
        if outer is not None:  # see wsgi.OUTER_CALL
            if self.named:
                outer.owner = self.owner
            return await self.app(scope, receive, send)
        call = self._begin(scope)
        if call is None:
            return await self.app(scope, receive, send)
        try:
            scope[OUTER_CALL] = call
        except Exception:
            capture.counters["errors.capture"] += 1

        async def audited_receive():
            message = await receive()
            try:
                body = message.get("body") or message.get("bytes") or message.get("text") or b""
                call.req_bytes += len(body)
            except Exception:
                capture.counters["errors.capture"] += 1
            return message

        async def audited_send(message):
            try:
                mtype = message.get("type")
                if mtype == "http.response.start":
                    call.status = message.get("status")
                    call.resp_headers = message.get("headers") or ()
                elif mtype == "websocket.accept":
                    call.status = 101
                elif mtype == "websocket.close" and call.status is None:
                    call.status = 403
                body = message.get("body") or message.get("bytes") or message.get("text") or b""
                call.resp_bytes += len(body)
            except Exception:
                capture.counters["errors.capture"] += 1
            await send(message)

        try:
            await self.app(scope, audited_receive, audited_send)
        except BaseException as exc:
            capture.end(call, exc)
            raise
        capture.end(call)

    def _begin(self, scope):
        if not capture.runtime.active or capture.is_suppressed() or NAME in capture.runtime.disabled:
            return None
        try:
            call = capture.begin(NAME, "inbound", activate=False)
            if call is None:
                return None
            scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
            server = scope.get("server") or (None, None)
            client = scope.get("client") or (None, None)
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers") or ()]
            host = host_of(dict(headers).get("host")) or host_of(server[0])
            query = (scope.get("query_string") or b"").decode("latin-1")
            # ``path`` includes ``root_path`` (the ASGI spec; uvicorn since 0.26); servers from before
            # that clarification leave it out
            root, path = scope.get("root_path") or "", scope.get("path") or ""
            if root and path != root and not path.startswith(root.rstrip("/") + "/"):
                path = root + path
            call.protocol = scheme
            call.method = scope.get("method") or "WEBSOCKET"
            call.url = request_url(scheme, host, path, query)
            call.port = server[1]
            call.src_ip, call.src_port = client[0], client[1]
            call.req_headers = headers
            call.owner = self.owner
            claim_inbound(client[0], client[1], server[1])  # the connection's row is this request's
            return call
        except Exception:
            capture.counters["errors.capture"] += 1
            return None
