"""gevent: ``monkey.patch_all()`` *after* ``install()`` replaces ``socket.socket``, ``ssl.SSLContext`` /
``SSLSocket`` and ``subprocess.Popen`` with gevent's own classes, which our patches were never
applied to — raw sockets would then only reach the audit hook (no bytes), and gevent's ``Popen``
(fork + ``os.execvp`` in the child) no row in the parent.

gevent announces every patch through ``gevent.events.subscribers`` (zope.event).  On "did patch
module socket / ssl / subprocess" (and "did patch all") this channel installs the matching channels
once more, *additively*: what is already wrapped (the stdlib classes, and anything gevent
inherits from them) is left as it is, gevent's new classes get wrapped too, and ``uninstall()``
restores both.  When ``patch_all()`` ran *before* ``install()`` nothing is needed: the channels
wrap gevent's classes in the first place.  Mail/FTP/HTTP channels wrap library classes gevent
never replaces.
"""

from __future__ import annotations

from .. import capture
from ..patching import MARKER, Patches

NAME = "gevent"
TARGET = "gevent"

# gevent module name -> our channel modules that wrap something in it
_FOLLOW = {"socket": ("socket",), "ssl": ("tls",), "subprocess": ("subprocess",), "os": ("subprocess",)}
_state = {"subscribed": None}


class _Additive(Patches):
    """Patches that skip what is already ours (re-installing over partly replaced modules)."""

    def wrap(self, owner, attr, make_wrapper):
        current = getattr(owner, attr, None)
        if getattr(current, MARKER, None) is not None:
            return None
        return super().wrap(owner, attr, make_wrapper)


def follow(channel_names) -> None:
    """Wrap what gevent put in place of the objects ``channel_names`` had wrapped."""
    from .. import _channel_module, _installed, _lock

    with _lock:
        for name in channel_names:
            patches = _installed.get(name)
            if patches is None or not capture.runtime.active:
                continue
            extra = _Additive()
            try:
                _channel_module(name).install(extra)
            except Exception:
                extra.undo()
                capture.counters[f"errors.gevent_follow.{name}"] += 1
                continue
            patches.applied.extend(extra.applied)
            capture.counters["gevent.followed"] += len(extra.applied)
        _count_sendall_once()
        _greenlet_local_flags()


def _greenlet_local_flags() -> None:
    """The socket channel marks "inside our connect wrapper" in a ``threading.local`` made at import.
    Made before ``patch_all()`` it is shared by every greenlet of the thread, so one greenlet's
    flag leaks into another's connect (a spurious audit row, or a missed one).  After patching,
    ``threading.local`` is gevent's greenlet-local: give the channel a fresh one."""
    import threading

    from . import socket as socket_channel

    if threading.local.__module__.startswith("gevent") and \
            not type(socket_channel.in_wrapper).__module__.startswith("gevent"):
        socket_channel.in_wrapper = threading.local()


def _count_sendall_once() -> None:
    """gevent's ``sendall`` is Python that loops over ``self.send`` (the stdlib's is C): with both
    wrapped by the socket channel every byte would be counted twice.  ``send`` sees them all, so
    the ``sendall`` wrapper is taken off gevent's socket class (never off the stdlib's)."""
    import socket as socket_module

    from .. import _installed

    cls = socket_module.socket
    patches = _installed.get("socket")
    if patches is None or not cls.__module__.startswith("gevent"):
        return
    for patch in list(patches.applied):
        if patch.owner is cls and patch.attr == "sendall":
            patch.restore()
            patches.applied.remove(patch)


def _on_event(event) -> None:
    try:
        from gevent import events

        if isinstance(event, events.GeventDidPatchModuleEvent):
            names = _FOLLOW.get(getattr(event, "module_name", ""), ())
        elif isinstance(event, events.GeventDidPatchAllEvent):
            names = ("socket", "tls", "subprocess")
        else:
            return
        if names:
            follow(names)
    except Exception:  # an exception here would break gevent's patching: never
        capture.counters["errors.gevent_event"] += 1


def install(patches) -> None:
    from gevent import events

    if _on_event not in events.subscribers:
        events.subscribers.append(_on_event)
    _state["subscribed"] = events.subscribers
    follow(("socket", "tls", "subprocess"))  # patch_all() may have run before install()


def uninstall() -> None:
    subscribers = _state["subscribed"]
    if subscribers is not None and _on_event in subscribers:
        subscribers.remove(_on_event)
