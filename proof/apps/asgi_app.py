"""The proof's ASGI app (served by uvicorn): every request makes one outbound HTTP call to the
loopback provider with ``httpx.AsyncClient``; ``/canary`` fans the canaries out (sync channels in a
thread).  Wrapped in the auditor's ASGI middleware (a no-op when the process is not audited)."""

from __future__ import annotations

import asyncio
import os

import httpx
from common import canary_fanout_sync, count_served

from mit_network_audit.interceptor.inbound.asgi import AuditASGIMiddleware

PROVIDER = os.environ.get("PROOF_PROVIDER", "http://127.0.0.1:9")
_client: dict = {}


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if "c" in _client:
                    await _client["c"].aclose()
                _write_proof_stats()  # uvicorn re-raises SIGTERM after shutdown, so atexit never runs
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["path"].startswith("/canary"):
        calls = await asyncio.to_thread(canary_fanout_sync, PROVIDER)
        body = f"canary calls {calls}\n".encode()
    else:
        if "c" not in _client:
            _client["c"] = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
        r = await _client["c"].get(f"{PROVIDER}/v1/quote", headers={"X-Worker": str(os.getpid())})
        body = b"ok " + r.content[:32] + b"\n"
    count_served()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _write_proof_stats():
    try:
        import proof_faults
    except ImportError:
        return
    proof_faults.write_stats()


app = AuditASGIMiddleware(application, app_name="proof_asgi")
