"""The capture pipeline: small processors that turn a finished ``Call`` into NetEvent fields.

Each stage reads the call and fills the event dict; ``capture.finish`` runs them in order and
counts (never propagates) a stage's failure, falling back to a safe default for that stage.
"""

from __future__ import annotations

import socket

from . import capture
from .event import new_event_id

_HOSTNAME = socket.gethostname()


def base_fields(call, ev: dict) -> None:
    # logged_at_us, duration_us and pid are not set here: they are taken when the call finishes
    # (capture.finish), since the pipeline itself runs later, off the caller's path.
    ev.update({
        "event_id": new_event_id(),
        "started_at_us": call.started_at_us,
        "direction": call.direction,
        "channel": call.channel,
        "protocol": call.protocol,
        "method": ",".join(call.verbs) if call.verbs else call.method,
        "host": call.host,
        "port": call.port,
        "dest_ip": call.dest_ip,
        "dest_port": call.dest_port,
        "src_ip": call.src_ip,
        "src_port": call.src_port,
        "status": call.status,
        "outcome": call.outcome,
        "error": call.error,
        "req_bytes": call.req_bytes,
        "resp_bytes": call.resp_bytes,
        "hostname": _HOSTNAME,
        "detail": call.detail,
    })


_via_memo: dict = {}  # (owner's via, inner layers) -> the row's via; a handful of distinct stacks


def attribution(call, ev: dict) -> None:
    owner = call.owner
    if owner is not None:
        via = owner.via
        if call.layers:
            key = (via, tuple(call.layers))
            joined = _via_memo.get(key)
            if joined is None:
                joined = via + tuple(name for name in call.layers if name not in via)
                if len(_via_memo) < 256:
                    _via_memo[key] = joined
            via = joined
        ev.update({"addon": owner.addon, "addon_author": owner.author, "call_site": owner.call_site, "via": via})


def redaction(call, ev: dict) -> None:
    policy = capture.runtime.redaction
    if call.url is not None:
        target = policy.split_url(call.url)
        ev["host"] = ev["host"] or target.host
        ev["port"] = ev["port"] or target.port
        ev["protocol"] = ev["protocol"] or target.scheme
        ev["path"] = policy.path(target.path)
        ev["query_keys"] = policy.query_keys(target.query)
    elif call.path is not None:
        ev["path"] = policy.path(call.path)
    if ev.get("host"):
        ev["host"] = policy.host(ev["host"])
    ev["req_headers"] = policy.headers(call.req_headers)
    ev["resp_headers"] = policy.headers(call.resp_headers)
    if call.url is not None:
        ev["fingerprint"] = call.fingerprint_hex()


def classification(call, ev: dict) -> None:
    classifier = capture.runtime.classifier
    if classifier is None:
        return
    verdict = classifier.classify(ev.get("host"), ev.get("port"), ev.get("dest_ip"))
    ev.update({"vendor_bound": verdict.vendor_bound, "component": verdict.component, "dest_class": verdict.dest_class})


DEFAULT_PIPELINE = (
    ("base", base_fields),
    ("attribution", attribution),
    ("redaction", redaction),
    ("classification", classification),
)
