"""Dial the connector: endpoint parsing, the TLS rules and the 10 MiB message caps.

See docs/contract/stream.md#tls and docs/contract/stream.md#keepalive-and-limits. The engram
only dials (the connector sidecar listens on 50051):

* plaintext for ``unix://`` endpoints, ``localhost`` and loopback IPs (``127.x``, ``[::1]``), even
  when ``BUBU_TRANSPORT_SECURITY_MODE=tls`` (Go dials loopback in plaintext whatever the mode);
* otherwise TLS 1.3 with the system roots, ALPN ``h2`` and no client certificate;
* ``BUBU_TRANSPORT_SECURITY_MODE`` must be ``""`` or ``tls``; anything else fails the dial.

grpclib has no max-message-size setting, so :class:`CappedProtoCodec` enforces the caps when it
encodes and decodes. grpclib keepalive stays disabled (its client default): a Go connector
answers pings more frequent than 5 min with GOAWAY ``too_many_pings``
(docs/contract/stream.md#keepalive-and-limits).

HTTP/2 flow control: grpclib returns window to the peer only as the application reads a stream,
and the engram reads nothing on Data until the handshake on Control is complete. With equal
connection and stream windows (grpclib's default, 4 MiB each), a large message the connector
sends before the handshake fills the *connection* window and ``connector.ready`` can never
arrive. :func:`flow_config` makes the connection window three stream windows, so unread Data
can never hold more than a third of it and Control always has room: Data never starves Control.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from typing import Any

import msgspec
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.proto import ProtoCodec

from bubu._runtime.transport import TransportSettings
from bubu._transport import _fastpath
from bubu.errors import (
    ConnectorUnavailableError,
    ContractError,
    MessageTooLargeError,
)

__all__ = [
    "CappedProtoCodec",
    "Endpoint",
    "connect",
    "flow_config",
    "open_channel",
    "parse_endpoint",
]


def _describe(data: bytes, message_type: Any) -> str:
    """Name an inbound message that is refused for its size: its type and envelope position."""
    name = getattr(message_type, "__name__", "message")
    try:
        envelope = message_type.FromString(data).envelope
    except Exception:  # not even parseable: its type and size are all there is
        return name
    if envelope.stream_id or envelope.sequence:
        return f"{name} stream_id={envelope.stream_id!r} sequence={envelope.sequence}"
    return name


STREAM_WINDOW = 4 * 1024 * 1024
"""Receive window of one HTTP/2 stream (grpclib's default)."""


def flow_config() -> Configuration:
    """grpclib settings whose connection window is three stream windows (see the module doc)."""
    return Configuration(
        http2_stream_window_size=STREAM_WINDOW,
        http2_connection_window_size=3 * STREAM_WINDOW,
    )


# A frozen msgspec Struct rather than a frozen dataclass: the same fields, constructor, repr,
# equality, hash and immutability, defined in a twentieth of the time (docs/performance.md,
# spawn-to-handshake).
class Endpoint(msgspec.Struct, frozen=True):
    """A parsed connector endpoint.

    Attributes:
        host: host name or IP (``None`` for unix sockets).
        port: TCP port (``None`` for unix sockets).
        path: unix socket path, or ``None``.
        plaintext: whether the dial skips TLS (unix or loopback).
    """

    host: str | None
    port: int | None
    path: str | None
    plaintext: bool


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(endpoint: str) -> Endpoint:
    """Parse ``unix:///path``, ``host:port``, ``[v6]:port`` or ``dns:///host:port``.

    Raises:
        ContractError: the endpoint is empty or has no valid port; not retried
            ("transport connector endpoint empty").
    """
    text = endpoint.strip()
    if not text:
        raise ContractError("transport connector endpoint empty", variable="BUBU_TRANSPORT_BINDING")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ContractError(
                f"transport connector endpoint {endpoint!r} has no socket path",
                variable="BUBU_TRANSPORT_BINDING",
            )
        return Endpoint(host=None, port=None, path=path, plaintext=True)
    for prefix in ("dns:///", "passthrough:///"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep:
            port_text = ""
    else:
        host, _, port_text = text.rpartition(":")
        if not host:
            host, port_text = text, ""
    try:
        port = int(port_text)
    except ValueError:
        raise ContractError(
            f"transport connector endpoint {endpoint!r} needs host:port",
            variable="BUBU_TRANSPORT_BINDING",
        ) from None
    if not 0 < port < 65536:
        raise ContractError(
            f"transport connector endpoint {endpoint!r} has an invalid port",
            variable="BUBU_TRANSPORT_BINDING",
        )
    return Endpoint(host=host, port=port, path=None, plaintext=_is_loopback(host))


def check_security_mode(mode: str) -> None:
    """Accept ``""`` and ``tls`` only (Go ``validateTransportSecurityMode``).

    Raises:
        ContractError: any other value, such as ``plaintext``.
    """
    if mode.lower() not in ("", "tls"):
        raise ContractError(
            f"unsupported BUBU_TRANSPORT_SECURITY_MODE {mode!r}: must be empty or 'tls'",
            variable="BUBU_TRANSPORT_SECURITY_MODE",
        )


def tls_context() -> ssl.SSLContext:
    """Return the client TLS context: TLS 1.3 minimum, system roots, ALPN h2, no client cert."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["h2"])
    return context


class CappedProtoCodec(ProtoCodec):
    """grpclib's protobuf codec with send and receive size caps.

    See docs/contract/stream.md#keepalive-and-limits.

    Args:
        max_send: largest encoded outbound message in bytes.
        max_recv: largest inbound message in bytes; checked before parsing.
    """

    def __init__(self, max_send: int, max_recv: int) -> None:
        self.max_send = max_send
        self.max_recv = max_recv
        self.decoded_size = 0
        """Encoded size of the message :meth:`decode` parsed last.

        grpclib decodes a message and returns it from ``recv_message`` with no await in
        between, so right after ``await stream.recv_message()`` this is that message's size:
        the receipt's ``size_bytes`` without re-measuring the packet (``ByteSize`` walks every
        Struct value again, ~3 us for a 1 KB document).
        """

    def encode(self, message: Any, message_type: Any) -> bytes:
        """Serialize ``message`` (``bytes`` are encoded already); refuse it over the send cap."""
        data: bytes = message if type(message) is bytes else message.SerializeToString()
        if len(data) > self.max_send:
            raise MessageTooLargeError(
                f"trying to send message larger than max ({len(data)} vs. {self.max_send} "
                "bytes, BUBU_GRPC_CLIENT_MAX_SEND_BYTES)"
            )
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        """Parse ``data``; refuse it when it is over the receive cap (not retried)."""
        if len(data) > self.max_recv:
            raise MessageTooLargeError(
                f"received message larger than max ({len(data)} vs. {self.max_recv} bytes, "
                f"BUBU_GRPC_CLIENT_MAX_RECV_BYTES): {_describe(data, message_type)}; not "
                "retried, the connector would redeliver it",
                retryable=False,
            )
        self.decoded_size = len(data)
        return message_type.FromString(data)


def open_channel(endpoint: str, settings: TransportSettings) -> Channel:
    """Create (without connecting) a grpclib channel to the connector.

    Raises:
        ContractError: bad endpoint or security mode (not retried).
    """
    check_security_mode(settings.security_mode)
    ep = parse_endpoint(endpoint)
    codec = CappedProtoCodec(settings.max_send_bytes, settings.max_recv_bytes)
    if ep.path is not None:
        return _fastpath.fast_channel(Channel(path=ep.path, codec=codec, config=flow_config()))
    context = None if ep.plaintext else tls_context()
    return _fastpath.fast_channel(
        Channel(ep.host, ep.port, codec=codec, ssl=context, config=flow_config())
    )


# grpc-go's default connection backoff (grpc/doc/connection-backoff.md, backoff.DefaultConfig).
# The Go engram keeps redialing on this schedule inside WaitForReady; matching it keeps our dial
# rate against a connector that is not listening yet the same as a Go engram's.
_BACKOFF_BASE = 1.0
_BACKOFF_MULTIPLIER = 1.6
_BACKOFF_JITTER = 0.2
_BACKOFF_MAX = 120.0


def _dial_backoff(
    retries: int,
    remaining: float,
    uniform: Callable[[float, float], float] | None = None,
) -> float:
    """Seconds to wait after failed dial attempt number ``retries`` (0-based).

    grpc-go ``backoff.Exponential``: the first wait is the bare base delay, later ones grow
    by 1.6x up to 120 s with ±20% jitter. Capped by ``remaining`` (time left before the dial
    deadline) so the last wait ends at the deadline rather than past it.
    """
    if retries == 0:
        delay = _BACKOFF_BASE  # grpc-go jitters only from the second wait on
    else:
        # min() on the exponent too: 1.6**n overflows a float for n in the thousands.
        delay = min(_BACKOFF_BASE * _BACKOFF_MULTIPLIER ** min(retries, 64), _BACKOFF_MAX)
        if uniform is None:
            # imported on the first redial: a dial that succeeds at once never needs it
            import random

            uniform = random.uniform
        delay *= 1 + uniform(-_BACKOFF_JITTER, _BACKOFF_JITTER)
    return max(0.0, min(delay, remaining))


async def connect(channel: Channel, dial_timeout: float) -> None:
    """Open the HTTP/2 connection within ``dial_timeout`` (Go: ``WaitForReady``).

    A refused or unreachable dial is retried with grpc-go's connection backoff until the
    deadline, because the connector only listens once its own hub stream is up
    (docs/contract/stream.md#keepalive-and-limits): a Go engram started first waits for it
    instead of spending a reconnect retry.

    Raises:
        ConnectorUnavailableError: a TLS handshake failure, or no connection before the deadline
            (retryable).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + dial_timeout
    last: OSError | None = None
    try:
        async with asyncio.timeout_at(deadline):
            retries = 0
            while True:
                # Retrying on the same Channel is safe: a failed attempt leaves nothing behind.
                try:
                    protocol = await _fastpath.open_connection(channel)
                except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError) as exc:
                    # Something listens but the TLS handshake failed (asyncio reports a peer that
                    # drops it as a bare ConnectionResetError); a redial will not fix that, so
                    # fail now. These are OSErrors too, hence before the retry clause.
                    raise ConnectorUnavailableError(
                        f"transport connector dial failed: {exc}"
                    ) from exc
                except OSError as exc:
                    last = exc
                else:
                    break
                await asyncio.sleep(_dial_backoff(retries, deadline - loop.time()))
                retries += 1
    except TimeoutError:
        detail = f": last error: {last}" if last is not None else ""
        raise ConnectorUnavailableError(
            f"transport connector dial timed out after {dial_timeout:g}s{detail}"
        ) from last
    if protocol is not None:
        _fastpath.quiet_frame_trace(protocol)
        _fastpath.coalesce_ping_acks(protocol)
        _fastpath.fast_frames(protocol)
