"""uvicorn — the app it serves is wrapped in ``AuditASGIMiddleware`` when uvicorn loads it
(``Config.load``, in every worker process), so ``mit-network-audit run -- uvicorn app:app`` audits
the requests the program receives without a change to it.  The row's owner is the app's module,
from uvicorn's import string (``app`` of ``app:app``) when it has one."""

from __future__ import annotations

import importlib

from .. import capture
from ..inbound.asgi import AuditASGIMiddleware
from ..inbound.wsgi import app_name_of

NAME = "asgi"  # the rows are the middleware's, disabled with it
TARGET = "uvicorn.config"


def install(patches) -> None:
    # the module itself: install runs right after it executes, before its package has the attribute
    module = importlib.import_module(TARGET)

    def make_load(original):
        def load(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            try:
                if capture.runtime.active and not isinstance(self.loaded_app, AuditASGIMiddleware):
                    self.loaded_app = AuditASGIMiddleware(self.loaded_app, app_name=app_name_of(self.app))
            except Exception:  # the server still serves, unaudited: counted
                capture.counters["errors.install.uvicorn_app"] += 1
            return result

        return load

    patches.wrap(module.Config, "load", make_load)
