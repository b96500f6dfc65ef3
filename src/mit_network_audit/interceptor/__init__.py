"""The interceptor core (standard library only): ``install()`` / ``uninstall()`` / ``stats()``.

See ``capture`` for the call-scope rules and ``pipeline`` for how a call becomes a NetEvent.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import threading

from . import capture
from .attribution import Attributor, DistributionAttributor, Owner
from .capture import stats, suppressed
from .channels import CHANNEL_MODULES
from .classify import Classification, Classifier, LocalClassifier
from .event import NetEvent, internal_event
from .patching import Patches
from .pipeline import DEFAULT_PIPELINE
from .redaction import DefaultRedaction, RedactionPolicy, load_or_create_salt
from .sink import MemorySink, NullSink, Sink

__all__ = [
    "Attributor", "Classification", "Classifier", "DefaultRedaction", "DistributionAttributor", "LocalClassifier",
    "MemorySink", "NetEvent", "NullSink", "Owner", "RedactionPolicy", "Sink", "capture", "install",
    "installed_channels", "internal_event", "set_disabled_channels", "stats", "suppressed", "uninstall",
]

_lock = threading.RLock()
_installed: dict[str, Patches] = {}  # channel module name -> its patches
_waiting: dict[str, list[str]] = {}  # module to be imported -> channel modules to install then
_finder = None
_fork_hook_registered = False


def install(sink: Sink | None = None, attributor: Attributor | None = None, redaction: RedactionPolicy | None = None,
            classifier: Classifier | None = None, disabled_channels=(), salt: bytes | None = None) -> None:
    """Start auditing this process.  Idempotent: a second call only reconfigures the collaborators."""
    global _fork_hook_registered
    with _lock:
        rt = capture.runtime
        # Every call configures all collaborators: what is not given gets the default again.
        rt.sink = sink if sink is not None else NullSink()
        rt.attributor = attributor or _default_attributor()
        rt.redaction = redaction or DefaultRedaction(salt if salt is not None else load_or_create_salt())
        rt.classifier = classifier or LocalClassifier()
        rt.pipeline = DEFAULT_PIPELINE
        capture.set_disabled(disabled_channels)
        if not rt.active:
            for name in CHANNEL_MODULES:
                _install_channel(name)
            _install_import_hook()
            rt.active = True
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=capture.reset_after_fork)
            _fork_hook_registered = True


_defaults: dict = {}


def _default_attributor() -> DistributionAttributor:
    """One shared instance: its per-code-object cache is worth keeping across installs."""
    if "attributor" not in _defaults:
        _defaults["attributor"] = DistributionAttributor()
    return _defaults["attributor"]


def uninstall() -> None:
    """Stop auditing and restore every original object.  Idempotent."""
    with _lock:
        rt = capture.runtime
        if not rt.active:
            return
        rt.active = False
        capture.finish_pending()
        for name in reversed(list(_installed)):
            _uninstall_channel(name)
        _waiting.clear()
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


def set_disabled_channels(channels) -> None:
    """Change, at run time, which channels record rows (others keep working, unaudited)."""
    capture.set_disabled(channels)


def installed_channels() -> list[str]:
    with _lock:
        return list(_installed)


def _channel_module(name: str):
    return importlib.import_module(f"{__name__}.channels.{name}")


def _install_channel(name: str) -> None:
    try:
        module = _channel_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.channels.{name}":
            capture.counters["errors.channel_import"] += 1
        return  # that channel is not part of this build
    except Exception:
        capture.counters["errors.channel_import"] += 1
        return
    target = getattr(module, "TARGET", None)
    if target and target not in sys.modules:
        if importlib.util.find_spec(target.split(".")[0]) is None:
            return  # library not installed at all
        _waiting.setdefault(target, []).append(name)
        return
    patches = Patches()
    try:
        module.install(patches)
    except ImportError:
        patches.undo()
        return
    except Exception:
        patches.undo()
        capture.counters[f"errors.install.{name}"] += 1
        if os.environ.get("MNA_DEBUG"):
            import traceback

            traceback.print_exc()
        return
    _installed[name] = patches


def _uninstall_channel(name: str) -> None:
    patches = _installed.pop(name, None)
    if patches is None:
        return
    try:
        module = _channel_module(name)
        if hasattr(module, "uninstall"):
            module.uninstall()
    except Exception:
        capture.counters[f"errors.uninstall.{name}"] += 1
    patches.undo()


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Patches a library the moment it is imported, so install() need not import every library."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        def exec_module(module, _orig=original_exec, _name=fullname):
            _orig(module)
            with _lock:
                for channel in _waiting.pop(_name, []):
                    if capture.runtime.active:
                        _install_channel(channel)

        try:
            loader.exec_module = exec_module
        except AttributeError:
            return spec
        return spec


def _install_import_hook() -> None:
    global _finder
    if _finder is None:
        _finder = _PostImportFinder()
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
