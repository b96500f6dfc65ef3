"""Classifier: where a destination belongs (vendor / provider / own / local / unknown).

The core only knows "local" (loopback, private and link-local addresses, unix sockets); the
catalogue-driven classifier of the report layer implements the same protocol.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Classification:
    vendor_bound: bool = False
    component: str | None = None
    dest_class: str = "unknown"


UNKNOWN = Classification()
LOCAL = Classification(dest_class="local", component="local")


@runtime_checkable
class Classifier(Protocol):
    def classify(self, host: str | None, port: int | None, dest_ip: str | None) -> Classification: ...


def is_local_address(text: str | None) -> bool:
    if not text:
        return False
    if text in ("localhost", "localhost.localdomain") or text.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


class LocalClassifier:
    """Loopback is ``local``; everything else ``unknown`` until a catalogue says better."""

    def __init__(self) -> None:
        self._cache: dict = {}

    def classify(self, host, port, dest_ip) -> Classification:
        key = (host, dest_ip)
        result = self._cache.get(key)
        if result is None:
            result = LOCAL if is_local_address(host) or is_local_address(dest_ip) else UNKNOWN
            # short keys only: an inbound row's host is the client's Host header, new and long at will
            if len(self._cache) < 4096 and (not isinstance(host, str) or len(host) <= 256):
                self._cache[key] = result
        return result
