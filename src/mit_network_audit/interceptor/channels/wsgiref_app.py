"""wsgiref.simple_server — the app given to the server (``WSGIServer.set_app``, which
``make_server`` calls) is wrapped in ``AuditWSGIMiddleware``."""

from __future__ import annotations

import importlib

from .. import capture
from ..inbound.wsgi import AuditWSGIMiddleware

NAME = "wsgi"
TARGET = "wsgiref.simple_server"


def install(patches) -> None:
    # the module itself: install runs right after it executes, before its package has the attribute
    module = importlib.import_module(TARGET)

    def make_set_app(original):
        def set_app(self, application):
            try:
                if capture.runtime.active and not isinstance(application, AuditWSGIMiddleware):
                    application = AuditWSGIMiddleware(application)
            except Exception:
                capture.counters["errors.install.wsgiref_app"] += 1
            return original(self, application)

        return set_app

    patches.wrap(module.WSGIServer, "set_app", make_set_app)
