"""Shared route parameters: sequence numbers bounded so an absurd value is a 422, never a 500 from the
database driver (SQLite and PostgreSQL integers are 64-bit); a search term bounded for the same reason
(SQLite refuses a LIKE pattern over 50,000 bytes: "LIKE or GLOB pattern too complex")."""

from __future__ import annotations

from fastapi import Path, Query

MAX_SEQ = 2**62
SEQ = Path(ge=1, le=MAX_SEQ, description="the row's chain_seq")
BEFORE = Query(None, ge=1, le=MAX_SEQ, description="keyset pagination: rows with a chain_seq below this")
SEARCH = Query(None, max_length=2000, description="text search (a substring of host, module or path)")
