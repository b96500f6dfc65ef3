"""gunicorn — the WSGI app each worker loads (``Worker.load_wsgi``) is wrapped in
``AuditWSGIMiddleware``, so ``mit-network-audit run -- gunicorn app:app`` audits the requests its
workers receive.  Only gunicorn's own (WSGI) workers: an ASGI worker class such as uvicorn's serves
through uvicorn, which ``uvicorn_app`` wraps."""

from __future__ import annotations

import importlib

from .. import capture
from ..inbound.wsgi import AuditWSGIMiddleware, app_name_of

NAME = "wsgi"
TARGET = "gunicorn.workers.base"


def install(patches) -> None:
    # the module itself: install runs right after it executes, before its package has the attribute
    module = importlib.import_module(TARGET)

    def make_load_wsgi(original):
        def load_wsgi(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            try:
                if (capture.runtime.active and type(self).__module__.startswith("gunicorn.")
                        and not isinstance(self.wsgi, AuditWSGIMiddleware)):
                    uri = getattr(self.cfg, "wsgi_app", None) or getattr(self.app, "app_uri", None)
                    self.wsgi = AuditWSGIMiddleware(self.wsgi, app_name=app_name_of(uri))
            except Exception:
                capture.counters["errors.install.gunicorn_app"] += 1
            return result

        return load_wsgi

    patches.wrap(module.Worker, "load_wsgi", make_load_wsgi)
