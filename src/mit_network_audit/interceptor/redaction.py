"""RedactionPolicy: what of a URL and its headers may be stored.  Values never are.

* header names are kept, values masked (a short allowlist keeps harmless values: content-type...);
* path segments that look like tokens, keys, e-mail addresses, UUIDs or long numbers are masked
  with a typed placeholder (``:token``, ``:email``, ``:uuid``, ``:num``), and so is free text
  (a segment with white space in it, ``/search/jane%20doe``: content, not a route) as ``:text``;
* of the query string only the parameter names are kept (and a token-like name is masked too);
* ``fingerprint`` = HMAC-SHA256 under a per-installation secret salt over method, full URL and
  body bytes, fed while the body streams; two identical requests match, nobody can invert it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

MASK = "***"
SAFE_HEADER_VALUES = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding", "accept", "accept-encoding",
     "connection", "upgrade"}
)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_LONG_NUMBER = re.compile(r"^\+?\d[\d\-.]{5,}$")
_HEX = re.compile(r"^[0-9a-fA-F]{16,}$")
_WORDY = re.compile(r"^[a-z]+(?:[-_.][a-z]+)*$|^[A-Za-z][a-z]+(?:[A-Z][a-z]+)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE = re.compile(r"\s")
_MEMO_VALUE_TYPES = (str, bytes)
# Memos keep only short keys: hot loops repeat short URLs, and what a hostile peer sends (an inbound
# path, header names) may be long and new every time — a memo of 4096 such keys of 64 KiB each
# would hold hundreds of MB for the life of the process.
_MEMO_MAX_LEN = 256
# What one row may keep of a value a client chooses (an inbound Host, path, header name, query key):
# beyond it the text is cut and marked, so a hostile request cannot make each row tens of KB.
HOST_MAX, PATH_MAX, NAME_MAX, QUERY_KEYS_MAX = 253, 2048, 128, 64
CUT = "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + CUT
_MEMO_MAX_URL_LEN = 2048


@dataclass(frozen=True, slots=True)
class UrlParts:
    scheme: str | None
    host: str | None
    port: int | None
    path: str
    query: str


@runtime_checkable
class RedactionPolicy(Protocol):
    def split_url(self, url: str) -> UrlParts: ...

    def host(self, host: str) -> str: ...

    def path(self, path: str | None) -> str | None: ...

    def query_keys(self, query: str | None) -> tuple[str, ...]: ...

    def headers(self, pairs: Iterable) -> tuple[str, ...]: ...

    def fingerprint(self, method: str, url: str):
        """A hashlib-like object (``update``, ``hexdigest``) already fed method and URL."""


def _entropy_bits_per_char(text: str) -> float:
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def classify_segment(segment: str) -> str | None:
    """The placeholder a path segment must be masked with, or None if it may be kept."""
    if not segment:
        return None
    text = unquote(segment)
    if "@" in text:
        return ":email"
    if _SPACE.search(text):
        return ":text"
    if _UUID.match(text):
        return ":uuid"
    if _LONG_NUMBER.match(text) and sum(ch.isdigit() for ch in text) >= 6:
        return ":num"
    if len(text) >= 16 and _HEX.match(text):
        return ":token"
    if len(text) >= 12 and not _WORDY.match(text):
        has_digit = any(ch.isdigit() for ch in text)
        has_alpha = any(ch.isalpha() for ch in text)
        mixed_case = any(ch.isupper() for ch in text) and any(ch.islower() for ch in text)
        if (has_digit and has_alpha) or (mixed_case and len(text) >= 16) or _entropy_bits_per_char(text) > 3.5:
            return ":token"
    if len(text) >= 40:
        return ":token"
    return None


class DefaultRedaction:
    """The standalone policy.  ``salt`` keys the fingerprint; keep it secret and stable."""

    def __init__(self, salt: bytes, safe_headers: Iterable[str] = SAFE_HEADER_VALUES) -> None:
        self._safe = frozenset(h.lower() for h in safe_headers)
        self._segment_cache: dict[str, str] = {}
        self._header_cache: dict = {}  # raw header name -> (clean lower name, keeps its value)
        self._url_cache: dict[str, UrlParts] = {}
        self._host_cache: dict[str, str] = {}
        self._safe_value_cache: dict = {}  # (clean name, raw value) of an allowlisted header -> its text
        # Keyed once: each fingerprint copies this (the salt's HMAC pads are not recomputed per call).
        self._mac = hmac.new(salt, digestmod=hashlib.sha256)

    def split_url(self, url: str) -> UrlParts:
        cached = self._url_cache.get(url)
        if cached is not None:
            return cached
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        result = UrlParts(parts.scheme or None, parts.hostname, port, parts.path or "/", parts.query)
        if len(self._url_cache) < 2048 and len(url) <= _MEMO_MAX_URL_LEN:  # hot loops repeat URLs (memory only)
            self._url_cache[url] = result
        return result

    def host(self, host: str) -> str:
        clean = self._host_cache.get(host)
        if clean is None:
            clean = _cut(_CONTROL.sub("", host).lower().rstrip(".") or host, HOST_MAX)
            if len(self._host_cache) < 1024 and len(host) <= _MEMO_MAX_LEN:
                self._host_cache[host] = clean
        return clean

    def path(self, path: str | None) -> str | None:
        if path is None:
            return None
        path = path.split("#", 1)[0].split("?", 1)[0]
        cache = self._segment_cache
        out = []
        for segment in path.split("/"):
            masked = cache.get(segment)
            if masked is None:
                segment_clean = segment.split(";", 1)[0]
                masked = classify_segment(segment_clean) or _CONTROL.sub("", segment_clean)
                if len(cache) < 4096 and len(segment) <= _MEMO_MAX_LEN:
                    cache[segment] = masked
            out.append(masked)
        return _cut("/".join(out), PATH_MAX)

    def query_keys(self, query: str | None) -> tuple[str, ...]:
        if not query:
            return ()
        keys = set()
        for pair in query.replace(";", "&").split("&"):
            if not pair:
                continue
            key = unquote(pair.split("=", 1)[0].replace("+", " "))
            keys.add(_cut(classify_segment(key) or _CONTROL.sub("", key), NAME_MAX))
        ordered = sorted(keys)
        return tuple(ordered) if len(ordered) <= QUERY_KEYS_MAX else (*ordered[:QUERY_KEYS_MAX], CUT)

    def headers(self, pairs: Iterable) -> tuple[str, ...]:
        out = []
        cache, safe_values = self._header_cache, self._safe_value_cache
        for name, value in pairs or ():
            known = cache.get(name)
            if known is None:
                clean = _cut(_CONTROL.sub("", name.decode("latin-1") if isinstance(name, bytes) else str(name))
                             .strip().lower(), NAME_MAX)
                known = (clean, clean in self._safe, f"{clean}: {MASK}")
                if len(cache) < 1024 and (not isinstance(name, _MEMO_VALUE_TYPES) or len(name) <= _MEMO_MAX_LEN):
                    cache[name] = known
            if known[1]:
                # Only str/bytes values are memoised: keyed by equality, 1, True and 1.0 would share a text.
                memo = type(value) in _MEMO_VALUE_TYPES and len(value) <= _MEMO_MAX_LEN
                text = safe_values.get((known[0], value)) if memo else None
                if text is None:
                    raw = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    text = f"{known[0]}: {_CONTROL.sub('', raw)[:100]}"
                    if memo and len(safe_values) < 1024:
                        safe_values[(known[0], value)] = text
                out.append(text)
            else:
                out.append(known[2])
        return tuple(out)

    def fingerprint(self, method: str, url: str):
        mac = self._mac.copy()
        mac.update(f"{method.upper()} {url}\n".encode("utf-8", "surrogateescape"))
        return mac


def default_salt_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.environ.get("MNA_SALT_FILE") or os.path.join(base, "mit-network-audit", "fingerprint.salt")


def load_or_create_salt(path: str | None = None) -> bytes:
    """The per-installation secret salt (32 random bytes in a 0600 file, made on first use).

    If the file cannot be read or written, a per-process random salt is used: fingerprints then
    only match within one process, which is safe, just less useful."""
    path = path or default_salt_path()
    try:
        with open(path, "rb") as fh:
            salt = fh.read()
        if len(salt) >= 16:
            return salt
    except OSError:
        pass
    salt = os.urandom(32)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(salt)
    except FileExistsError:  # another process won the race: use theirs
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        pass
    return salt
