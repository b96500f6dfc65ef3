"""werkzeug's development server (Flask's ``app.run``, ``werkzeug.serving.run_simple`` and
``make_server``) — the app handed to ``BaseWSGIServer`` is wrapped in ``AuditWSGIMiddleware``."""

from __future__ import annotations

import importlib

from .. import capture
from ..inbound.wsgi import AuditWSGIMiddleware

NAME = "wsgi"
TARGET = "werkzeug.serving"


def install(patches) -> None:
    # the module itself: install runs right after it executes, before its package has the attribute
    module = importlib.import_module(TARGET)

    def make_init(original):
        def __init__(self, host, port, app, *args, **kwargs):
            try:
                if capture.runtime.active and not isinstance(app, AuditWSGIMiddleware):
                    app = AuditWSGIMiddleware(app)
            except Exception:
                capture.counters["errors.install.werkzeug_app"] += 1
            return original(self, host, port, app, *args, **kwargs)

        return __init__

    patches.wrap(module.BaseWSGIServer, "__init__", make_init)
