"""HTTP/2 to the Kubernetes API server: one TLS connection per client, every request a stream.

Why this module exists instead of httpx (which kr8s uses), measured in docs/k8s-transport.md:

* **One connection.** Over HTTP/1.1 every request in flight needs its own TCP+TLS connection,
  and a watch closed before the server ends it cannot go back to the pool, so each decision
  wait cost a fresh TLS handshake. client-go speaks HTTP/2 to the API server and keeps one
  connection; so do we.
* **httpx's HTTP/2 stalls watches.** httpcore 1.0 neither resets a stream whose response is
  closed early (RST_STREAM) nor acknowledges the DATA that keeps arriving for it. The server
  keeps every abandoned watch open: after 100 of them (the API server's
  ``SETTINGS_MAX_CONCURRENT_STREAMS``) no new stream can be opened, and the unacknowledged
  bytes drain the connection's flow-control window until every stream on it stops. Here a
  stream closed early is reset with ``CANCEL`` and whatever it had buffered is acknowledged.
* **CPU.** A GET costs about a quarter of the CPU of an httpx request (no per-request
  object graph, anyio locks or header normalisation).

The transport is HTTP only: the caller builds paths and headers, and reads status, headers
and body. Connection-level health follows client-go's HTTP/2 defaults: when nothing has been
read for ``read_idle_timeout`` a PING is sent, and no answer within ``ping_timeout`` closes the
connection (the streams on it fail with a retryable ``ConnectionError``). A GOAWAY lets the
streams the server accepted finish; the ones it never processed are sent again on a new
connection, once.

Imports h2 and the standard library only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hpack import HeaderTuple

__all__ = [
    "READ_IDLE_TIMEOUT",
    "H2Transport",
    "NoHTTP2Error",
    "Response",
    "StreamResponse",
]

#: client-go's HTTP/2 health check: PING after 30 s without a frame, give up after 15 s more.
READ_IDLE_TIMEOUT: Final = 30.0
PING_TIMEOUT: Final = 15.0

# Per-stream receive window: large enough that one object never waits for a WINDOW_UPDATE.
_STREAM_WINDOW: Final = 4 * 1024 * 1024
# Extra connection-level receive window on top of the protocol's 64 KiB (as httpcore does).
_CONNECTION_WINDOW: Final = 16 * 1024 * 1024
_MAX_HEADER_LIST: Final = 65536
_CLOSE_WAIT: Final = 2.0  # seconds aclose() waits for the TLS shutdown before aborting

_RECEIVED = h2.events.DataReceived
_RESPONSE = h2.events.ResponseReceived
_ENDED = h2.events.StreamEnded
_RESET = h2.events.StreamReset


# RFC 7541 Appendix A: the static table entries our requests use.
_STATIC_NAME: Final = {
    b":authority": 1,
    b":method": 2,
    b":path": 4,
    b":scheme": 6,
    b"accept": 19,
    b"authorization": 23,
    b"content-type": 31,
    b"user-agent": 58,
}
_STATIC_FULL: Final = {
    (b":method", b"GET"): b"\x82",
    (b":method", b"POST"): b"\x83",
    (b":scheme", b"http"): b"\x86",
    (b":scheme", b"https"): b"\x87",
}


def _hpack_int(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with a zero-flagged ``prefix_bits`` prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((value,))
    out = bytearray((limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _LiteralEncoder(hpack.Encoder):
    """HPACK for requests without a dynamic table: static-table references and literals.

    h2's encoder Huffman-codes every string and keeps a dynamic table. Each of our requests
    has a path of its own, so indexing buys little and the pure-Python bookkeeping was the
    largest cost of sending a request. Here a header is a fully indexed static entry
    (``:method GET``, ``:scheme https``) or a "literal without indexing" with a static name
    index (RFC 7541 6.1, 6.2.2): stateless, so the first block sets the dynamic table size to
    0 (6.3) and the server's table stays empty. Credentials are never indexed either.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sized = False

    def encode(
        self,
        headers: Iterable[
            HeaderTuple
            | tuple[bytes | str, bytes | str]
            | tuple[bytes | str, bytes | str, bool | None]
        ]
        | dict[bytes | str, bytes | str],
        huffman: bool = True,
    ) -> bytes:
        out = bytearray()
        if not self._sized:
            out.append(0x20)  # dynamic table size update to 0
            self._sized = True
        items = headers.items() if isinstance(headers, dict) else headers
        for header in items:
            name, value = header[0], header[1]
            name = name.encode() if isinstance(name, str) else name
            value = value.encode() if isinstance(value, str) else value
            full = _STATIC_FULL.get((name, value))
            if full is not None:
                out += full
                continue
            index = _STATIC_NAME.get(name)
            if index is None:
                out.append(0)
                out += _hpack_int(len(name), 7)
                out += name
            else:
                out += _hpack_int(index, 4)
            out += _hpack_int(len(value), 7)
            out += value
        return bytes(out)


class NoHTTP2Error(ConnectionError):
    """The server did not agree to HTTP/2 (ALPN): the caller should use HTTP/1.1."""


class _UnprocessedError(ConnectionError):
    """The server did not process the stream (GOAWAY above it, REFUSED_STREAM): send it again."""


@dataclass(slots=True)
class Response:
    """A whole response: status, headers (lower-case names, bytes) and body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        return _header(self.headers, name)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class _Stream:
    """One request's state, filled in by the connection's ``data_received``."""

    __slots__ = ("buffered", "chunks", "ended", "error", "headers", "id", "status", "waiter")

    def __init__(self, stream_id: int, buffered: bool) -> None:
        self.id = stream_id
        self.buffered = buffered  # acknowledge DATA on receipt (whole responses)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        # (data, flow-controlled length); the length is acknowledged when a streaming reader
        # takes the chunk, so a slow reader holds the server back instead of buffering.
        self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for the next event on this stream (headers, data, end or error)."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self.waiter = None


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection (an asyncio protocol driving an ``h2`` state machine)."""

    def __init__(
        self,
        *,
        read_idle_timeout: float,
        ping_timeout: float,
        on_closed: Callable[[_Connection], None],
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # We build every header ourselves (lower-case, no connection headers) and the peer
            # is the API server: h2's per-header validation is pure CPU cost here.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.encoder = _LiteralEncoder()
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._capacity_waiters: list[asyncio.Future[None]] = []
        self._read_idle_timeout = read_idle_timeout
        self._ping_timeout = ping_timeout
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._last_read = self._loop.time()
        self._flush_scheduled = False
        self._idle_handle: asyncio.TimerHandle | None = None
        self._ping_handle: asyncio.TimerHandle | None = None
        self._closed: BaseException | None = None
        self._goaway_last: int | None = None  # last stream id the server will process
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.alpn: str | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if self.alpn != "h2":
            return  # the opener sees alpn and closes; nothing is sent
        h2c = self._h2
        h2c.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST,
            },
        )
        h2c.initiate_connection()
        h2c.increment_flow_control_window(_CONNECTION_WINDOW)
        self._flush()
        self._arm_idle(self._read_idle_timeout)

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.abort(ConnectionError(f"HTTP/2 protocol error from the API server: {exc}"))
            return
        streams = self._streams
        for event in events:
            kind = type(event)
            if kind is _RECEIVED:
                assert isinstance(event, _RECEIVED)
                sid = event.stream_id
                length = event.flow_controlled_length or 0
                stream = streams.get(sid) if sid is not None else None
                if stream is None or stream.buffered:
                    if length and sid is not None:
                        self._h2.acknowledge_received_data(length, sid)
                    if stream is None:
                        continue
                    length = 0
                stream.chunks.append((event.data or b"", length))
                stream.wake()
            elif kind is _RESPONSE:
                assert isinstance(event, _RESPONSE)
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    for key, value in event.headers or ():
                        if key == b":status":
                            stream.status = int(value)
                        elif not key.startswith(b":"):
                            stream.headers.append((bytes(key), bytes(value)))
                    stream.wake()
            elif kind is _ENDED:
                assert isinstance(event, _ENDED)
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    stream.ended = True
                    stream.wake()
                self._wake_capacity()
            elif kind is _RESET:
                assert isinstance(event, _RESET)
                stream = streams.get(event.stream_id or 0)
                if stream is not None and not stream.ended:
                    code = event.error_code
                    stream.error = (
                        _UnprocessedError("the API server refused the stream")
                        if code == h2.errors.ErrorCodes.REFUSED_STREAM
                        else ConnectionResetError(f"the API server reset the stream ({code!r})")
                    )
                    stream.wake()
                self._wake_capacity()
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._wake_capacity()
            elif isinstance(event, h2.events.PingAckReceived):
                if self._ping_handle is not None:
                    self._ping_handle.cancel()
                    self._ping_handle = None
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._goaway(event)
        self._flush()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost fails what is left

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed is None:
            self._closed = ConnectionResetError(
                f"connection to the API server lost: {exc}"
                if exc
                else "connection to the API server closed"
            )
        self._fail_all(self._closed)
        for handle in (self._idle_handle, self._ping_handle):
            if handle is not None:
                handle.cancel()
        self._idle_handle = self._ping_handle = None
        if not self.lost.done():
            self.lost.set_result(None)
        self._on_closed(self)

    # -- state -------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """True while new streams may be opened here."""
        return self._closed is None and self._goaway_last is None and self.alpn == "h2"

    @property
    def active_streams(self) -> int:
        """Streams a caller still holds on this connection."""
        return len(self._streams)

    def _flush(self) -> None:
        # One TLS write per event-loop turn for everything the streams queued in it: with
        # many requests in flight, HEADERS, DATA, RST_STREAM and WINDOW_UPDATE frames of
        # different streams leave together.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _wake_capacity(self) -> None:
        waiters, self._capacity_waiters = self._capacity_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _capacity(self) -> None:
        waiter = self._loop.create_future()
        self._capacity_waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._capacity_waiters.remove(waiter)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self._goaway_last is not None:
            raise _UnprocessedError("the API server is closing this connection (GOAWAY)")

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        last = event.last_stream_id or 0
        self._goaway_last = last
        for sid, stream in self._streams.items():
            if sid > last and not stream.ended and stream.error is None:
                stream.error = _UnprocessedError("the API server did not process the request")
                stream.wake()
        self._wake_capacity()
        if not self._streams:
            self.close()

    def _fail_all(self, error: BaseException) -> None:
        last = self._goaway_last
        for sid, stream in self._streams.items():
            if not stream.ended and stream.error is None:
                stream.error = (
                    _UnprocessedError("the API server did not process the request")
                    if last is not None and sid > last
                    else error
                )
                stream.wake()
        self._wake_capacity()

    def abort(self, error: BaseException) -> None:
        """Drop the connection now; every open stream fails with ``error``."""
        if self._closed is None:
            self._closed = error
        self._fail_all(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Say GOAWAY and close; streams still open fail as the connection goes."""
        if self._closed is None:
            self._closed = ConnectionResetError("connection to the API server closed")
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
                self._flush_now()
            self._transport.close()

    # -- health ------------------------------------------------------------------------------

    def _arm_idle(self, delay: float) -> None:
        if self._read_idle_timeout > 0:
            self._idle_handle = self._loop.call_later(max(delay, 0.0), self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self._closed is not None:
            return
        idle = self._loop.time() - self._last_read
        if idle < self._read_idle_timeout:
            self._arm_idle(self._read_idle_timeout - idle)
            return
        if self._ping_handle is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.ping(b"bubu-hc!")
                self._flush()
            self._ping_handle = self._loop.call_later(self._ping_timeout, self._ping_expired)
        self._arm_idle(self._read_idle_timeout)

    def _ping_expired(self) -> None:
        self._ping_handle = None
        self.abort(
            TimeoutError(
                f"the API server did not answer a PING within {self._ping_timeout:g}s "
                f"after {self._read_idle_timeout:g}s of silence; connection closed"
            )
        )

    # -- streams -----------------------------------------------------------------------------

    async def open(
        self,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        *,
        buffered: bool,
    ) -> _Stream:
        """Open a stream, send the request; the caller must ``finish()`` the stream."""
        h2c = self._h2
        while True:
            self._check_open()
            if h2c.open_outbound_streams < h2c.remote_settings.max_concurrent_streams:
                break
            await self._capacity()  # the server's limit on streams in flight
        try:
            sid = h2c.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            # 2**30 requests on one connection: retire it (its streams finish), use a new one.
            self._goaway_last = 2**31 - 1
            raise _UnprocessedError("this connection has used all its stream ids") from None
        stream = _Stream(sid, buffered)
        self._streams[sid] = stream
        try:
            h2c.send_headers(sid, headers, end_stream=not body)
            self._flush()
            if body:
                await self._send_body(stream, body)
        except BaseException:
            self.finish(stream)
            raise
        return stream

    async def _send_body(self, stream: _Stream, body: bytes) -> None:
        h2c = self._h2
        view = memoryview(body)
        pos, total = 0, len(body)
        while pos < total:
            if stream.error is not None:
                raise stream.error
            self._check_closed()
            try:
                window = min(h2c.local_flow_control_window(stream.id), h2c.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                raise stream.error or ConnectionResetError("stream closed while sending") from None
            if window <= 0:
                await self._capacity()  # WINDOW_UPDATE
                continue
            end = min(total, pos + window)
            h2c.send_data(stream.id, bytes(view[pos:end]), end_stream=end == total)
            self._flush()
            pos = end

    def _check_closed(self) -> None:
        if self._closed is not None:
            raise self._closed

    def acknowledge(self, stream: _Stream, length: int) -> None:
        """Give ``length`` bytes of receive window back after a streaming reader took them."""
        if length and self._closed is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.acknowledge_received_data(length, stream.id)
                self._flush()

    def finish(self, stream: _Stream) -> None:
        """Forget a stream; reset it (CANCEL) if the server has not ended it yet."""
        if self._streams.pop(stream.id, None) is None:
            return
        if self._closed is None:
            unread = 0
            if not stream.buffered:
                unread = sum(length for _, length in stream.chunks)
                stream.chunks.clear()
            with contextlib.suppress(h2.exceptions.ProtocolError):
                if unread:
                    self._h2.acknowledge_received_data(unread, stream.id)
                if not stream.ended and stream.error is None:
                    self._h2.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
                self._flush()
        self._wake_capacity()
        if self._goaway_last is not None and not self._streams:
            self.close()


class StreamResponse:
    """A response read as it arrives (watches). Iterate ``chunks()``; close by leaving the
    ``H2Transport.stream`` block."""

    def __init__(self, connection: _Connection, stream: _Stream) -> None:
        self._connection = connection
        self._stream = stream

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._stream.status

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        return _header(self._stream.headers, name)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; ends when the server ends the stream."""
        stream = self._stream
        while True:
            if stream.chunks:
                data, length = stream.chunks.popleft()
                self._connection.acknowledge(stream, length)
                if data:
                    yield data
                continue
            if stream.error is not None:
                raise stream.error
            if stream.ended:
                return
            await stream.wait()

    async def read(self) -> bytes:
        """The rest of the body."""
        return b"".join([chunk async for chunk in self.chunks()])


class H2Transport:
    """HTTP/2 requests to one API server over one TLS connection, reopened when it breaks.

    Args:
        server: the API server URL (``https://host:port[/prefix]``).
        ssl_context: the TLS context (CA, client certificate); ALPN is set here.
        server_name: the TLS server name when it differs from the URL's host.
        connect_timeout: the bound of TCP connect plus TLS handshake, in seconds.
        read_idle_timeout: PING after this many seconds without a frame (0 disables).
        ping_timeout: close the connection when a PING is not answered in this time.
    """

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext,
        *,
        server_name: str | None = None,
        connect_timeout: float = 30.0,
        read_idle_timeout: float = READ_IDLE_TIMEOUT,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"HTTP/2 transport needs an https:// server URL, got {server!r}")
        self.host = url.hostname
        self.port = url.port or 443
        self.prefix = url.path.rstrip("/").encode()
        self.authority = url.netloc.rpartition("@")[2].encode("idna")
        self._ssl = ssl_context
        ssl_context.set_alpn_protocols(["h2"])
        self._server_name = server_name
        self._connect_timeout = connect_timeout
        self._read_idle_timeout = read_idle_timeout
        self._ping_timeout = ping_timeout
        self._conn: _Connection | None = None
        self._draining: set[_Connection] = set()
        self._lock = asyncio.Lock()
        self._closed = False
        #: TCP+TLS connections opened so far (one for the life of a healthy client).
        self.connections_opened = 0

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` ran."""
        return self._closed

    def set_ssl_context(self, ssl_context: ssl.SSLContext) -> None:
        """Use new TLS material (rotated client certificate) for the next connection."""
        ssl_context.set_alpn_protocols(["h2"])
        self._ssl = ssl_context
        conn = self._conn
        if conn is not None:
            self._retire(conn)

    def _retire(self, conn: _Connection) -> None:
        # Finish what is in flight on the old connection, open no new stream there.
        self._conn = None
        if conn.active_streams:
            conn._goaway_last = conn._goaway_last or 2**31 - 1
            self._draining.add(conn)
        else:
            conn.close()

    def _forget(self, conn: _Connection) -> None:
        self._draining.discard(conn)
        if self._conn is conn:
            self._conn = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._lock:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            if conn is not None:
                self._retire(conn)
            if self._closed:
                raise ConnectionResetError("the Kubernetes client is closed")
            conn = await self._open()
            self._conn = conn
            return conn

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()

        def factory() -> _Connection:
            return _Connection(
                read_idle_timeout=self._read_idle_timeout,
                ping_timeout=self._ping_timeout,
                on_closed=self._forget,
            )

        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(
                factory,
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self._server_name or self.host,
            )
        self.connections_opened += 1
        if conn.alpn != "h2":
            conn.close()
            raise NoHTTP2Error(
                f"the API server at {self.host}:{self.port} did not negotiate HTTP/2 "
                f"(ALPN {conn.alpn!r})"
            )
        return conn

    def _headers(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        return [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", self.prefix + target),
            *headers,
        ]

    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None = None,
        *,
        timeout: float | None,  # noqa: ASYNC109 - the per-request HTTP timeout
    ) -> Response:
        """Send one request and read the whole response.

        Raises:
            ConnectionError: the connection broke (retryable).
            TimeoutError: no complete response within ``timeout``.
            NoHTTP2Error: the server speaks HTTP/1.1 only.
        """
        all_headers = self._headers(method, target, headers)
        async with asyncio.timeout(timeout):
            for attempt in (1, 2):
                try:
                    return await self._exchange(all_headers, body)
                except _UnprocessedError:
                    if attempt == 2:
                        raise
                    # Never processed by the server: safe to send again, on a new connection.
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, headers: list[tuple[bytes, bytes]], body: bytes | None) -> Response:
        conn = await self._connection()
        stream = await conn.open(headers, body, buffered=True)
        try:
            while not stream.ended:
                if stream.error is not None:
                    raise stream.error
                await stream.wait()
            return Response(stream.status, stream.headers, b"".join(d for d, _ in stream.chunks))
        finally:
            conn.finish(stream)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        timeout: float | None,  # noqa: ASYNC109 - bounds connect and response headers
    ) -> AsyncIterator[StreamResponse]:
        """Send a request and yield its response once the headers arrived; the body is read
        through ``StreamResponse.chunks()``. Leaving the block early resets the stream."""
        all_headers = self._headers(method, target, headers)
        conn: _Connection | None = None
        stream: _Stream | None = None
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    conn = await self._connection()
                    try:
                        stream = await conn.open(all_headers, None, buffered=False)
                        while not stream.status:
                            if stream.error is not None:
                                raise stream.error
                            if stream.ended:
                                raise ConnectionResetError("stream ended without a response")
                            await stream.wait()
                        break
                    except _UnprocessedError:
                        if stream is not None:
                            conn.finish(stream)
                            stream = None
                        if attempt == 2:
                            raise
            assert conn is not None and stream is not None
            yield StreamResponse(conn, stream)
        finally:
            if conn is not None and stream is not None:
                conn.finish(stream)

    async def aclose(self) -> None:
        """Close the connection (GOAWAY); safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        conns = [c for c in (self._conn, *self._draining) if c is not None]
        self._conn = None
        self._draining.clear()
        for conn in conns:
            conn.close()
        # TLS close_notify takes a round trip: wait for it (briefly), so no transport is left
        # for the garbage collector when the event loop goes away.
        for conn in conns:
            try:
                async with asyncio.timeout(_CLOSE_WAIT):
                    await asyncio.shield(conn.lost)
            except TimeoutError:
                conn.abort(ConnectionResetError("connection to the API server closed"))
