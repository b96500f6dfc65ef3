"""Sink: where finished events go.  ``emit`` must be cheap and must not block the caller."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from .event import NetEvent


@runtime_checkable
class Sink(Protocol):
    def emit(self, event: NetEvent) -> None: ...


class MemorySink:
    """Keeps events in a list (``.events``): for embedding and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[NetEvent] = []

    def emit(self, event: NetEvent) -> None:
        with self._lock:
            self.events.append(event)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def of(self, channel: str | None = None, direction: str | None = None) -> list[NetEvent]:
        with self._lock:
            return [e for e in self.events
                    if (channel is None or e.channel == channel) and (direction is None or e.direction == direction)]


class NullSink:
    def emit(self, event: NetEvent) -> None:
        pass
