"""Inbound: the requests a server receives, as pure WSGI and ASGI middleware."""

from .asgi import AuditASGIMiddleware
from .wsgi import AuditWSGIMiddleware

__all__ = ["AuditASGIMiddleware", "AuditWSGIMiddleware"]
