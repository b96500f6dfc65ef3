"""Idempotence markers: post_load may run more than once per process (first import, Apps install,
registry reload, ``--load`` and install together); each patch must apply exactly once."""

from __future__ import annotations

MARKER = "_mit_network_audit_patched"


def mark_once(target, marker: str = MARKER) -> bool:
    """True the first time for ``target`` (and marks it); False afterwards."""
    if getattr(target, marker, False):
        return False
    try:
        setattr(target, marker, True)
    except Exception:
        return False
    return True


def wrap_call_once(cls, make_wrapper, name: str = "__call__", marker: str = MARKER) -> bool:
    """Replace ``cls.name`` by ``make_wrapper(original)`` once; the original is kept on the wrapper."""
    if cls.__dict__.get(marker):
        return False
    original = cls.__dict__[name]
    wrapper = make_wrapper(original)
    wrapper.__wrapped__ = original
    setattr(cls, name, wrapper)
    setattr(cls, marker, True)
    return True
