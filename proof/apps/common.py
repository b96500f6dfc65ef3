"""Shared by the proof apps: per-process served counters and the canary fan-out.

Each worker process appends one byte line per request it served to ``$PROOF_COUNT_DIR/served-<pid>``
(O_APPEND, written before the response leaves), so the harness can compare what the server really
served with what the journal holds, per process.
"""

from __future__ import annotations

import json
import os

_state: dict = {"pid": None, "fd": None}


def count_served(kind: bytes = b"i") -> None:
    directory = os.environ.get("PROOF_COUNT_DIR")
    if not directory:
        return
    pid = os.getpid()
    if _state["pid"] != pid:  # after a fork: our own file
        _state["fd"] = os.open(
            os.path.join(directory, f"served-{pid}"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        _state["pid"] = pid
    os.write(_state["fd"], kind + b"\n")


def canaries() -> dict:
    return json.loads(os.environ.get("PROOF_CANARIES") or "{}")


def canary_fanout_sync(provider: str) -> int:
    """Send every canary out through every synchronous channel; returns the number of calls made."""
    import imaplib
    import smtplib
    import urllib.request

    import httpx
    import requests

    c = canaries()
    calls = 0
    # requests: header value, query value, body, token-like path segment
    requests.post(
        f"{provider}/v1/users/{c['path']}/notes",
        params={"api_key": c["query"]},
        headers={"Authorization": f"Bearer {c['header']}", "X-Worker": str(os.getpid())},
        data=c["body"].encode(),
        timeout=10,
    ).close()
    calls += 1
    # urllib.request: the same, through the standard library
    req = urllib.request.Request(
        f"{provider}/v2/items/{c['path']}?token={c['query']}",
        data=c["body"].encode(),
        headers={"X-Api-Key": c["header"], "X-Worker": str(os.getpid())},
        method="PUT",
    )
    urllib.request.urlopen(req, timeout=10).read()
    calls += 1
    # httpx
    with httpx.Client(timeout=10) as client:
        client.post(
            f"{provider}/v3/{c['path']}",
            params={"secret": c["query"]},
            content=c["body"].encode(),
            headers={"Cookie": f"session={c['header']}", "X-Worker": str(os.getpid())},
        )
    calls += 1
    smtp_port = int(os.environ.get("PROOF_SMTP_PORT") or 0)
    if smtp_port:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.login(c["mail_user"], c["mail_password"])
            smtp.sendmail(
                "sender@example.net", [c["mail_rcpt"]], f"Subject: proof\r\n\r\n{c['body']}\r\n".encode()
            )
        calls += 1
    imap_port = int(os.environ.get("PROOF_IMAP_PORT") or 0)
    if imap_port:
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
        imap.login(c["mail_user"], c["mail_password"])
        imap.select(c["mail_box"])
        imap.logout()
        calls += 1
    return calls
