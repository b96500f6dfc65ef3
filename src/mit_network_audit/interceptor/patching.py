"""Symmetric monkey-patching: every wrapper remembers what it replaced and can put it back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MARKER = "__mna_original__"


@dataclass(slots=True)
class Patch:
    owner: Any
    attr: str
    original: Any
    wrapper: Any
    was_own: bool  # the attribute lived in owner.__dict__ (else it was inherited)

    def in_place(self) -> bool:
        return self.owner.__dict__.get(self.attr) is self.wrapper

    def restore(self) -> None:
        if not self.in_place():
            return  # somebody else replaced it since: leave their object alone
        if self.was_own:
            setattr(self.owner, self.attr, self.original)
        else:
            delattr(self.owner, self.attr)


class Patches:
    """The patches one channel made; ``undo()`` restores them in reverse order."""

    def __init__(self) -> None:
        self.applied: list[Patch] = []

    def wrap(self, owner: Any, attr: str, make_wrapper) -> Patch:
        own = owner.__dict__.get(attr, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        original = getattr(owner, attr)
        if getattr(original, MARKER, None) is not None:
            raise RuntimeError(f"{owner!r}.{attr} is already wrapped")
        wrapper = make_wrapper(original)
        try:
            setattr(wrapper, MARKER, original)
        except (AttributeError, TypeError):
            pass
        setattr(owner, attr, wrapper)
        patch = Patch(owner, attr, original, wrapper, own is not _MISSING)
        self.applied.append(patch)
        return patch

    def undo(self) -> None:
        while self.applied:
            self.applied.pop().restore()

    def tampered(self) -> list[Patch]:
        return [p for p in self.applied if not p.in_place()]


_MISSING = object()


def original_of(func: Any) -> Any:
    return getattr(func, MARKER, func)
