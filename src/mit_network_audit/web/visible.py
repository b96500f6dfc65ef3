"""Invisible characters made visible: journal values come from the audited program, so a host or module
name may carry a bidi override (U+202E), an isolate, a zero-width space or a control character.  In a page
they are invisible and reorder or disguise the text around them ("Trojan Source"): a Trust Report line
whose module name ends in U+202E read backwards to its end, and ``evil.example`` + U+202E +
``elpmaxe.rodnev`` showed as ``evil.examplevendor.example``.  Every value a template prints is passed
through ``visible`` (the templates' ``finalize``), so such a character shows as ``⟨U+202E⟩``; markup
the app built itself (the SVG charts) applies it to its values before escaping them.  A form field whose
value must go back unchanged (a setting, a search term) opts out with ``|e``: an escaped value is markup."""

from __future__ import annotations

import re

from markupsafe import Markup

# C0/C1 controls but tab/newline/CR, and the format characters (Cf) that text can hide behind.
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
                       "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]")


def visible(text: str) -> str:
    return INVISIBLE.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)


def finalize(value):
    """Jinja's ``finalize``: plain text is made visible; markup (``|safe``, ``|e``) is left as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value
