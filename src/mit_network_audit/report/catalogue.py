"""The catalogue of egress components and the Classifier built from it (capture-time).

A destination is matched against the operator's extension first, then the shipped catalogue:
host patterns (``*`` = one or more labels), CIDRs (for IP destinations), then the vendor's
domains (vendor-bound even when no component matches: that is "an endpoint outside the
catalogue").  Results are cached per (host, port, ip).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ..interceptor.classify import Classification

CLASSES = ("vendor", "provider", "own", "local")


@dataclass(frozen=True)
class Component:
    name: str
    dest_class: str
    purpose: str = ""
    category: str = ""
    hosts: tuple[str, ...] = ()
    cidrs: tuple = ()
    methods: tuple[str, ...] = ()
    max_request_bytes: int | None = None

    def matches_host(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts)

    def matches_ip(self, ip) -> bool:
        return any(ip in net for net in self.cidrs if ip.version == net.version)


@dataclass
class Catalogue:
    vendor_name: str = "MIT"
    vendor_domains: tuple[str, ...] = ()
    components: list[Component] = field(default_factory=list)

    def component(self, name: str | None) -> Component | None:
        for c in self.components:
            if c.name == name:
                return c
        return None

    def classify(self, host: str | None, port: int | None, dest_ip: str | None) -> Classification:
        return self._classify(host.lower().rstrip(".") if host else None, dest_ip)

    @lru_cache(maxsize=4096)  # noqa: B019 - catalogues live for the process
    def _classify(self, host: str | None, dest_ip: str | None) -> Classification:
        ips = []
        for text in (host, dest_ip):
            if text:
                try:
                    ips.append(ipaddress.ip_address(text.strip("[]").split("%", 1)[0]))
                except ValueError:
                    pass
        for comp in self.components:
            if (host and comp.matches_host(host)) or any(comp.matches_ip(ip) for ip in ips):
                return Classification(comp.dest_class == "vendor", comp.name, comp.dest_class)
        if host and any(host == d or host.endswith("." + d) for d in self.vendor_domains):
            return Classification(True, None, "vendor")
        return Classification(False, None, "unknown")

    def __hash__(self) -> int:  # lru_cache on a method needs a hashable self
        return id(self)


def _component(entry: dict) -> Component:
    dest_class = entry.get("class", "provider")
    if dest_class not in CLASSES:
        raise ValueError(f"catalogue component {entry.get('name')!r}: class must be one of {CLASSES}")
    return Component(
        name=entry["name"], dest_class=dest_class, purpose=entry.get("purpose", ""),
        category=entry.get("category", ""), hosts=tuple(h.lower() for h in entry.get("hosts", ())),
        cidrs=tuple(ipaddress.ip_network(c, strict=False) for c in entry.get("cidrs", ())),
        methods=tuple(m.upper() for m in entry.get("methods", ())),
        max_request_bytes=entry.get("max_request_bytes"),
    )


class CatalogueError(ValueError):
    """An operator's catalogue file that cannot be read or is not a catalogue (the message names it)."""


def load_catalogue(extra_paths=(), *, vendor_name: str | None = None) -> Catalogue:
    """The shipped catalogue, with the operator's files (and $MNA_CATALOGUE) matched first."""
    shipped = tomllib.loads(resources.files(__package__).joinpath("catalogue.toml").read_text("utf-8"))
    paths = [p for p in (*extra_paths, *os.environ.get("MNA_CATALOGUE", "").split(os.pathsep)) if p]
    components: list[Component] = []
    name = shipped.get("vendor_name", "MIT")
    domains = list(shipped.get("vendor_domains", ()))
    for path in paths:
        try:
            with open(path, "rb") as fh:
                extra = tomllib.load(fh)
            components += [_component(e) for e in extra.get("component", ())]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # TOMLDecodeError is a ValueError
            problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CatalogueError(f"catalogue {path}: {type(exc).__name__}: {problem}") from exc
        name = extra.get("vendor_name", name)
        domains = list(extra.get("vendor_domains", ())) + domains
    components += [_component(e) for e in shipped.get("component", ())]
    return Catalogue(vendor_name or os.environ.get("MNA_VENDOR_NAME") or name, tuple(domains), components)


def default_classifier() -> Catalogue:
    """The Classifier used at capture time (``mit-network-audit run`` and the Odoo glue)."""
    return load_catalogue()
