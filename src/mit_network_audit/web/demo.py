"""`demo --open`: serve the dashboard on the demo journal with a fresh officer account."""

from __future__ import annotations

import secrets
import threading
import webbrowser

from ..journal import open_store
from .auth import Accounts


def serve_demo(dsn: str, port: int) -> None:
    import uvicorn

    from .server import create_dashboard

    accounts = Accounts(open_store(dsn))
    password = secrets.token_urlsafe(12)
    if accounts.get("demo"):
        accounts.set_password("demo", password)
    else:
        accounts.add("demo", "officer", password)
    url = f"http://127.0.0.1:{port}/"
    print(f"\ndashboard: {url}  user: demo  password: {password}\n(Ctrl-C to stop)")
    threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(create_dashboard(dsn), host="127.0.0.1", port=port, log_level="warning")
