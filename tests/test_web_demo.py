"""`demo --open` serves the complete dashboard (web.server.create_dashboard), like `serve`."""

from __future__ import annotations

import re

import uvicorn
from fastapi.testclient import TestClient

from mit_network_audit.journal import open_store
from mit_network_audit.web import demo


def test_demo_serves_the_complete_dashboard(tmp_path, monkeypatch, capsys):
    """It served the core pages only (create_app): its officer account found no Settings, Forensic,
    grouped log, signed export or "prove this row", and the record's "Captured body" link was a 404."""
    dsn = f"sqlite:///{tmp_path}/demo.db"
    open_store(dsn).close()
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setattr(demo.webbrowser, "open", lambda url: None)
    demo.serve_demo(dsn, 18999)
    password = re.search(r"password: (\S+)", capsys.readouterr().out).group(1)
    assert served["host"] == "127.0.0.1"
    client = TestClient(served["app"])
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"username": "demo", "password": password, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    for route in ("/settings", "/forensic", "/log/groups", "/export"):
        assert client.get(route).status_code == 200, route
