"""uvloop: its loop connects, resolves and spawns in C (libuv) — neither the socket patches nor the
audit hook see a ``create_connection`` on it.  So the loop class's own entry points are wrapped:

* ``create_connection(host, port)`` -> a ``socket`` row (protocol ``tcp``, or ``tls`` with ``ssl=``),
  peer address from the transport, received bytes counted through the protocol's ``data_received``
  (or ``buffer_updated``), finished at ``connection_lost`` (or exit).  uvloop's transports write in
  C: sent bytes are not counted (``req_bytes`` stays 0);
* under an owner (aiohttp/httpx running on uvloop) it only enriches that owner's row with the peer
  address and adds ``uvloop`` to ``via``;
* ``create_connection(sock=...)``: the socket was connected in Python, where the socket/audit
  layers saw it — no second row;
* ``create_datagram_endpoint(remote_addr=...)`` -> a ``socket`` row with protocol ``udp``;
* ``subprocess_exec`` / ``subprocess_shell`` -> a ``subprocess`` row (method ``uvloop``): libuv
  spawns without ``_posixsubprocess`` or any audit event.

``uvloop.Loop`` is a Python subclass of the Cython loop, so its attributes can be wrapped (and
restored) like any class's; every loop made by ``uvloop.new_event_loop``/``run``/``install`` is one.
"""

from __future__ import annotations

from .. import capture
from . import subprocess as subprocess_channel

NAME = "socket"
TARGET = "uvloop"


def _peer(call, transport) -> None:
    try:
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            call.enrich(dest_ip=peer[0], dest_port=peer[1])
        if isinstance(local, tuple):
            call.enrich(src_ip=local[0], src_port=local[1])
    except Exception:
        pass


def _watch(protocol, call) -> bool:
    """Count what the protocol receives and release the row when the connection is lost."""
    try:
        for name in ("data_received", "buffer_updated", "datagram_received"):
            original = getattr(protocol, name, None)
            if original is None:
                continue
            if name == "buffer_updated":
                def counting(nbytes, _orig=original):
                    call.resp_bytes += nbytes
                    return _orig(nbytes)
            elif name == "datagram_received":
                def counting(data, addr, _orig=original):
                    call.resp_bytes += len(data)
                    return _orig(data, addr)
            else:
                def counting(data, _orig=original):
                    call.resp_bytes += len(data)
                    return _orig(data)
            setattr(protocol, name, counting)
        lost = protocol.connection_lost

        def connection_lost(exc, _orig=lost):
            try:
                return _orig(exc)
            finally:
                capture.release(call)
        protocol.connection_lost = connection_lost
        call.hold()
        return True
    except Exception:  # a protocol with __slots__: the row ends with the connect
        capture.counters["uvloop.unwatched"] += 1
        return False


def _make_connector(original, protocol_name: str, address_of):
    async def connect(self, protocol_factory, *args, **kwargs):
        if not capture.runtime.active:
            return await original(self, protocol_factory, *args, **kwargs)
        outer = capture.current()
        if outer is not None:
            outer.add_layer("uvloop")
            result = await original(self, protocol_factory, *args, **kwargs)
            _peer(outer, result[0])
            return result
        host, port = address_of(args, kwargs)
        if host is None:
            return await original(self, protocol_factory, *args, **kwargs)
        proto = "tls" if kwargs.get("ssl") else protocol_name
        call = capture.begin(NAME, activate=False, protocol=proto, host=str(host),
                             port=port if isinstance(port, int) else None)
        if call is None:
            return await original(self, protocol_factory, *args, **kwargs)
        call.add_layer("uvloop")

        held = []

        def factory():
            protocol = protocol_factory()
            if _watch(protocol, call):
                held.append(True)
            return protocol

        try:
            with capture.scope(call):
                result = await original(self, factory, *args, **kwargs)
        except BaseException as exc:
            capture.end(call, exc)
            for _ in held:  # the protocol never got a connection: connection_lost will not come
                capture.release(call)
            raise
        _peer(call, result[0])
        capture.end(call)  # held: the row is written at connection_lost (or exit)
        return result
    return connect


def _tcp_address(args, kwargs):
    if kwargs.get("sock") is not None:
        return None, None
    host = args[0] if args else kwargs.get("host")
    port = args[1] if len(args) > 1 else kwargs.get("port")
    return host, port


def _udp_address(args, kwargs):
    if kwargs.get("sock") is not None:
        return None, None
    remote = args[1] if len(args) > 1 else kwargs.get("remote_addr")
    if isinstance(remote, tuple) and len(remote) >= 2:
        return remote[0], remote[1]
    return None, None


def _make_spawn(original, shell: bool):
    async def spawn(self, protocol_factory, *args, **kwargs):
        if not capture.runtime.active or capture.current() is not None or not args:
            return await original(self, protocol_factory, *args, **kwargs)
        fields = subprocess_channel.describe(command=args[0]) if shell else subprocess_channel.describe(list(args))
        call = capture.begin(subprocess_channel.NAME, protocol="exec", method="uvloop",
                             **{k: v for k, v in fields.items() if v is not None})
        if call is None:
            return await original(self, protocol_factory, *args, **kwargs)
        if "env" in kwargs:
            kwargs["env"] = subprocess_channel.propagate_env(kwargs["env"])
        try:
            result = await original(self, protocol_factory, *args, **kwargs)
        except BaseException as exc:
            capture.end(call, exc)
            raise
        capture.end(call)
        return result
    return spawn


def install(patches) -> None:
    import uvloop

    Loop = uvloop.Loop
    patches.wrap(Loop, "create_connection", lambda o: _make_connector(o, "tcp", _tcp_address))
    patches.wrap(Loop, "create_datagram_endpoint", lambda o: _make_connector(o, "udp", _udp_address))
    patches.wrap(Loop, "subprocess_exec", lambda o: _make_spawn(o, shell=False))
    patches.wrap(Loop, "subprocess_shell", lambda o: _make_spawn(o, shell=True))
