"""One module per channel.  Each exposes:

* ``NAME`` — the channel name used in rows and in ``disabled_channels``;
* ``TARGET`` — the module whose import triggers the patch (``None``: patch at install time);
* ``install(patches)`` — wrap the library's entry points through ``patches.wrap`` (the library is
  imported lazily there); an ImportError means "library absent" and the channel is skipped.

Order matters only for readability: the outermost layer owns a call at run time, whatever the
order of installation (see ``capture.begin``).
"""

CHANNEL_MODULES: tuple[str, ...] = (
    "requests",
    "httpx",
    "aiohttp",
    "urllib3",
    "urllib",
    "http_client",
    "smtp",
    "imap",
    "pop3",
    "ftp",
    "subprocess",
    "mp_flush",  # fork/forkserver workers end with os._exit: flush their rows first
    "uvloop",  # loops whose connections never reach the socket layer (see channels/uvloop.py)
    "tls",  # module tls.py, channel name "ssl"
    "socket",
    "audit_hook",
    "ctypes_guard",  # a network symbol fetched through ctypes (see channels/ctypes_guard.py)
    "gevent",  # after socket/tls/subprocess: follows gevent's monkey-patching (see channels/gevent.py)
    # Inbound: the servers whose app is wrapped in the WSGI/ASGI middleware without a code change.
    "uvicorn_app",
    "gunicorn_app",
    "wsgiref_app",
    "werkzeug_app",
)
