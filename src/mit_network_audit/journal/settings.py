"""Settings, stored with the journal and journaled themselves (issue 8, part 1).

``SETTINGS`` is the single source of truth: every key, its type, default, help text and validator.
Values live in the journal database's ``mna_meta`` table under ``setting.<key>`` as canonical text
(``true``/``false``, decimal integers, comma lists), next to a ``settings_version`` token that every
change replaces, so a running process learns of a change with one cheap read (``runner.live_settings``).

* ``get_settings(store)`` — every known key with its value (parsed) or its default.
* ``set_setting(store, key, raw, *, actor)`` — validate, append an ``internal`` ``settings`` row to
  the journal (``{"actor", "key", "old", "new"}``; a secret's value is never written) *before* the
  value is stored, then store it.  An unknown key or a bad value raises ``SettingRefused`` and writes
  nothing.  Setting a key to the value it already has writes nothing either.
* ``set_settings(store, {key: raw, ...}, actor=...)`` — the same for several keys: all are validated
  before the first one is written.

The forensic keys and their defaults come from ``journal.forensic.DEFAULTS`` (not repeated here).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..interceptor import capture
from ..interceptor.event import internal_event
from . import forensic

PREFIX = "setting."
VERSION_KEY = "settings_version"  # replaced by every change: what the live pollers watch

# The channel names rows carry (DESIGN §3); the ones ``capture.disabled_channels`` may name.
CHANNELS = (
    "requests", "urllib", "http.client", "urllib3", "httpx", "aiohttp", "smtp", "imap", "pop3", "ftp",
    "ssl", "socket", "subprocess", "wsgi", "asgi", "audit",
)


class SettingRefused(ValueError):
    """An unknown key or a bad value: nothing was written.  The message says what to do instead."""


# -- value types ------------------------------------------------------------------------------------
def _split(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, (list, tuple, set, frozenset)):
        items = [str(v) for v in raw]
    else:
        text = str(raw).strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except ValueError:
                raise SettingRefused(f"{text!r} is not a JSON list; write a comma list such as a,b") from None
            if not isinstance(loaded, list):
                raise SettingRefused(f"{text!r}: expected a list")
            items = [str(v) for v in loaded]
        else:
            items = text.split(",")
    out: list[str] = []
    for item in (i.strip() for i in items):
        if any(ord(c) < 32 or ord(c) == 127 for c in item):
            raise SettingRefused(f"{item!r} contains a control character")
        if item and item not in out:
            out.append(item)
    return out


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise SettingRefused(f"{raw!r} is not a switch: use true or false")


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise SettingRefused(f"{raw!r} is not a whole number")
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise SettingRefused(f"{raw!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            limits = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingRefused(f"{value} is out of range: use a number {limits}")
        return value

    return parse


def _names(raw: Any) -> list[str]:
    items = _split(raw)
    for item in items:
        if any(c.isspace() for c in item) or len(item) > 255:
            raise SettingRefused(f"{item!r} is not a host or addon name")
    return items


def _channels(raw: Any) -> list[str]:
    items = _split(raw)
    unknown = [c for c in items if c not in CHANNELS]
    if unknown:
        raise SettingRefused(
            f"unknown channel(s) {', '.join(map(repr, unknown))}: use a comma list of {', '.join(CHANNELS)} "
            "(empty = capture everything)"
        )
    return sorted(items, key=CHANNELS.index)


def _text(value: Any) -> str:
    """A parsed value as the canonical text stored in ``mna_meta`` (and shown in settings rows)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(value)
    return str(value)


as_text = _text  # public name


# -- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    key: str
    type: str  # bool | int | list | channels
    default: Any
    help: str
    validator: Callable[[Any], Any]  # raw (text or value) -> parsed value; raises SettingRefused
    secret: bool = False  # never written to a settings row (old/new show "(secret)")
    unit: str = ""

    def parse(self, raw: Any) -> Any:
        try:
            return self.validator(raw)
        except SettingRefused as exc:
            raise SettingRefused(f"{self.key}: {exc}") from None

    def text(self, value: Any) -> str:
        return _text(value)


def _forensic_max(raw: Any) -> int:
    return _int(0, forensic.MAX_BYTES_CEILING)(raw)


_FD = forensic.DEFAULTS
SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting(
            "capture.disabled_channels", "channels", [],
            "Channels not recorded, as a comma list (e.g. socket,smtp); empty = capture everything. "
            "Applied live in every audited process; while any is disabled the Trust Report says Review.",
            _channels,
        ),
        Setting(
            "retention.days", "int", 90,
            "Days journal rows are kept: vacuum without --older-than removes older rows "
            "(anchor row and signed checkpoint first).",
            _int(1, 36500), unit="days",
        ),
        Setting(
            "rollup.interval_s", "int", 60,
            "Seconds between rollup passes of rollup --loop (the pages also roll up on demand).",
            _int(1, 86400), unit="s",
        ),
        Setting(
            "checkpoint.interval_s", "int", 300,
            "Seconds between signed checkpoints of checkpoint --loop (unless --interval is given).",
            _int(1, 7 * 86400), unit="s",
        ),
        Setting(
            "verify.interval_s", "int", 900,
            "Seconds between the dashboard's re-checks of the whole chain, checkpoints and rollup "
            "(the Trust Report page shows the newest result; an auditor can re-check at once).",
            _int(10, 7 * 86400), unit="s",
        ),
        Setting(
            "forensic.enabled", "bool", _FD["forensic.enabled"],
            "Forensic body capture on/off (officers only; while on, the Trust Report says Review).",
            _bool,
        ),
        Setting(
            "forensic.addons", "list", list(_FD["forensic.addons"]),
            "Owners (addons) whose request bodies are captured, comma list; * = any.",
            _names,
        ),
        Setting(
            "forensic.hosts", "list", list(_FD["forensic.hosts"]),
            "Destination hosts whose request bodies are captured, comma list; * = any.",
            _names,
        ),
        Setting(
            "forensic.max_bytes", "int", _FD["forensic.max_bytes"],
            f"Bytes kept per captured body (0 to {forensic.MAX_BYTES_CEILING}); longer bodies are truncated.",
            _forensic_max, unit="bytes",
        ),
        Setting(
            "forensic.retention_days", "int", _FD["forensic.retention_days"],
            "Days a captured body is kept before it is purged.",
            _int(1, 36500), unit="days",
        ),
    )
}
assert set(forensic.DEFAULTS) <= set(SETTINGS), "every forensic default must be a setting"


def known(key: str) -> Setting:
    setting = SETTINGS.get(key)
    if setting is None:
        close = [k for k in SETTINGS if k.split(".")[-1] == key.split(".")[-1] or k.startswith(key)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SettingRefused(f"unknown setting {key!r}{hint}: known keys are {', '.join(SETTINGS)}")
    return setting


def describe() -> str:
    """One line per key (for --help and docs): key, default, help."""
    return "\n".join(f"{s.key} (default {_text(s.default) or 'empty'}): {s.help}" for s in SETTINGS.values())


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, raw value).  VALUE may be empty (``capture.disabled_channels=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SettingRefused(f"{text!r}: write KEY=VALUE, e.g. capture.disabled_channels=socket,smtp")
    return key.strip(), value.strip()


# -- reading ----------------------------------------------------------------------------------------
def _stored(store) -> dict[str, str]:
    """Every ``setting.*`` meta value, in one query (fallback: one ``meta_get`` per key)."""
    execute_raw = getattr(store, "execute_raw", None)
    if execute_raw is not None:
        p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
        rows = execute_raw(f"SELECT key, value FROM mna_meta WHERE key LIKE {p}", (PREFIX + "%",))
        return {k[len(PREFIX):]: v for k, v in rows if k.startswith(PREFIX)}
    out = {}
    for key in SETTINGS:
        value = store.meta_get(PREFIX + key)
        if value is not None:
            out[key] = value
    return out


def _value(setting: Setting, raw: str | None) -> Any:
    if raw is None:
        return _copy(setting.default)
    try:
        return setting.validator(raw)
    except (SettingRefused, ValueError):
        # A value that no longer parses (written by hand, or by an older version): the default, counted.
        capture.counters["errors.settings_value"] += 1
        return _copy(setting.default)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def from_stored(stored: Mapping[str, str]) -> dict[str, Any]:
    """Stored text per key -> the full settings dict (every key; defaults for the missing ones)."""
    return {key: _value(setting, stored.get(key)) for key, setting in SETTINGS.items()}


def get_settings(store) -> dict[str, Any]:
    """Every known key with its value, or its default when it was never set."""
    with capture.suppressed():
        return from_stored(_stored(store))


def get_text(store) -> dict[str, str]:
    """Every known key as its canonical text (what ``settings get`` prints)."""
    return {k: _text(v) for k, v in get_settings(store).items()}


def version(store) -> str | None:
    """The token every change replaces (None until the first change)."""
    with capture.suppressed():
        return store.meta_get(VERSION_KEY)


def is_default(key: str, value: Any) -> bool:
    return _text(value) == _text(SETTINGS[key].default)


# -- writing ----------------------------------------------------------------------------------------
def set_setting(store, key: str, raw: Any, *, actor: str) -> None:
    """Validate, journal (``internal`` ``settings`` row: actor, key, old -> new), then store."""
    set_settings(store, {key: raw}, actor=actor)


def set_settings(store, changes: Mapping[str, Any] | Iterable[tuple[str, Any]], *, actor: str) -> list[dict]:
    """Several keys at once: every key and value is validated before anything is written; then each
    change is journaled and stored in turn.  Returns the changes made (``{"key", "old", "new"}``;
    a key set to the value it already has is not a change and writes nothing)."""
    actor = str(actor or "").strip()
    if not actor:
        raise SettingRefused("a settings change needs the name of who makes it (actor)")
    items = list(changes.items() if isinstance(changes, Mapping) else changes)
    if not items:
        raise SettingRefused("nothing to set: give KEY=VALUE")
    parsed: list[tuple[Setting, str]] = []
    for key, raw in items:
        setting = known(str(key).strip())
        parsed.append((setting, _text(setting.parse(raw))))
    made = []
    with capture.suppressed(), _writers_lock(store):
        current = {k: _text(v) for k, v in from_stored(_stored(store)).items()}
        for setting, new in parsed:
            old = current[setting.key]
            if old == new:
                continue
            shown_old, shown_new = ("(secret)", "(secret)") if setting.secret else (old, new)
            detail = json.dumps(
                {"actor": actor, "key": setting.key, "old": shown_old, "new": shown_new}, sort_keys=True
            )
            store.append([internal_event("settings", detail=detail)])  # journaled first: no row, no change
            store.meta_set(PREFIX + setting.key, new)
            store.meta_set(VERSION_KEY, uuid.uuid4().hex)
            current[setting.key] = new
            made.append({"key": setting.key, "old": shown_old, "new": shown_new})
    return made


LOCK_KEY = 0x6D6E615F73657474  # "mna_sett": PostgreSQL advisory lock serialising settings writers


class _writers_lock:
    """PostgreSQL: one settings writer at a time (session advisory lock), so each row's ``old`` is
    the previous row's ``new`` even when two officers save at once.  SQLite: nothing (the append's
    own ``BEGIN IMMEDIATE`` serialises the rows; two simultaneous changes of one key may both name
    the same ``old``)."""

    def __init__(self, store) -> None:
        self.store = store if getattr(store, "kind", "") == "postgres" else None

    def __enter__(self):
        if self.store is not None:
            self.store.execute_raw("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        return self

    def __exit__(self, *exc):
        if self.store is not None:
            try:
                self.store.execute_raw("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            except Exception:
                pass  # a broken connection releases its session locks by itself
        return False


def changes_in(store, since_us: int, key: str | None = None, limit: int = 200) -> list[dict]:
    """The ``settings`` rows logged since ``since_us`` (newest first): seq, at_us, actor, key, old, new."""
    p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
    rows = store.execute_raw(
        "SELECT chain_seq, logged_at_us, detail FROM egress_log WHERE direction = 'internal' "
        f"AND method = 'settings' AND logged_at_us >= {p} ORDER BY chain_seq DESC LIMIT {p}",
        (int(since_us), int(limit)),
    )
    out = []
    for seq, at, detail in rows:
        try:
            facts = json.loads(detail or "{}")
        except ValueError:
            facts = {}
        if not isinstance(facts, dict):  # any program can write a row: a detail that is no object says nothing
            facts = {}
        facts = {k: None if facts.get(k) is None else str(facts[k]) for k in ("actor", "key", "old", "new")}
        if key is not None and facts["key"] != key:
            continue
        out.append({"seq": int(seq), "at_us": int(at), **facts})
    return out
