"""The storage protocol every journal backend implements (SQLite, PostgreSQL).

A row as read back is a ``JournalRow``: the NetEvent fields plus ``chain_seq``, ``leaf_hash``,
``prev_hash`` and ``row_hash`` (hex strings).  Backends live one per module: ``sqlite.py``,
``postgres.py``; ``open_store(dsn)`` picks one from the DSN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..interceptor.event import NetEvent


@dataclass(frozen=True, slots=True)
class JournalRow:
    chain_seq: int
    event: NetEvent
    leaf_hash: str
    prev_hash: str
    row_hash: str

    def as_dict(self) -> dict:
        d = self.event.as_dict()
        d.update(chain_seq=self.chain_seq, leaf_hash=self.leaf_hash, prev_hash=self.prev_hash,
                 row_hash=self.row_hash)
        return d


@dataclass(slots=True)
class RowFilter:
    """Filters for reads; every field optional.  Times are microseconds since the epoch."""

    direction: str | None = None
    channel: str | None = None
    host: str | None = None
    addon: str | None = None
    vendor_bound: bool | None = None
    outcome: str | None = None
    dest_class: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    text: str | None = None  # substring over host / addon / path
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    dsn: str

    # --- writing -----------------------------------------------------------------------------
    def append(self, events: Sequence[NetEvent]) -> list[JournalRow]:
        """Chain and append one batch atomically; returns the rows as written."""

    # --- reading -----------------------------------------------------------------------------
    def head(self) -> JournalRow | None:
        """The newest row (highest chain_seq), or None for an empty journal."""

    def get(self, chain_seq: int) -> JournalRow | None: ...

    def get_by_event_id(self, event_id: str) -> JournalRow | None: ...

    def rows(self, flt: RowFilter | None = None, *, before_seq: int | None = None,
             limit: int = 100, after_seq: int | None = None) -> list[JournalRow]:
        """Newest first; keyset pagination: pass the last row's chain_seq as ``before_seq``.
        ``after_seq`` bounds the search from below (rows with chain_seq > after_seq only)."""

    def count(self, flt: RowFilter | None = None) -> int: ...

    def iter_range(self, start_seq: int = 1, end_seq: int | None = None,
                   batch: int = 10_000) -> Iterator[JournalRow]:
        """Oldest first, for verify / rollup / export."""

    def min_seq(self) -> int | None:
        """Lowest chain_seq still stored (rows below were removed by a retention vacuum)."""

    def max_seq(self) -> int:
        """Highest chain_seq (0 for an empty journal)."""

    def iter_raw(self, start_seq: int = 1, end_seq: int | None = None, batch: int = 10_000) -> Iterator[tuple]:
        """Stored tuples in column order (``schema.COLUMNS``), oldest first: verify's fast path."""

    # --- key/value metadata kept with the journal (journal id, rollup watermark, settings) ----
    def meta_get(self, key: str) -> str | None: ...

    def meta_set(self, key: str, value: str) -> None: ...

    def execute_raw(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Escape hatch for the report/rollup/checkpoint layers' own tables (same connection)."""

    def close(self) -> None: ...
