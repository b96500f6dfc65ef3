"""The Odoo Attributor: stack -> the Odoo addon whose code made the call.

Pure Python (no odoo import) so CI tests it without Odoo.  A frame belongs to addon ``X`` when its
module is ``odoo.addons.X[...]`` or its file lies in ``<addons path>/X/``.  Frames of the auditor,
the standard library and transport libraries are "in between" (``via``), exactly like the
package's DistributionAttributor.  Odoo's own framework (``odoo.*`` outside ``odoo.addons``) is
not an owner while an addon frame sits further out: ``odoo.tools`` helpers or ``odoo.http`` calling
into an addon must name the addon.  Only when no addon frame exists is the owner ``odoo``; once a
framework frame is seen, outer non-addon code (werkzeug's server loop, odoo-bin) cannot own the call.
The author comes from the addon's ``__manifest__.py`` (read with ``ast.literal_eval``, never run).
"""

from __future__ import annotations

import ast
import os
import threading

from mit_network_audit.interceptor.attribution import DistributionAttributor, Owner, module_relpath

_SELF = "mit_network_audit"
ADDONS_PREFIX = "odoo.addons."


def addon_of_module(module: str) -> str | None:
    """``odoo.addons.sale.models.x`` -> ``sale``; anything else -> None."""
    if module.startswith(ADDONS_PREFIX):
        name = module[len(ADDONS_PREFIX) :].split(".", 1)[0]
        return name or None
    return None


def addon_of_file(filename: str, addons_paths) -> str | None:
    """The addon directory a file lies in, for code loaded outside ``odoo.addons`` (scripts, tests)."""
    if not filename or filename.startswith("<"):
        return None
    real = os.path.realpath(filename)
    for root in addons_paths:
        root = os.path.realpath(root).rstrip(os.sep) + os.sep
        if real.startswith(root):
            name = real[len(root) :].split(os.sep, 1)[0]
            if os.path.isfile(os.path.join(root, name, "__manifest__.py")):
                return name
    return None


def read_manifest(addon_dir: str) -> dict:
    """The manifest dict, or {} — parsed as a literal, never executed."""
    try:
        with open(os.path.join(addon_dir, "__manifest__.py"), encoding="utf-8") as fh:
            value = ast.literal_eval(fh.read())
        return value if isinstance(value, dict) else {}
    except Exception:
        return {}


def manifest_author(addon: str, addons_paths) -> str | None:
    for root in addons_paths:
        path = os.path.join(root, addon)
        if os.path.isfile(os.path.join(path, "__manifest__.py")):
            author = read_manifest(path).get("author")
            return str(author) if author else None
    return None


_SKIP, _VIA, _OWNER, _SELF_KIND, _CORE = 0, 1, 2, 3, 4


class OdooAttributor(DistributionAttributor):
    """``addons_paths``: a callable returning the current list (Odoo's config can change at start-up)."""

    def __init__(self, addons_paths, **kwargs) -> None:
        super().__init__(**kwargs)
        self._paths = addons_paths if callable(addons_paths) else (lambda: list(addons_paths))
        self._authors: dict[str, str | None] = {}
        self._alock = threading.Lock()

    def author(self, addon: str) -> str | None:
        if addon not in self._authors:
            with self._alock:
                self._authors[addon] = manifest_author(addon, self._paths())
        return self._authors[addon]

    def attribute(self, frame) -> Owner | None:
        via: list[str] = []
        cache = self._code_cache
        depth = 0
        saw_self = False
        core = None  # the first odoo framework frame: the owner only if no addon frame is found
        while frame is not None and depth < self._max_depth:
            code = frame.f_code
            info = cache.get(code)
            if info is None:
                info = cache[code] = self._classify_odoo(frame)
            kind = info[0]
            if kind == _OWNER and core is not None and len(info) < 5:
                pass  # werkzeug, odoo-bin's __main__...: outside Odoo's framework only addons may own a call
            elif kind == _OWNER:
                if info[1] == _SELF:  # the addon's own glue counts as the auditor itself
                    saw_self = True
                else:
                    via.reverse()
                    return Owner(
                        info[1], info[2], f"{info[3]}:{frame.f_lineno} in {code.co_name}", tuple(via)
                    )
            elif kind == _CORE:
                if core is None:
                    core = (f"{info[1]}:{frame.f_lineno} in {code.co_name}", len(via))
            elif kind == _VIA and info[1] not in via:
                via.append(info[1])
            elif kind == _SELF_KIND:
                saw_self = True
            frame = frame.f_back
            depth += 1
        if core is not None:
            return Owner("odoo", "Odoo S.A.", core[0], tuple(reversed(via[: core[1]])))
        if saw_self:
            via.reverse()
            return Owner(_SELF, None, _SELF, tuple(via))
        return None

    def _classify_odoo(self, frame) -> tuple:
        module = frame.f_globals.get("__name__") or ""
        filename = frame.f_code.co_filename
        addon = addon_of_module(module)
        if addon is None and not module.startswith("odoo"):
            addon = (
                addon_of_file(filename, self._paths())
                if module.split(".", 1)[0] not in self._transport and module != "__main__"
                else None
            )
        if addon is not None:
            return (_OWNER, addon, self.author(addon), module_relpath(module, filename), True)
        if (
            module == "odoo"
            or module.startswith("odoo.")
            or (module == "__main__" and os.path.basename(filename).startswith("odoo"))
        ):
            return (_CORE, module_relpath(module, filename))
        return self._classify(frame)
