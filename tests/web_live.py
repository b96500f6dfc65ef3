"""The complete dashboard (core pages + registry pages, web.server.create_dashboard) on a real uvicorn
server on a free loopback port, with one account per role and an API token per role."""

from __future__ import annotations

import base64
import os
import threading
import time
from contextlib import contextmanager

import uvicorn

from mit_network_audit.journal import open_store
from mit_network_audit.web.auth import Accounts
from mit_network_audit.web.server import create_dashboard
from pg_support import scratch_database
from web_support import PASSWORD, ROLES, free_port
from web_support import LiveServer as _CoreServer

__all__ = ["PASSWORD", "ROLES", "LiveDashboard", "signing_env"]


class LiveDashboard(_CoreServer):
    """Same accounts and login helper as web_support.LiveServer, serving create_dashboard."""

    def __init__(self, dsn: str) -> None:  # noqa: D401 - deliberately not calling the core server's __init__
        accounts = Accounts(open_store(dsn))
        for role in ROLES:
            if not accounts.get(role):
                accounts.add(role, role, PASSWORD)
        self.tokens = {role: accounts.new_token(role) for role in ROLES}
        self.token = self.tokens["auditor"]
        self.dsn = dsn
        self.app = create_dashboard(dsn)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)


@contextmanager
def signing_env(directory: str):
    """A checkpoint signing key (as a bare seed in $MNA_SIGNING_KEY) and a witness file, for the
    server threads and the test alike; restores the environment afterwards."""
    saved = {k: os.environ.get(k) for k in ("MNA_SIGNING_KEY", "MNA_SIGNING_KEY_NAME", "MNA_WITNESS_FILE",
                                             "MNA_PUBLIC_KEY", "MNA_SIGNING_KEY_FILE")}
    os.environ["MNA_SIGNING_KEY"] = base64.b64encode(os.urandom(32)).decode()
    os.environ["MNA_SIGNING_KEY_NAME"] = "web-test"
    os.environ["MNA_WITNESS_FILE"] = os.path.join(directory, "witness.jsonl")
    os.environ["MNA_SIGNING_KEY_FILE"] = os.path.join(directory, "no-such.key")
    os.environ.pop("MNA_PUBLIC_KEY", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pg_database():
    """A throwaway PostgreSQL database (mna_web_<random>); yields its DSN or None."""
    return scratch_database("mna_web")
