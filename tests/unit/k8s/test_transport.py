"""HTTP/2 transport edge cases against a small HTTP/2 server on loopback (TLS, ALPN).

The normal path (requests, watches, large bodies, 300 triggers on one connection) is tested
against the real kube-apiserver in tests/integration/test_k8s_connection.py. What the API server
does not do on demand is here: GOAWAY with streams it will not process, REFUSED_STREAM, a tiny
stream limit, tiny flow-control windows, ALPN without h2, and checks of what the client sends
when it abandons a stream. These tests open loopback sockets only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from bubu._k8s.transport import H2Transport, NoHTTP2Error
from tests._controlplane import pki


@dataclass
class Request:
    conn: int
    stream_id: int
    path: str
    body: bytes = b""


@dataclass
class ServerConn:
    index: int
    h2: h2.connection.H2Connection
    writer: asyncio.StreamWriter
    resets: list[tuple[int, int]] = field(default_factory=list)  # (stream, error code)
    max_open: int = 0

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)

    def respond(self, stream_id: int, body: bytes = b"{}", *, status: int = 200) -> None:
        self.h2.send_headers(
            stream_id, [(":status", str(status)), ("content-type", "application/json")]
        )
        view = memoryview(body)
        while view:
            size = min(len(view), self.h2.local_flow_control_window(stream_id), 16384)
            if size <= 0:
                break  # the tests that send big bodies stay under the windows
            self.h2.send_data(stream_id, bytes(view[:size]))
            view = view[size:]
        self.h2.end_stream(stream_id)
        self.flush()


Handler = Callable[[ServerConn, Request], Awaitable[None]]


class H2Server:
    """A loopback HTTP/2 server whose answers are a per-test coroutine."""

    def __init__(
        self,
        tmp: Path,
        handler: Handler,
        *,
        alpn: str = "h2",
        settings: dict[int, int] | None = None,
    ) -> None:
        self.ca = pki.CA(tmp / "pki")
        pair = self.ca.issue("server", common_name="127.0.0.1", server=True, hosts=("127.0.0.1",))
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(pair.cert_path, pair.key_path)
        self.ssl.set_alpn_protocols([alpn])
        self.handler = handler
        self.settings = settings or {}
        self.conns: list[ServerConn] = []
        self.requests: list[Request] = []
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.cert_path))

    async def __aenter__(self) -> H2Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConn(
            len(self.conns) + 1,
            h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)),
            writer,
        )
        self.conns.append(conn)
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            writer.close()
            return
        conn.h2.initiate_connection()
        if self.settings:
            conn.h2.update_settings(self.settings)
        conn.flush()
        bodies: dict[int, bytearray] = {}
        paths: dict[int, str] = {}
        while True:
            data = await reader.read(65536)
            if not data:
                break
            for event in conn.h2.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = dict(event.headers or [])
                    paths[event.stream_id] = headers[b":path"].decode()
                    bodies[event.stream_id] = bytearray()
                    conn.max_open = max(conn.max_open, conn.h2.open_inbound_streams)
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    conn.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    req = Request(
                        conn.index,
                        event.stream_id,
                        paths[event.stream_id],
                        bytes(bodies[event.stream_id]),
                    )
                    self.requests.append(req)
                    task = asyncio.get_running_loop().create_task(self.handler(conn, req))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif isinstance(event, h2.events.StreamReset):
                    conn.resets.append((event.stream_id, event.error_code))
            conn.flush()


async def ok(conn: ServerConn, req: Request) -> None:
    conn.respond(req.stream_id, f'{{"path":"{req.path}"}}'.encode())


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[H2Server] = []

    async def start(handler: Handler = ok, **kw: Any) -> tuple[H2Server, H2Transport]:
        server = H2Server(tmp_path / f"s{len(servers)}", handler, **kw)
        await server.__aenter__()
        servers.append(server)
        return server, H2Transport(server.url, server.client_ssl(), connect_timeout=5)

    yield start
    for server in servers:
        await server.__aexit__(None, None, None)


async def get(transport: H2Transport, path: str, body: bytes | None = None) -> Any:
    return await transport.request(
        b"POST" if body else b"GET",
        path.encode(),
        [(b"accept", b"application/json")],
        body,
        timeout=10,
    )


async def test_requests_share_one_connection(serve: Any) -> None:
    server, transport = await serve()
    responses = await asyncio.gather(*(get(transport, f"/r/{i}") for i in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert responses[3].body == b'{"path":"/r/3"}'
    assert len(server.conns) == 1 and transport.connections_opened == 1
    await transport.aclose()


async def test_goaway_resends_only_what_the_server_did_not_process(serve: Any) -> None:
    both = asyncio.Event()

    async def handler(conn: ServerConn, req: Request) -> None:
        if conn.index == 1:
            if len([r for r in server.requests if r.conn == 1]) == 2:
                both.set()
            await both.wait()
            if req.path == "/first":
                # Answer the first stream, then say no stream above it will be processed.
                conn.respond(req.stream_id, b'"first"')
                conn.h2.close_connection(last_stream_id=req.stream_id)
                conn.flush()
            return
        conn.respond(req.stream_id, b'"again"')

    server, transport = await serve(handler)
    first = asyncio.create_task(get(transport, "/first"))
    await asyncio.sleep(0.05)  # /first gets the lower stream id
    second = asyncio.create_task(get(transport, "/second"))
    a, b = await asyncio.gather(first, second)
    assert (a.body, b.body) == (b'"first"', b'"again"')
    assert [(r.conn, r.path) for r in server.requests] == [
        (1, "/first"),
        (1, "/second"),
        (2, "/second"),
    ]
    assert transport.connections_opened == 2
    await transport.aclose()


async def test_refused_stream_is_sent_again_once(serve: Any) -> None:
    async def handler(conn: ServerConn, req: Request) -> None:
        if len(server.requests) == 1:
            conn.h2.reset_stream(req.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            conn.flush()
        else:
            await ok(conn, req)

    server, transport = await serve(handler)
    response = await get(transport, "/x")
    assert response.status == 200 and len(server.requests) == 2
    await transport.aclose()


async def test_other_stream_resets_fail_without_a_resend(serve: Any) -> None:
    async def handler(conn: ServerConn, req: Request) -> None:
        conn.h2.reset_stream(req.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        conn.flush()

    server, transport = await serve(handler)
    with pytest.raises(ConnectionResetError, match="reset the stream"):
        await get(transport, "/x")
    assert len(server.requests) == 1
    await transport.aclose()


async def test_closing_a_stream_early_resets_it_and_returns_its_window(serve: Any) -> None:
    # Each watch gets 60 KiB it never reads; 300 of them are 18 MiB, more than the client's
    # whole connection window: without RST_STREAM and the acknowledgement of unread bytes
    # the connection would stall (what httpx's HTTP/2 does, docs/k8s-transport.md).
    async def handler(conn: ServerConn, req: Request) -> None:
        if req.path.startswith("/watch"):
            conn.h2.send_headers(req.stream_id, [(":status", "200")])
            conn.h2.send_data(req.stream_id, b"x" * 16384)
            for _ in range(3):
                conn.h2.send_data(req.stream_id, b"y" * 14000)
            conn.flush()
            return  # never ends the stream
        await ok(conn, req)

    server, transport = await serve(handler)
    for i in range(300):
        async with transport.stream(b"GET", f"/watch/{i}".encode(), [], timeout=10) as resp:
            async for _chunk in resp.chunks():
                break
    assert (await get(transport, "/after")).status == 200
    conn = server.conns[0]
    cancel = h2.errors.ErrorCodes.CANCEL

    def cancelled() -> int:
        return len([1 for _, code in conn.resets if code == cancel])

    async with asyncio.timeout(30):  # the server may still be reading the last frames
        while cancelled() < 300:  # noqa: ASYNC110 - the test server offers no event
            await asyncio.sleep(0.01)
    assert cancelled() == 300
    assert len(server.conns) == 1
    await transport.aclose()


async def test_server_stream_limit_is_respected(serve: Any) -> None:
    async def handler(conn: ServerConn, req: Request) -> None:
        await asyncio.sleep(0.05)
        await ok(conn, req)

    server, transport = await serve(
        handler, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2}
    )
    await get(transport, "/warm")  # the server's SETTINGS are known from here on
    responses = await asyncio.gather(*(get(transport, f"/r/{i}") for i in range(8)))
    assert [r.status for r in responses] == [200] * 8
    assert server.conns[0].max_open <= 2
    await transport.aclose()


async def test_request_body_waits_for_flow_control(serve: Any) -> None:
    server, transport = await serve(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    await get(transport, "/warm")
    body = bytes(range(256)) * 400  # 100 KiB through a 1000-byte stream window
    response = await get(transport, "/upload", body)
    assert response.status == 200
    assert server.requests[-1].body == body
    await transport.aclose()


async def test_server_without_h2_is_reported(serve: Any) -> None:
    _, transport = await serve(alpn="http/1.1")
    with pytest.raises(NoHTTP2Error, match="did not negotiate HTTP/2"):
        await get(transport, "/x")
    await transport.aclose()


async def test_lost_connection_fails_open_streams_and_the_next_request_reconnects(
    serve: Any,
) -> None:
    async def handler(conn: ServerConn, req: Request) -> None:
        if req.path == "/hang":
            conn.writer.transport.abort()
            return
        await ok(conn, req)

    server, transport = await serve(handler)
    with pytest.raises(ConnectionResetError, match="connection to the API server"):
        await get(transport, "/hang")
    assert (await get(transport, "/next")).status == 200
    assert len(server.conns) == 2
    await transport.aclose()


async def test_unanswered_ping_closes_the_connection(serve: Any, tmp_path: Path) -> None:
    async def silent(conn: ServerConn, req: Request) -> None:
        # Stop reading and answering on this connection: a silent network partition.
        conn.writer.transport.pause_reading()

    server = H2Server(tmp_path / "ping", silent)
    await server.__aenter__()
    transport = H2Transport(
        server.url, server.client_ssl(), read_idle_timeout=0.2, ping_timeout=0.2
    )
    try:
        with pytest.raises(TimeoutError, match="did not answer a PING"):
            await get(transport, "/x")
    finally:
        await transport.aclose()
        await server.__aexit__(None, None, None)


def test_request_header_encoding_decodes_back_exactly() -> None:
    import hpack

    from bubu._k8s.transport import _LiteralEncoder

    encoder, decoder = _LiteralEncoder(), hpack.Decoder()
    blocks = [
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"127.0.0.1:6443"),
            (b":path", b"/apis/x/" + b"p" * 300),  # a length past the 7-bit prefix
            (b"user-agent", b"bubu-sdk-python"),  # a name index past the 4-bit prefix
            (b"authorization", b"Bearer " + b"t" * 1200),
        ],
        [(b":method", b"PATCH"), (b"content-type", b"application/merge-patch+json")],
        [("x-custom", "v"), (b":method", b"POST")],  # a name outside the static table
    ]
    for block in blocks:
        decoded = decoder.decode(encoder.encode(block), raw=True)
        assert decoded == [
            (
                bytes(n, "ascii") if isinstance(n, str) else n,
                bytes(v, "ascii") if isinstance(v, str) else v,
            )
            for n, v in block
        ]
    assert len(decoder.header_table.dynamic_entries) == 0  # nothing was indexed


async def test_a_connection_out_of_stream_ids_is_replaced(serve: Any) -> None:
    server, transport = await serve()
    assert (await get(transport, "/one")).status == 200
    conn = transport._conn  # private: jump to the end of the stream id space
    assert conn is not None
    conn._h2.highest_outbound_stream_id = 2**31 - 1
    assert (await get(transport, "/two")).status == 200
    assert [(r.conn, r.path) for r in server.requests] == [(1, "/one"), (2, "/two")]
    await transport.aclose()
