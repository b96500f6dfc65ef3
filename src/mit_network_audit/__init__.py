"""MIT Network Audit: prove where a Python server's data goes.

    import mit_network_audit
    mit_network_audit.install(sink=mit_network_audit.MemorySink())

The interceptor core lives in ``mit_network_audit.interceptor`` (standard library only);
the journal, report, CLI and web layers build on it (DESIGN §2).
"""

from .interceptor import (
    MemorySink,
    NetEvent,
    install,
    set_disabled_channels,
    stats,
    suppressed,
    uninstall,
)

__all__ = ["MemorySink", "NetEvent", "install", "set_disabled_channels", "stats", "suppressed", "uninstall"]
__version__ = "0.1.0"
