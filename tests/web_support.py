"""A real dashboard on a free loopback port (uvicorn in a thread) over a journal with accounts."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
import uvicorn

from mit_network_audit.journal import open_store
from mit_network_audit.web.app import create_app
from mit_network_audit.web.auth import Accounts

PASSWORD = "correct horse battery"
ROLES = ("viewer", "auditor", "officer")
# Screenshots of the browser tests: under docs/ only when asked (MNA_UPDATE_SCREENSHOTS=1), so an
# ordinary test run leaves the work tree clean.
SHOTS = (os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "screenshots")
         if os.environ.get("MNA_UPDATE_SCREENSHOTS") == "1"
         else os.path.join(os.environ.get("TMPDIR", "/tmp"), "mna-screenshots"))
os.makedirs(SHOTS, exist_ok=True)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def need_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (scripts/setup --test installs it)")


def chromium_browser():
    """Generator for a module-scoped fixture: real headless Debian chromium through Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def run_demo(dsn: str) -> None:
    """Write the demo journal (real loopback traffic under audit) into ``dsn``."""
    done = subprocess.run([sys.executable, "-m", "mit_network_audit.cli", "demo", "--db", dsn],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class LiveServer:
    def __init__(self, dsn: str) -> None:
        accounts = Accounts(open_store(dsn))
        for role in ROLES:
            if not accounts.get(role):
                accounts.add(role, role, PASSWORD)
        self.token = accounts.new_token("auditor")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(dsn), host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)

    def login(self, role: str) -> requests.Session:
        session = requests.Session()
        form = session.get(self.url + "/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        r = session.post(self.url + "/login", data={"username": role, "password": PASSWORD, "csrf": csrf},
                         allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/report", r.text
        return session

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
