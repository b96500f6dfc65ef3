"""More HTTP channel evidence: retries, TLS failures, httpx/aiohttp attribution, canary and faults on the
async libraries, attribution cross-talk between threads and tasks, streamed bodies closed early."""

import asyncio
import io
import json
import threading

import pytest
import requests
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter

import mit_network_audit as mna
from acme_connector import async_clients, client
from faults_support import Boom, BoomSink

CANARY = "CANARYq3Lp8Zr5Tw1Xc7Vb"


def outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


def _line(module, marker):
    with open(module.__file__) as fh:
        for number, text in enumerate(fh, 1):
            if marker in text:
                return number
    raise AssertionError(marker)


def test_retries_inside_one_requests_call_make_one_row(sink, http_server):
    # urllib3 retries 503 twice under one HTTPAdapter.send: the requests row owns all attempts.
    session = requests.Session()
    retry = urllib3.Retry(total=2, status_forcelist=[503], backoff_factor=0, raise_on_status=True)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    with pytest.raises(requests.exceptions.RetryError):
        session.get(http_server + "/status/503")
    rows = outbound(sink)
    assert len(rows) == 1, [(e.channel, e.status) for e in rows]
    assert rows[0].channel == "requests" and rows[0].outcome == "error"
    assert rows[0].error == "requests.exceptions.RetryError"


def test_urllib3_direct_retries_on_refused_one_row(sink):
    pool = urllib3.PoolManager(retries=urllib3.Retry(total=2, backoff_factor=0))
    with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
        pool.request("GET", "http://127.0.0.1:9/")
    rows = outbound(sink)
    assert len(rows) == 1 and rows[0].channel == "urllib3"
    assert rows[0].error == "urllib3.exceptions.MaxRetryError" and caught.value is not None


def test_tls_failure_row_and_same_exception(sink, http_server):
    # https against a plain-HTTP loopback server: the handshake fails.
    https_url = http_server.replace("http://", "https://") + "/echo"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https_url, timeout=5)
    rows = [e for e in outbound(sink) if e.channel == "requests"]
    assert len(rows) == 1 and rows[0].outcome == "error" and rows[0].protocol == "https"
    assert rows[0].error == "requests.exceptions.SSLError"


def test_httpx_and_aiohttp_attributed_to_the_addon(sink, http_server):
    import aiohttp
    import httpx

    assert async_clients.with_httpx(http_server + "/echo").content == b"response:-"

    async def go():
        async with httpx.AsyncClient() as c:
            r = await async_clients.with_httpx_async(http_server + "/echo", c)
        async with aiohttp.ClientSession() as s:
            body = await async_clients.with_aiohttp(http_server + "/echo", s)
        return r.content, body

    assert asyncio.run(go()) == (b"response:-", b"response:-")
    rows = outbound(sink)
    assert [e.channel for e in rows] == ["httpx", "httpx", "aiohttp"]
    assert {e.addon for e in rows} == {"acme_connector"}
    sites = [e.call_site for e in rows]
    assert sites == [
        f"acme_connector/async_clients.py:{_line(async_clients, 'LINE_HTTPX')} in with_httpx",
        f"acme_connector/async_clients.py:{_line(async_clients, 'LINE_HTTPX_ASYNC')} in with_httpx_async",
        f"acme_connector/async_clients.py:{_line(async_clients, 'LINE_AIOHTTP')} in with_aiohttp",
    ]


def test_canary_never_in_httpx_or_aiohttp_events(sink, http_server):
    import aiohttp
    import httpx

    url = f"{http_server}/api/{CANARY}/items?key={CANARY}&page=1"
    headers = {"X-Api-Key": CANARY, "Authorization": f"Bearer {CANARY}"}
    httpx.post(url, content=CANARY.encode(), headers=headers)

    async def go():
        async with httpx.AsyncClient() as c:
            await c.post(url, content=CANARY.encode(), headers=headers)
        async with aiohttp.ClientSession() as s:
            async with s.post(url, data=CANARY.encode(), headers=headers) as r:
                await r.read()

    asyncio.run(go())
    assert len(outbound(sink)) == 3
    dumped = json.dumps([e.as_dict() for e in sink.events])
    assert CANARY not in dumped and '"key"' in dumped


@pytest.mark.parametrize("faulty", ["attributor", "redaction", "sink"])
def test_faults_never_change_async_libraries(http_server, faulty):
    import aiohttp
    import httpx

    def calls():
        out = [httpx.post(http_server + "/echo", content=b"body-1").content]

        async def go():
            async with httpx.AsyncClient() as c:
                out.append((await c.get(http_server + "/chunked")).content)
            async with aiohttp.ClientSession() as s:
                async with s.post(http_server + "/echo", data=b"x" * 10) as r:
                    out.append(await r.read())
                try:
                    await s.get("http://127.0.0.1:9/")
                except Exception as exc:
                    out.append(type(exc))
        asyncio.run(go())
        try:
            httpx.get("http://127.0.0.1:9/")
        except Exception as exc:
            out.append(type(exc))
        return out

    expected = calls()
    kwargs = {"sink": mna.MemorySink()}
    kwargs["sink" if faulty == "sink" else faulty] = BoomSink() if faulty == "sink" else Boom()
    mna.install(**kwargs)
    try:
        assert calls() == expected
    finally:
        mna.uninstall()


def test_threads_no_attribution_crosstalk(sink, http_server):
    # Half the threads call through the addon, half from this module, all on one shared pool.
    session = requests.Session()

    def addon_worker(i):
        for _ in range(50):
            client.with_requests(f"{http_server}/echo?addon={i}")

    def local_worker(i):
        for _ in range(50):
            session.get(f"{http_server}/echo?local={i}")

    threads = [threading.Thread(target=addon_worker if i % 2 else local_worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = outbound(sink)
    assert len(rows) == 400
    for e in rows:
        expected = "acme_connector" if e.query_keys == ("addon",) else "test_http_more"
        assert e.addon == expected, (e.query_keys, e.addon, e.call_site)


def test_asyncio_tasks_no_attribution_crosstalk(sink, http_server):
    import httpx

    async def local(c, i):
        return await c.get(f"{http_server}/echo?local={i}")

    async def go():
        async with httpx.AsyncClient(timeout=60) as c:
            jobs = [async_clients.with_httpx_async(f"{http_server}/echo?addon={i}", c) if i % 2
                    else local(c, i) for i in range(200)]
            return await asyncio.gather(*jobs)

    assert all(r.status_code == 200 for r in asyncio.run(go()))
    rows = outbound(sink)
    assert len(rows) == 200
    for e in rows:
        expected = "acme_connector" if e.query_keys == ("addon",) else "test_http_more"
        assert e.addon == expected, (e.query_keys, e.addon)


def test_stream_closed_early_still_one_row(sink, http_server):
    with requests.get(http_server + "/chunked", stream=True) as r:
        first = next(r.iter_content(3))
    assert first == b"res"
    rows = outbound(sink)
    assert len(rows) == 1 and rows[0].status == 200 and rows[0].channel == "requests"


def test_full_stack_with_socket_backstop_one_row(sink, http_server):
    pytest.importorskip("mit_network_audit.interceptor.channels.socket")
    session = requests.Session()
    for _ in range(3):
        session.get(http_server + "/echo")
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [e.channel for e in rows] == ["requests"] * 3  # no socket/urllib3/http.client rows


def _upload_shapes(tmp_path):
    """Ways a module can stream an upload so that no length is known up front."""
    payload = b"customer-list;" * 700  # 9,800 bytes, over a licence component's max_request_bytes
    path = tmp_path / "upload.bin"
    path.write_bytes(payload)
    class Reader:  # read() and nothing else: no length, no fileno (a pipe, a decrypting stream)
        def __init__(self):
            self.raw = io.BytesIO(payload)

        def read(self, n=-1):
            return self.raw.read(n)

    return payload, {
        "generator": lambda: (payload[i:i + 1000] for i in range(0, len(payload), 1000)),
        "file": lambda: open(path, "rb"),
        "reader": Reader,
        "bytearray": lambda: bytearray(payload),  # buffers: sent whole, never iterated as ints
        "memoryview": lambda: memoryview(payload),
    }


def test_streamed_uploads_are_counted_on_every_channel(sink, http_server, tmp_path):
    """The size rules (max_request_bytes) rest on req_bytes: a body streamed as a generator or a
    file, through any library, must count exactly what the server received, not 0."""
    import http.client
    import urllib.request
    from urllib.parse import urlsplit

    import aiohttp
    import httpx

    from conftest import EchoHandler

    payload, shapes = _upload_shapes(tmp_path)
    host, port = urlsplit(http_server).hostname, urlsplit(http_server).port
    url = http_server + "/echo"

    def via_http_client(body):
        conn = http.client.HTTPConnection(host, port)
        conn.request("POST", "/echo", body=body, encode_chunked=True)
        conn.getresponse().read()
        conn.close()

    async def via_httpx_async(make):
        async def agen():
            for chunk in make() if callable(make) else make:
                yield chunk
        async with httpx.AsyncClient() as c:
            await c.post(url, content=agen())

    async def via_aiohttp(make):
        async def agen():
            for chunk in make():
                yield chunk
        async with aiohttp.ClientSession() as s, s.post(url, data=agen()) as r:
            await r.read()

    async def via_aiohttp_file(make):
        with make() as f:
            async with aiohttp.ClientSession() as s, s.post(url, data=f) as r:
                await r.read()

    senders = {
        "requests": lambda body: requests.post(url, data=body).content,
        "urllib": lambda body: urllib.request.urlopen(
            urllib.request.Request(url, data=body, headers={"Transfer-Encoding": "chunked"})).read(),
        "urllib (data=)": lambda body: urllib.request.urlopen(url, data=body).read()
        if hasattr(body, "read") else urllib.request.urlopen(
            urllib.request.Request(url, headers={"Transfer-Encoding": "chunked"}), data=body).read(),
        "httpx": lambda body: httpx.post(url, content=body).content,
        "http.client": via_http_client,
        "urllib3": lambda body: urllib3.PoolManager().request("POST", url, body=body, chunked=True).data,
    }
    for shape, make in shapes.items():
        for name, send in senders.items():
            if name == "httpx" and shape in ("reader", "bytearray", "memoryview"):
                continue  # httpx takes bytes, iterables and files with __iter__: not these, audited or not
            sink.events.clear()
            EchoHandler.bodies.clear()
            send(make())
            assert EchoHandler.bodies == [payload], (name, shape)  # the upload itself is unchanged
            rows = outbound(sink)
            assert [e.req_bytes for e in rows] == [len(payload)], (name, shape, [e.channel for e in rows])
    for name, run, shape in (("httpx async", via_httpx_async, "generator"), ("aiohttp", via_aiohttp, "generator"),
                             ("aiohttp", via_aiohttp_file, "file")):
        sink.events.clear()
        EchoHandler.bodies.clear()
        asyncio.run(run(shapes[shape]))
        assert EchoHandler.bodies == [payload], name
        assert [e.req_bytes for e in outbound(sink)] == [len(payload)], name


class _Counted:
    resp_bytes = 0


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=8), ext=st.booleans(), trailer=st.booleans(),
       reads=st.lists(st.sampled_from(["line", 1, 2, 3, 7, 64, "into"]), min_size=1, max_size=30))
def test_chunked_framing_is_not_counted_whatever_the_read_pattern(chunks, ext, trailer, reads):
    """The decoder in ChunkedCountingReader against every way a client slices the wire stream."""
    import io

    from mit_network_audit.interceptor.channels._body import ChunkedCountingReader

    wire = b"".join(b"%x%s\r\n%s\r\n" % (len(c), b";name=v" if ext else b"", c) for c in chunks)
    wire += b"0\r\n" + (b"X-Checksum: 1\r\n" if trailer else b"") + b"\r\n"
    call = _Counted()
    call._holds, call._ended = 0, False
    reader = ChunkedCountingReader.wrap(io.BufferedReader(io.BytesIO(wire)), call)
    got = b""
    for step in reads * (len(wire) + 1):
        if step == "line":
            part = reader.readline()
        elif step == "into":
            buf = bytearray(5)
            part = bytes(buf[:reader.readinto(buf)])
        else:
            part = reader.read(step)
        if not part:
            break
        got += part
    assert got == wire
    assert call.resp_bytes == sum(map(len, chunks))
    reader._released = True  # not a real call: nothing to release


def test_chunked_responses_count_their_data_on_every_client(sink, http_server):
    import http.client
    import urllib.request
    from urllib.parse import urlsplit

    import httpx

    expected = len(b"response:-")
    split = urlsplit(http_server)
    conn = http.client.HTTPConnection(split.hostname, split.port)
    conn.request("GET", "/chunked")
    response = conn.getresponse()
    assert b"".join(iter(lambda: response.read(3), b"")) == b"response:-"
    conn.close()
    assert urllib.request.urlopen(http_server + "/chunked").read() == b"response:-"
    with requests.get(http_server + "/chunked", stream=True) as r:
        assert b"".join(r.iter_content(2)) == b"response:-"
    assert urllib3.PoolManager().request("GET", http_server + "/chunked").data == b"response:-"
    assert httpx.get(http_server + "/chunked").content == b"response:-"
    rows = outbound(sink)
    assert [(e.channel, e.resp_bytes) for e in rows] == [
        (ch, expected) for ch in ("http.client", "urllib", "requests", "urllib3", "httpx")]
