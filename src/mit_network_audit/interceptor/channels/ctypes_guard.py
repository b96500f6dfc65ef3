"""ctypes: code that calls libc's ``connect``/``sendto`` (or libcurl, OpenSSL) through ctypes goes
around every Python socket object — no patch and no ``socket.connect`` audit event sees it.

What CPython does announce is the *symbol lookup*: the ``ctypes.dlsym`` audit event fires when a
foreign function is first fetched from a library (``libc.connect``).  Fetching one of the network
symbols below gives an ``audit`` row (``method`` = ``ctypes``, ``path`` = the symbol name),
attributed to the code that fetched it, so the report's "bypassing connections" line shows it.
It cannot tell where the connection went or how often the function is called afterwards: that
would take a syscall-level monitor (seccomp notify, eBPF), named in docs/coverage.md.
"""

from __future__ import annotations

from .. import capture
from . import _audit_events

NAME = "audit"
TARGET = None

NETWORK_SYMBOLS = frozenset({
    "connect", "sendto", "sendmsg", "sendmmsg", "getaddrinfo", "gethostbyname", "gethostbyname_r",
    "res_query", "res_search", "res_nquery", "curl_easy_perform", "curl_multi_perform", "SSL_connect",
    "BIO_do_connect", "uv_tcp_connect",
})


def _hook(event, args):
    try:
        name = args[1] if len(args) > 1 else None
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if not isinstance(name, str) or name not in NETWORK_SYMBOLS:
            return
        if capture.is_suppressed() or capture.current() is not None or not capture.runtime.active:
            return
        call = capture.begin(NAME, method="ctypes", path=name)
        if call is not None:
            capture.end(call)
    except Exception:
        capture.counters["errors.ctypes_guard"] += 1


def install(patches) -> None:
    _audit_events.register(("ctypes.dlsym",), _hook)


def uninstall() -> None:
    _audit_events.unregister(("ctypes.dlsym",))
