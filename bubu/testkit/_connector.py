"""A local transport connector: the connector side of ``transport.v1`` on loopback gRPC.

:class:`LocalConnector` serves ``transport.v1.TransportConnectorService`` with grpclib on
``127.0.0.1`` (or a unix socket) and plays the roles the Go connector sidecar and hub play for an
engram (docs/contract/stream.md#session, docs/contract/stream.md#hub), so an engram - Python
or Go - can run against it without Kubernetes::

    async with LocalConnector() as conn:
        env = conn.binding_env()              # {"BUBU_TRANSPORT_BINDING": "..."} for the engram
        ...start the engram with env...
        await conn.wait_ready()               # handshake done: the engram's Stream may run
        await conn.send(StreamMessage.json({"n": 1}))
        out = await conn.next_output()        # what the engram published
        await conn.restart()                  # drop both streams abruptly; wait for reconnect

Behaviour, following the Go connector (bobravoz-grpc v0.3.0) and hub where
docs/contract/stream.md describes them:

- Data/Control streams without ``bubu-transport-protocol: 1.0.0`` fail FAILED_PRECONDITION;
  ``HubPush`` answers UNIMPLEMENTED; messages over 10 MiB fail RESOURCE_EXHAUSTED.
- Control: ``connector.ready{startup.capabilities}``, then a ``connector.capabilities`` snapshot,
  then ``handoff.cutover``; replies to engram requests per the table in 3.2 (heartbeat ->
  ``ACK{received: heartbeat, handled: true, status: alive}``; ``ack`` and
  ``downstream.delivered`` get no reply; start/stop/pause/resume toggle the gates).
- Data to the engram: messages are encoded as a Go engram's output would be, and (hub role)
  get ``envelope{stream_id, sequence}`` assigned, per stream or per partition, when the binding's
  ``delivery`` settings ask for ordering or at-least-once (the hub's ``assignEnvelope`` rule).
  Sequenced packets stay *unacked* until a ``downstream.delivered`` receipt covers them
  (cumulative, like the hub's ``ApplyFlow``); a new Data stream (the engram reconnected) first
  replays them sorted by (partition, sequence) with their original sequence numbers.
- Data from the engram: heartbeats are counted, not queued; everything else is checked with the
  buf.validate rules, decoded and put on :attr:`outputs`. While the upstream gate is closed
  (``pause()`` - the hub's PAUSE - or the engram's ``stop``/``stop-upstream``), engram packets are
  dropped silently, as the connector does.
- Flow control toward the hub: like the Go connector's flow tracker, configured from the
  binding payload (``flowControl.mode``/``ackEvery``, ``delivery.ordering``), receipts (and
  unsequenced sends) are batched into the ``FlowControl`` updates the connector would send the
  hub; they are recorded in :attr:`LocalConnector.hub_flow` (docs/contract/stream.md#acks).
- Test helpers beyond the Go behaviour: hub heartbeats and lifecycle hooks
  (:meth:`LocalConnector.send_heartbeat`, :meth:`LocalConnector.send_hook`), chunked packets
  (:meth:`LocalConnector.send_chunked`), raw packets, directives, gate control and
  :meth:`LocalConnector.kill_session` / :meth:`LocalConnector.restart` for fault tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import json
import logging
import socket
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server, Stream

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import StreamMessage
from bubu._runtime.parse import parse_go_duration
from bubu._transport import channel, codec, validate
from bubu._transport.session import (
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    STARTUP_CAPABILITIES_KEY,
)
from bubu.errors import ProtocolViolationError

__all__ = [
    "ConnectorStats",
    "FlowTracker",
    "LocalConnector",
    "Receipt",
    "delivery_policy",
    "hub_packet_response",
]

_log = logging.getLogger("bubu.testkit.connector")

_SERVICE: Final = "/transport.v1.TransportConnectorService"

_DEFAULT_CAPABILITIES: Final[Mapping[str, str]] = {
    "audio.codec": "pcm16",
    "audio.sample_rate_hz": "16000",
    "audio.channels": "1",
    "video.codec": "h264",
    "video.profile": "",
    "binary.mime": "application/json",
}


def _now_ms() -> str:
    return str(int(time.time() * 1000))


class _CappedCodec(ProtoCodec):
    """ProtoCodec with the Go server's 10 MiB receive cap (grpclib has none).

    See docs/contract/stream.md#keepalive-and-limits.
    """

    def __init__(self, max_recv: int) -> None:
        self._max_recv = max_recv

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self._max_recv:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"grpc: received message larger than max ({len(data)} vs. {self._max_recv})",
            )
        return super().decode(data, message_type)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One ``downstream.delivered`` receipt received from the engram."""

    stream_id: str
    sequence: int
    partition: str
    size_bytes: int
    expected_size: int | None
    """What ``size_bytes`` should be (the packet's encoded size), if the packet was ours."""

    @property
    def size_ok(self) -> bool:
        """Whether ``size_bytes`` matched the size of the packet we sent."""
        return self.expected_size is None or self.expected_size == self.size_bytes


@dataclass(slots=True)
class ConnectorStats:
    """Counters and records of one :class:`LocalConnector` (all sessions)."""

    data_sessions: int = 0
    control_sessions: int = 0
    sent: int = 0
    redelivered: int = 0
    published: int = 0
    data_heartbeats: int = 0
    control_heartbeats: int = 0
    dropped_upstream: int = 0
    dropped_downstream: int = 0
    data_half_closes: int = 0
    """Data streams the engram ended cleanly: END_STREAM received (``recv_message()`` None)."""
    control_half_closes: int = 0
    """Control streams the engram ended cleanly: END_STREAM received."""
    data_resets: int = 0
    """Data streams the engram ended abruptly: RST_STREAM, cancel or connection loss.

    Streams the connector itself ended (:meth:`LocalConnector.kill_session`, :meth:`close`,
    a newer stream replacing this one) count as neither a half-close nor a reset.
    """
    control_resets: int = 0
    """Control streams the engram ended abruptly: RST_STREAM, cancel or connection loss."""
    refused_streams: int = 0
    """Streams refused with UNAVAILABLE because :meth:`LocalConnector.graceful_stop` was running."""
    receipts: list[Receipt] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> list[tuple[str, str, int]]:
        """``(stream_id, partition, sequence)`` of every receipt, in arrival order."""
        return [(r.stream_id, r.partition, r.sequence) for r in self.receipts]


@dataclass(slots=True)
class _Session:
    """One Data or Control stream, killable from a test."""

    number: int
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    kill_mode: str = "error"
    ready_acked: asyncio.Event = field(default_factory=asyncio.Event)
    capabilities_acked: asyncio.Event = field(default_factory=asyncio.Event)
    outbox: asyncio.Queue[pb.ControlResponse] = field(default_factory=asyncio.Queue)


_Key = tuple[str, str]  # (stream_id, partition)


@dataclass(slots=True)
class _Unacked:
    """A sent logical packet awaiting its receipt: its wire packets and the receipt size."""

    packets: list[pb.DataResponse]
    expected_size: int


def _reassembled_size(packets: list[pb.DataResponse]) -> int:
    # The engram reports proto.Size of the reassembled packet: the first chunk as template,
    # payload = all chunks in index order, chunk fields cleared (docs/contract/stream.md#acks,
    # docs/contract/stream.md#chunking).
    first = packets[0]
    env = first.envelope
    if not (env.chunk_count or env.chunk_id):
        return codec.packet_size(first)
    by_index = {p.envelope.chunk_index: p.binary.payload for p in packets}
    template = pb.DataResponse()
    template.CopyFrom(first)
    template.binary.payload = b"".join(by_index[i] for i in sorted(by_index))
    for name in ("chunk_id", "chunk_index", "chunk_count", "chunk_bytes", "total_bytes"):
        template.envelope.ClearField(name)
    return codec.packet_size(template)


def _section(settings: Mapping[str, Any] | None, name: str, where: str = "") -> Mapping[str, Any]:
    value = (settings or {}).get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"settings.{where}{name} must be a JSON object, got {type(value).__name__}"
        )
    return value


def _word(section: Mapping[str, Any], field: str, what: str, allowed: tuple[str, ...]) -> str:
    raw = section.get(field, "")
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value not in allowed:
        raise ValueError(f"settings.{what}.{field}: {raw!r} is not one of {', '.join(allowed)}")
    return str(value)


def delivery_policy(
    settings: Mapping[str, Any] | None,
) -> tuple[bool, Literal["per_stream", "per_partition"]]:
    """Whether the hub sequences packets, and per what, from ``settings["delivery"]``.

    See docs/contract/stream.md#ordering, docs/contract/stream.md#hub.

    The hub assigns ``envelope.sequence`` only when ``delivery.ordering`` is not ``none`` or the
    semantics are at-least-once; replay implies at-least-once, and at-least-once forces
    ``per_stream`` when ordering is none. Without ``delivery`` settings the local connector
    keeps at-least-once per stream, the mode that exercises receipts and replay.

    Raises:
        ValueError: an unknown value; the message names the field.
    """
    delivery = _section(settings, "delivery")
    if not delivery:
        return True, "per_stream"
    ordering = _word(delivery, "ordering", "delivery", ("", "none", "per_stream", "per_partition"))
    semantics = _word(delivery, "semantics", "delivery", ("", "at_least_once", "best_effort"))
    replay = _section(delivery, "replay", "delivery.")
    replay_mode = _word(replay, "mode", "delivery.replay", ("", "none", "memory", "durable"))
    at_least_once = semantics == "at_least_once" or replay_mode in ("memory", "durable")
    if ordering == "per_partition":
        return True, "per_partition"
    return ordering == "per_stream" or at_least_once, "per_stream"


def _count(section: Mapping[str, Any], field: str, what: str, default: int) -> int:
    raw = section.get(field, default)
    if type(raw) is not int or raw < 0:
        raise ValueError(f"settings.{what}.{field}: {raw!r} is not a non-negative integer")
    return raw


class FlowTracker:
    """The Go connector's flow tracker: receipts -> hub ``FlowControl``.

    See docs/contract/stream.md#acks.

    Built from the binding payload: ``flowControl.mode`` (``credits`` | ``window``; ``none`` or
    absent means no tracker, as Go builds none), ``flowControl.ackEvery{messages (default 1),
    bytes, maxDelay}`` and ``delivery.ordering``. With ordering on, a receipt whose sequence does
    not advance its stream (or partition) is ignored. When a threshold is reached the update
    carries ``ack`` (per stream) or ``partition_acks`` sorted by partition (per partition; the
    partitions that advanced since the last update), plus the batch's credits in ``credits``
    mode. ``maxDelay`` flushes a partial batch that long after its first entry.

    Args:
        mode: ``"credits"`` or ``"window"``.
        ordering: ``"per_stream"`` or ``"per_partition"``.
        ack_messages: messages per update (0 disables the count threshold).
        ack_bytes: bytes per update (0 disables the byte threshold).
        max_delay: seconds before a partial batch is flushed (0: only by threshold).
        emit: receives each update.
    """

    def __init__(
        self,
        *,
        mode: str,
        ordering: str,
        ack_messages: int = 1,
        ack_bytes: int = 0,
        max_delay: float = 0.0,
        emit: Callable[[pb.FlowControl], None] | None = None,
    ) -> None:
        self.mode = mode
        self.ordering = ordering
        self.ack_messages = ack_messages
        self.ack_bytes = ack_bytes
        self.max_delay = max_delay
        self.emit = emit
        self._highest: dict[str, int] = {}
        self._advanced: set[str] = set()
        self._messages = 0
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, ordering: str) -> FlowTracker | None:
        """The tracker the binding payload configures, or ``None`` (no flow control).

        Raises:
            ValueError: an invalid ``flowControl`` value; the message names the field.
        """
        flow = _section(settings, "flowControl")
        mode = _word(flow, "mode", "flowControl", ("", "none", "credits", "window"))
        if mode in ("", "none"):
            return None
        ack_every = _section(flow, "ackEvery", "flowControl.")
        raw_delay = ack_every.get("maxDelay", "")
        if not isinstance(raw_delay, str):
            raise ValueError(
                f"settings.flowControl.ackEvery.maxDelay: {raw_delay!r} is not a duration string"
            )
        try:
            max_delay = parse_go_duration(raw_delay) if raw_delay.strip() else 0.0
        except ValueError:
            raise ValueError(
                f"settings.flowControl.ackEvery.maxDelay: {raw_delay!r} is not a duration"
            ) from None
        return cls(
            mode=mode,
            ordering=ordering,
            ack_messages=_count(ack_every, "messages", "flowControl.ackEvery", 1),
            ack_bytes=_count(ack_every, "bytes", "flowControl.ackEvery", 0),
            max_delay=max_delay,
        )

    def record_receipt(self, size: int, sequence: int, partition: str) -> pb.FlowControl | None:
        """Count one ``downstream.delivered`` receipt; return the update it completes, if any."""
        if sequence > 0:
            key = partition if self.ordering == "per_partition" else ""
            if sequence <= self._highest.get(key, 0):
                return None  # not advancing: a duplicate or late receipt (Go ignores it)
            self._highest[key] = sequence
            self._advanced.add(key)
        return self._count(size)

    def record_delivery(self, size: int) -> pb.FlowControl | None:
        """Count a packet without a sequence, acknowledged as soon as it is sent to the engram."""
        return self._count(size)

    def reset(self) -> None:
        """Forget sequences and the partial batch (Go resets on every hub reconnect)."""
        self._highest.clear()
        self._advanced.clear()
        self._messages = self._bytes = 0
        self._cancel_timer()

    def _count(self, size: int) -> pb.FlowControl | None:
        self._messages += 1
        self._bytes += max(size, 0)
        if (self.ack_messages and self._messages >= self.ack_messages) or (
            self.ack_bytes and self._bytes >= self.ack_bytes
        ):
            return self.flush()
        if self.max_delay > 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_delay, self._on_timer)
        return None

    def _on_timer(self) -> None:
        self._timer = None
        update = self.flush()
        if update is not None and self.emit is not None:
            self.emit(update)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> pb.FlowControl | None:
        """The update for the batch so far (``None`` when it is empty); starts a new batch."""
        self._cancel_timer()
        if not self._messages:
            return None
        flow = pb.FlowControl()
        if self.ordering == "per_partition":
            for partition in sorted(self._advanced):
                flow.partition_acks.add(partition=partition, ack=self._highest[partition])
        elif "" in self._advanced:
            flow.ack = self._highest[""]
        if self.mode == "credits":
            flow.credits_messages = min(self._messages, 0xFFFFFFFF)
            flow.credits_bytes = min(self._bytes, 0xFFFFFFFF)
        self._advanced.clear()
        self._messages = self._bytes = 0
        return flow


# Test helpers take a `timeout` so a misbehaving engram fails the test instead of hanging it.
# ruff: noqa: ASYNC109


class LocalConnector:
    """The connector side of the streaming protocol, served over loopback gRPC.

    Args:
        host: Interface to listen on (loopback by default).
        port: TCP port; 0 picks a free one.
        unix_path: Listen on this unix socket instead of TCP (endpoint ``unix://<path>``).
        startup_capabilities: ``"none"`` or ``"required"`` in ``connector.ready``; any other
            string is sent as is (to test rejection), ``None`` omits the key.
        send_ready: Send ``connector.ready`` when a Control stream opens.
        send_capabilities: Send the ``connector.capabilities`` snapshot after ready.
        capabilities: Metadata of that snapshot (Go keys ``audio.codec``, ``binary.mime``...).
        send_handoff: Send ``handoff.cutover{phase, reason: hub_connected, ts}`` after them.
        sequenced: Assign ``envelope{stream_id, sequence}`` to sent messages (hub at-least-once).
            ``None``: from ``settings["delivery"]`` as the hub decides (ordering other than
            ``none``, ``semantics: at_least_once`` or a replay mode), else true.
        ordering: ``"per_stream"`` (one counter) or ``"per_partition"`` (one per partition).
            ``None``: ``settings["delivery"]["ordering"]``, else ``"per_stream"``.
        stream_id: The stream id assigned to sent messages (hub: ``<ns>/<storyrun>/<step>``).
        binding_name: ``name`` of the binding envelope; ``namespace`` its namespace.
        settings: ``BindingInfo.payload`` JSON (e.g. ``{"env": {"BUBU_GRPC_HEARTBEAT_INTERVAL":
            "1s"}}``), base64-encoded into the binding. Its ``delivery`` and ``flowControl``
            keys configure sequencing and :attr:`hub_flow` as they configure the Go connector.
        hub_metadata: Metadata stamped on every message sent to the engram, as the hub stamps
            ``storyrun-name``/``storyrun-namespace``/``current-step-id``.
        heartbeat_interval: Send the hub's heartbeat packet this often (seconds) while a Data
            stream is open, as the hub does every ``BUBU_GRPC_HEARTBEAT_INTERVAL``; ``None``
            sends none (use :meth:`send_heartbeat`).
        require_protocol_header: Reject streams without ``bubu-transport-protocol: 1.0.0``.
        validate_inbound: Check engram packets and control requests with the buf.validate rules;
            a violation is recorded in ``stats.violations`` and the packet dropped.
        max_message_bytes: Receive cap (Go default 10 MiB).
        buffer_size: Depth of the queue of messages waiting to be sent to the engram.
        ssl: Serve TLS with this server context (ALPN ``h2`` is added). The Go sidecar listens
            in plaintext on the pod's loopback; TLS lets tests dial it the way an engram dials
            any non-loopback endpoint (TLS 1.3, docs/contract/stream.md#tls).
        endpoint_host: Host written into the binding's endpoint instead of ``host`` (for
            instance a name the TLS certificate covers while listening on ``0.0.0.0``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | None = None,
        startup_capabilities: str | None = "none",
        send_ready: bool = True,
        send_capabilities: bool = True,
        capabilities: Mapping[str, str] | None = None,
        send_handoff: bool = True,
        sequenced: bool | None = None,
        ordering: Literal["per_stream", "per_partition"] | None = None,
        stream_id: str = "default/local-run/local-step",
        binding_name: str = "local-binding",
        namespace: str = "default",
        settings: Mapping[str, Any] | None = None,
        hub_metadata: Mapping[str, str] | None = None,
        heartbeat_interval: float | None = None,
        require_protocol_header: bool = True,
        validate_inbound: bool = True,
        max_message_bytes: int = validate.MAX_MESSAGE_BYTES,
        buffer_size: int = 16,
        ssl: _ssl.SSLContext | None = None,
        endpoint_host: str | None = None,
    ) -> None:
        self._host = host
        self._ssl = ssl
        self._endpoint_host = endpoint_host
        self._port = port
        self._unix_path = unix_path
        self.startup_capabilities = startup_capabilities
        self.send_ready = send_ready
        self.send_capabilities = send_capabilities
        self.capabilities = dict(_DEFAULT_CAPABILITIES if capabilities is None else capabilities)
        self.send_handoff = send_handoff
        self.settings = dict(settings) if settings else None
        policy_sequenced, policy_ordering = delivery_policy(self.settings)
        self.sequenced = policy_sequenced if sequenced is None else sequenced
        self.ordering: Literal["per_stream", "per_partition"] = (
            policy_ordering if ordering is None else ordering
        )
        self.hub_flow: list[pb.FlowControl] = []
        """``FlowControl`` updates the Go connector would send the hub, in order.

        See docs/contract/stream.md#acks.
        """
        self._flow = FlowTracker.from_settings(self.settings, self.ordering)
        if self._flow is not None:
            self._flow.emit = self._on_hub_flow
        self.stream_id = stream_id
        self.binding_name = binding_name
        self.namespace = namespace
        self.hub_metadata = dict(hub_metadata) if hub_metadata else {}
        self.heartbeat_interval = heartbeat_interval
        self.require_protocol_header = require_protocol_header
        self.validate_inbound = validate_inbound
        self._max_message_bytes = max_message_bytes

        self.stats = ConnectorStats()
        self.outputs: asyncio.Queue[StreamMessage] = asyncio.Queue()
        """Messages the engram published (decoded), in arrival order."""
        self.published_packets: list[pb.DataRequest] = []
        """Every non-heartbeat ``DataRequest`` received while the upstream gate was open."""
        self.control_requests: list[pb.ControlRequest] = []
        """Every ``ControlRequest`` received, including heartbeats and receipts."""
        self.data_headers: list[dict[str, str]] = []
        self.control_headers: list[dict[str, str]] = []
        self.upstream_open = True
        self.downstream_open = True

        # Each queued item is one logical packet: a list of wire packets (several for chunks).
        self._pending: asyncio.Queue[tuple[list[pb.DataResponse], bool]] = asyncio.Queue(
            buffer_size
        )
        self._unacked: dict[_Key, dict[int, _Unacked]] = {}
        self._counters: dict[_Key, int] = {}
        self._data: _Session | None = None
        self._control: _Session | None = None
        self._changed = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._server: Server | None = None
        self._address = ""
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (``async with`` does this)."""
        # The engram's flow-control rule on this side too: Data never starves Control.
        server = Server(
            [self], codec=_CappedCodec(self._max_message_bytes), config=channel.flow_config()
        )
        if self._unix_path is not None:
            await server.start(path=self._unix_path)
            self._address = f"unix://{self._unix_path}"
        else:
            # Bind ourselves so port 0 resolves to the real port before anyone dials.
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            self._port = sock.getsockname()[1]
            if self._ssl is not None:
                self._ssl.set_alpn_protocols(["h2"])
            await server.start(sock=sock, ssl=self._ssl)
            host = self._endpoint_host or self._host
            if ":" in host:
                host = f"[{host}]"
            self._address = f"{host}:{self._port}"
        self._server = server
        _log.debug("local connector listening on %s", self._address)

    async def close(self) -> None:
        """Stop the server and end every stream."""
        for session in (self._data, self._control):
            if session is not None:
                session.kill_mode = "eof"
                session.killed.set()
        # Let the handlers end their streams first: closing the server cancels them before they
        # send their trailers, and the engram would then wait on a silent connection instead of
        # seeing the end of its streams (and reconnecting, as after a Go connector's Stop).
        with contextlib.suppress(TimeoutError):
            await self.wait_until(lambda: self._data is None and self._control is None, timeout=5.0)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def graceful_stop(self, timeout: float = 5.0) -> float:
        """Stop like the Go connector on SIGTERM: ``GracefulStop`` capped at ``timeout`` seconds.

        The listener is closed at once (new connections are refused) and any new Data or
        Control stream is refused with UNAVAILABLE. Open streams are left to finish: the call
        waits until the engram has ended both (a half-close or a reset) or ``timeout`` passes,
        then :meth:`close` ends whatever is left (docs/contract/stream.md#shutdown).

        Returns:
            Seconds spent waiting for the open streams (about ``timeout`` when the cap hit).
        """
        began = time.monotonic()
        self._stopping = True
        self._notify()
        if self._server is not None:
            # grpclib has no GracefulStop: close only the listening socket, keep the handlers.
            listener = self._server._server
            if listener is not None:
                listener.close()
        with contextlib.suppress(TimeoutError):
            await self.wait_until(
                lambda: self._data is None and self._control is None, timeout=max(timeout, 0.0)
            )
        waited = time.monotonic() - began
        await self.close()
        return waited

    @property
    def stopping(self) -> bool:
        """Whether :meth:`graceful_stop` has begun (new streams are refused)."""
        return self._stopping

    async def __aenter__(self) -> LocalConnector:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addressing ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The endpoint engrams dial: ``127.0.0.1:<port>`` or ``unix://<path>``."""
        if not self._address:
            raise RuntimeError("LocalConnector is not started")
        return self._address

    @property
    def connected(self) -> bool:
        """Whether an engram currently holds a Data stream."""
        return self._data is not None

    @property
    def port(self) -> int:
        """The TCP port (0 for a unix socket)."""
        return 0 if self._unix_path is not None else self._port

    def binding(self) -> dict[str, Any]:
        """The ``BUBU_TRANSPORT_BINDING`` envelope pointing at this connector.

        See docs/contract/stream.md#non-protobuf-contracts.

        ``{"name", "namespace", "binding": <protojson BindingInfo>}`` with lowerCamelCase keys,
        ``protocolVersion: "1.0.0"`` and ``payload`` as base64 of the settings JSON.
        """
        info: dict[str, Any] = {
            "driver": "local",
            "endpoint": self.address,
            "protocolVersion": PROTOCOL_VERSION,
        }
        if self.settings is not None:
            raw = json.dumps(self.settings, separators=(",", ":")).encode()
            info["payload"] = base64.b64encode(raw).decode()
        return {"name": self.binding_name, "namespace": self.namespace, "binding": info}

    def binding_json(self) -> str:
        """:meth:`binding` as the JSON string ``BUBU_TRANSPORT_BINDING`` holds."""
        return json.dumps(self.binding(), separators=(",", ":"))

    def binding_env(self) -> dict[str, str]:
        """Environment for an engram process: the binding plus ``BUBU_EXECUTION_MODE``."""
        return {"BUBU_TRANSPORT_BINDING": self.binding_json(), "BUBU_EXECUTION_MODE": "streaming"}

    # -- sending to the engram ----------------------------------------------------------------

    def _prepare(self, msg: StreamMessage, partition: str | None) -> pb.DataResponse:
        packet = codec.to_pb_data_response(msg)
        if self.hub_metadata:
            packet.metadata.update(self.hub_metadata)
        if partition is not None:
            packet.envelope.partition = partition
        return packet

    async def send(self, msg: StreamMessage, *, partition: str | None = None) -> None:
        """Queue ``msg`` for the engram (waits while the queue is full).

        The message is encoded as a Go engram's output would be
        (docs/contract/stream.md#encoding) and, when ``sequenced``, gets its envelope stream id
        and sequence when it is written to the Data stream.
        """
        await self._pending.put(([self._prepare(msg, partition)], self.sequenced))

    def send_nowait(self, msg: StreamMessage, *, partition: str | None = None) -> None:
        """Queue ``msg`` without waiting; raises ``asyncio.QueueFull`` when the queue is full."""
        self._pending.put_nowait(([self._prepare(msg, partition)], self.sequenced))

    async def send_packet(self, packet: pb.DataResponse, *, sequence: bool = False) -> None:
        """Queue a raw ``DataResponse`` as is (chunks, frameless or invalid packets for tests).

        Sequencing is applied only when ``sequence`` is true; a packet that already carries a
        stream id and sequence is tracked for receipts and redelivery either way.
        """
        await self._pending.put(([packet], sequence))

    async def send_hub_packet(
        self,
        metadata: Mapping[str, str],
        *,
        payload: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        sequence: bool | None = None,
    ) -> None:
        """Send a frameless hub packet the way the connector forwards it (``packetToDataResponse``).

        With a ``kind`` or ``bubu.envelope.message_id`` metadata key, a payload or inputs, the
        connector wraps it in an envelope binary frame (no separate Structs); otherwise it goes
        out frameless. ``sequence`` defaults to the connector's ``sequenced`` setting.
        """
        stamped = {**metadata, **self.hub_metadata}
        packet = hub_packet_response(stamped, payload=payload, inputs=inputs)
        await self._pending.put(([packet], self.sequenced if sequence is None else sequence))

    async def send_heartbeat(self) -> None:
        """Send the hub's heartbeat (``bubu-heartbeat: true``, payload ``{}``) as forwarded."""
        await self.send_hub_packet(
            {codec.HEARTBEAT_METADATA_KEY: "true"}, payload={}, sequence=False
        )

    async def send_hook(
        self,
        event: str,
        *,
        step: str | None = None,
        storyrun: str = "local-run",
        namespace: str | None = None,
        sequence: bool = False,
    ) -> None:
        """Send a hub lifecycle hook (``storyrun.ready``, ``steprun.ready``).

        See docs/contract/stream.md#hub-packet.

        The message id is ``<ns>/<storyrun>:<event>[:<step>]``. Hooks go out unsequenced by
        default, so the engram dedupes a second copy by that message id (scenario 11).
        """
        ns = self.namespace if namespace is None else namespace
        message_id = f"{ns}/{storyrun}:{event}" + (f":{step}" if step else "")
        data: dict[str, Any] = {
            "timestamp": _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z"),
            "storyRun": {"name": storyrun, "namespace": ns},
        }
        if step:
            data["step"] = {"name": step}
        payload = {
            "kind": "hook",
            "type": event,
            "hook": {"version": "v1", "event": event, "source": "hub", "data": data},
        }
        metadata = {
            "kind": "hook",
            "type": event,
            "hook.event": event,
            "hook.source": "hub",
            codec.META_MESSAGE_ID: message_id,
        }
        if step:
            metadata["hook.step"] = step
        await self.send_hub_packet(metadata, payload=payload, sequence=sequence)

    async def send_chunked(
        self,
        data: bytes,
        mime_type: str = "application/octet-stream",
        *,
        chunk_size: int,
        order: list[int] | None = None,
        duplicate: int | None = None,
        chunk_id: str = "chunk-1",
        metadata: Mapping[str, str] | None = None,
        partition: str = "",
    ) -> None:
        """Send ``data`` as a chunked binary packet, e.g. to test reassembly.

        See docs/contract/stream.md#chunking.

        Every chunk carries ``chunk_id``/``chunk_index``/``chunk_count``/``chunk_bytes``/
        ``total_bytes`` and the same stream id and sequence (one logical packet: one receipt
        covers it, and a replay resends every chunk). ``order`` is the send order of chunk
        indexes (default ascending); ``duplicate`` sends that index a second time.
        """
        parts = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
        chunks: list[pb.DataResponse] = []
        for index, part in enumerate(parts):
            packet = pb.DataResponse(metadata={**(metadata or {}), **self.hub_metadata})
            packet.binary.payload = part
            packet.binary.mime_type = mime_type
            env = packet.envelope
            env.stream_id = self.stream_id
            env.partition = partition
            env.chunk_id = chunk_id
            env.chunk_index = index
            env.chunk_count = len(parts)
            env.chunk_bytes = len(part)
            env.total_bytes = len(data)
            chunks.append(packet)
        sequence = list(range(len(parts))) if order is None else list(order)
        if duplicate is not None:
            sequence.append(duplicate)
        await self._pending.put(([chunks[i] for i in sequence], self.sequenced))

    def _sequence(self, packets: list[pb.DataResponse]) -> None:
        first = packets[0].envelope
        partition = first.partition if self.ordering == "per_partition" else ""
        key = (self.stream_id, partition)
        seq = self._counters.get(key, 0) + 1
        self._counters[key] = seq
        # The hub clears upstream stream_id/sequence and assigns its own (cloneDownstreamEnvelope).
        for packet in packets:
            packet.envelope.stream_id = self.stream_id
            packet.envelope.sequence = seq

    def _track(self, packets: list[pb.DataResponse]) -> None:
        first = packets[0]
        env = first.envelope
        if first.HasField("envelope") and env.stream_id and env.sequence > 0:
            key = (env.stream_id, env.partition)
            self._unacked.setdefault(key, {})[env.sequence] = _Unacked(
                packets, _reassembled_size(packets)
            )

    @property
    def unacked(self) -> list[tuple[str, str, int]]:
        """``(stream_id, partition, sequence)`` of sequenced packets no receipt covered yet."""
        return sorted(
            (sid, part, seq) for (sid, part), seqs in self._unacked.items() for seq in seqs
        )

    # -- control to the engram ----------------------------------------------------------------

    async def send_control(self, type_: str, metadata: Mapping[str, str] | None = None) -> None:
        """Send a directive (``handoff.draining``, ``start``, custom...) on the Control stream."""
        session = self._control
        if session is None:
            raise RuntimeError("no Control stream is open")
        await session.outbox.put(codec.control_response(type_, metadata))

    def pause(self) -> None:
        """The hub's PAUSE: close the upstream gate (engram output is dropped silently)."""
        self.upstream_open = False
        self._notify()

    def resume(self) -> None:
        """The hub's RESUME: reopen the upstream gate."""
        self.upstream_open = True
        self._notify()

    # -- fault injection ----------------------------------------------------------------------

    def stall_reads(self) -> None:
        """Stop reading the engram's Data stream, as a stuck connector would.

        grpclib returns HTTP/2 flow-control credit only as messages are read, so once the
        window is full the engram's sends block: this drives its per-send timeout
        (``BUBU_GRPC_MESSAGE_TIMEOUT``). :meth:`resume_reads` undoes it.
        """
        self._reading.clear()

    def resume_reads(self) -> None:
        """Read the engram's Data stream again after :meth:`stall_reads`."""
        self._reading.set()

    async def kill_session(self, mode: Literal["error", "eof", "reset"] = "error") -> None:
        """End the current Data and Control streams abruptly.

        ``"error"`` ends them with UNAVAILABLE (a transport failure), ``"eof"`` closes them
        cleanly (the engram sees end-of-stream), ``"reset"`` sends RST_STREAM (no status at all).
        Either way Go reconnects; unacked packets are replayed on the next Data stream.
        """
        sessions = [s for s in (self._data, self._control) if s is not None]
        for session in sessions:
            session.kill_mode = mode
            session.killed.set()
        # Let the handlers observe the kill before the caller continues.
        await asyncio.sleep(0)

    async def restart(
        self, *, timeout: float = 10.0, mode: Literal["error", "eof", "reset"] = "error"
    ) -> None:
        """:meth:`kill_session`, then wait until the engram has reconnected and re-handshaken."""
        before_data = self.stats.data_sessions
        before_control = self.stats.control_sessions
        await self.kill_session(mode)
        await self.wait_until(
            lambda: (
                self.stats.data_sessions > before_data
                and self.stats.control_sessions > before_control
            ),
            timeout=timeout,
        )
        await self.wait_ready(timeout=timeout)

    # -- waiting ------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checking on every connector event.

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def wait_ready(self, *, timeout: float = 5.0) -> None:
        """Wait until the engram acknowledged ``connector.ready`` (and capabilities if required)."""

        def ready() -> bool:
            session = self._control
            if session is None or not session.ready_acked.is_set():
                return False
            required = (self.startup_capabilities or "").strip().lower() == "required"
            return not required or session.capabilities_acked.is_set()

        await self.wait_until(ready, timeout=timeout)

    async def next_output(self, *, timeout: float = 5.0) -> StreamMessage:
        """The next message the engram published."""
        async with asyncio.timeout(timeout):
            return await self.outputs.get()

    async def wait_control(
        self,
        type_: str,
        *,
        after: int = 0,
        timeout: float = 5.0,
    ) -> pb.ControlRequest:
        """Wait for a control request of ``type_`` (index ``>= after`` in ``control_requests``)."""
        found: list[pb.ControlRequest] = []

        def seen() -> bool:
            for req in self.control_requests[after:]:
                if codec.control_type(req.action, req.custom_action) == type_:
                    found.append(req)
                    return True
            return False

        await self.wait_until(seen, timeout=timeout)
        return found[0]

    # -- grpclib service ----------------------------------------------------------------------

    def __mapping__(self) -> dict[str, Handler]:
        return {
            f"{_SERVICE}/Data": Handler(
                self._handle_data, Cardinality.STREAM_STREAM, pb.DataRequest, pb.DataResponse
            ),
            f"{_SERVICE}/Control": Handler(
                self._handle_control,
                Cardinality.STREAM_STREAM,
                pb.ControlRequest,
                pb.ControlResponse,
            ),
            f"{_SERVICE}/HubPush": Handler(
                self._handle_hub_push,
                Cardinality.STREAM_STREAM,
                pb.HubPushRequest,
                pb.HubPushResponse,
            ),
        }

    def _check_protocol(self, stream: Stream[Any, Any]) -> dict[str, str]:
        headers = {k: v for k, v in (stream.metadata or {}).items() if isinstance(v, str)}
        if self.require_protocol_header:
            version = headers.get(PROTOCOL_HEADER)
            if version != PROTOCOL_VERSION:
                # The Go connector's answer to a missing or different protocol
                # (docs/contract/stream.md#non-protobuf-contracts).
                raise GRPCError(
                    Status.FAILED_PRECONDITION,
                    f"transport protocol mismatch: want {PROTOCOL_VERSION}, "
                    f"got {version or '<missing>'}",
                )
        return headers

    async def _handle_hub_push(self, stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "HubPush is not implemented by the connector")

    def _refuse_if_stopping(self) -> None:
        if self._stopping:
            self.stats.refused_streams += 1
            self._notify()
            raise GRPCError(Status.UNAVAILABLE, "transport connector is shutting down")

    def _record_end(self, kind: Literal["data", "control"], session: _Session) -> None:
        # The engram went away without a half-close: RST_STREAM (grpclib cancels the handler
        # with StreamTerminatedError) or a lost connection. Our own kills do not count.
        if session.killed.is_set():
            return
        if kind == "data":
            self.stats.data_resets += 1
        else:
            self.stats.control_resets += 1

    async def _run_until_killed(
        self, session: _Session, stream: Stream[Any, Any], *work: Awaitable[None]
    ) -> None:
        tasks = [asyncio.ensure_future(w) for w in work]
        killed = asyncio.ensure_future(session.killed.wait())
        try:
            done, _ = await asyncio.wait([*tasks, killed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in [*tasks, killed]:
                if not t.done():
                    t.cancel()
            for t in [*tasks, killed]:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if killed in done:
            if session.kill_mode == "error":
                raise GRPCError(Status.UNAVAILABLE, "local connector session killed")
            if session.kill_mode == "reset":
                # RST_STREAM: the engram gets no status at all, like a crashed sidecar.
                with contextlib.suppress(Exception):
                    await stream.cancel()
            return
        for t in tasks:
            if t in done and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    # Data ----------------------------------------------------------------------------------

    async def _handle_data(self, stream: Stream[pb.DataRequest, pb.DataResponse]) -> None:
        self._refuse_if_stopping()
        headers = self._check_protocol(stream)
        self.data_headers.append(headers)
        old = self._data
        if old is not None:
            # A newer Data stream replaces the active one (the connector serves one engram).
            old.kill_mode = "eof"
            old.killed.set()
        self.stats.data_sessions += 1
        session = _Session(self.stats.data_sessions)
        self._data = session
        self._notify()
        try:
            work = [self._data_recv(stream), self._data_send(stream)]
            if self.heartbeat_interval is not None:
                work.append(self._heartbeats(self.heartbeat_interval))
            await self._run_until_killed(session, stream, *work)
        except (asyncio.CancelledError, StreamTerminatedError, OSError):  # OSError: lost connection
            self._record_end("data", session)
            raise
        finally:
            if self._data is session:
                self._data = None
            self._notify()

    async def _data_recv(self, stream: Stream[pb.DataRequest, pb.DataResponse]) -> None:
        while True:
            await self._reading.wait()
            req = await stream.recv_message()
            if req is None:
                # The engram half-closed (END_STREAM): end our side too.
                self.stats.data_half_closes += 1
                return
            self._on_published(req)

    def _on_published(self, req: pb.DataRequest) -> None:
        if req.WhichOneof("frame") is None and codec.is_heartbeat_metadata(req.metadata):
            self.stats.data_heartbeats += 1
            self._notify()
            return
        if not self.upstream_open:
            self.stats.dropped_upstream += 1
            self._notify()
            return
        if self.validate_inbound:
            try:
                validate.check_packet(req, what="engram data request invalid")
            except ProtocolViolationError as exc:
                self.stats.violations.append(str(exc))
                self._notify()
                return
        self.published_packets.append(req)
        self.stats.published += 1
        try:
            msg = codec.from_pb_packet(req)
        except ProtocolViolationError as exc:
            self.stats.violations.append(f"engram data request undecodable: {exc}")
        else:
            self.outputs.put_nowait(msg)
        self._notify()

    async def _heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            packet = hub_packet_response(
                {codec.HEARTBEAT_METADATA_KEY: "true", **self.hub_metadata}, payload={}
            )
            # Best effort, like the hub: a full queue skips this beat.
            with contextlib.suppress(asyncio.QueueFull):
                self._pending.put_nowait(([packet], False))

    async def _data_send(self, stream: Stream[pb.DataRequest, pb.DataResponse]) -> None:
        # Replay first, sorted by (partition, sequence), original sequence numbers kept
        # (docs/contract/stream.md#dedupe).
        replay = sorted(
            (
                (part, seq, entry.packets)
                for (_, part), seqs in self._unacked.items()
                for seq, entry in seqs.items()
            ),
            key=lambda item: (item[0], item[1]),
        )
        for _, _, packets in replay:
            if not self.downstream_open:
                self.stats.dropped_downstream += 1
                continue
            for packet in packets:
                await stream.send_message(packet)
            self.stats.redelivered += 1
            self._notify()
        while True:
            packets, sequence = await self._pending.get()
            if sequence:
                self._sequence(packets)
            self._track(packets)
            if not self.downstream_open:
                # The connector drops hub packets while its downstream gate is closed; the hub
                # keeps sequenced ones unacked, so they are replayed after a reconnect.
                self.stats.dropped_downstream += 1
                self._notify()
                continue
            for packet in packets:
                await stream.send_message(packet)
            self.stats.sent += 1
            if self._flow is not None and not packets[0].envelope.sequence:
                # Go shouldAcknowledgeDownstreamImmediately: nothing to wait a receipt for.
                self._on_hub_flow(self._flow.record_delivery(sum(p.ByteSize() for p in packets)))
            self._notify()

    # Control -------------------------------------------------------------------------------

    async def _handle_control(self, stream: Stream[pb.ControlRequest, pb.ControlResponse]) -> None:
        self._refuse_if_stopping()
        headers = self._check_protocol(stream)
        self.control_headers.append(headers)
        old = self._control
        if old is not None:
            old.kill_mode = "eof"
            old.killed.set()
        self.stats.control_sessions += 1
        session = _Session(self.stats.control_sessions)
        self._control = session
        if self.send_ready:
            ready_meta: dict[str, str] = {}
            if self.startup_capabilities is not None:
                ready_meta[STARTUP_CAPABILITIES_KEY] = self.startup_capabilities
            session.outbox.put_nowait(codec.control_response("connector.ready", ready_meta))
        if self.send_capabilities:
            session.outbox.put_nowait(
                codec.control_response("connector.capabilities", self.capabilities)
            )
        if self.send_handoff:
            session.outbox.put_nowait(
                codec.control_response(
                    "handoff.cutover",
                    {"phase": "cutover", "reason": "hub_connected", "ts": _now_ms()},
                )
            )
        self._notify()
        try:
            await self._run_until_killed(
                session,
                stream,
                self._control_recv(stream, session),
                self._control_send(stream, session),
            )
        except (asyncio.CancelledError, StreamTerminatedError, OSError):  # OSError: lost connection
            self._record_end("control", session)
            raise
        finally:
            if self._control is session:
                self._control = None
            self._notify()

    async def _control_send(
        self, stream: Stream[pb.ControlRequest, pb.ControlResponse], session: _Session
    ) -> None:
        while True:
            response = await session.outbox.get()
            await stream.send_message(response)

    async def _control_recv(
        self, stream: Stream[pb.ControlRequest, pb.ControlResponse], session: _Session
    ) -> None:
        while True:
            req = await stream.recv_message()
            if req is None:
                self.stats.control_half_closes += 1  # END_STREAM from the engram
                return
            self.control_requests.append(req)
            if self.validate_inbound:
                try:
                    validate.check(req, what="engram control request invalid")
                except ProtocolViolationError as exc:
                    self.stats.violations.append(str(exc))
                    self._notify()
                    continue
            reply = self._on_control(req, session)
            if reply is not None:
                session.outbox.put_nowait(reply)
            self._notify()

    def _on_control(self, req: pb.ControlRequest, session: _Session) -> pb.ControlResponse | None:
        # The connector normalises the type (trim, lower-case, "" -> "unknown") and names it
        # under `received` in its ACK (not `type`), docs/contract/stream.md#control.
        lowered = codec.control_type(req.action, req.custom_action).strip().lower() or "unknown"
        meta = dict(req.metadata)

        def ack(handled: bool, received: str = lowered, **extra: str) -> pb.ControlResponse:
            body = {"received": received, "handled": "true" if handled else "false", **extra}
            return codec.control_response("ack", body)

        if lowered == "ack":
            # The engram acknowledging one of our directives; never answered (no ping-pong).
            acked = meta.get("type", "")
            if acked == "connector.ready":
                session.ready_acked.set()
            elif acked == "connector.capabilities":
                session.capabilities_acked.set()
            return None
        if lowered == codec.CONTROL_TYPE_DOWNSTREAM_DELIVERED:
            self._on_receipt(meta)
            return None
        if lowered == "noop":
            return ack(False, reason="empty")
        if lowered in ("start", "resume"):
            self.upstream_open = self.downstream_open = True
            return ack(True)
        if lowered in ("stop", "pause"):
            self.upstream_open = self.downstream_open = False
            return ack(True)
        gates = {
            "start-upstream": ("upstream_open", True),
            "stop-upstream": ("upstream_open", False),
            "start-downstream": ("downstream_open", True),
            "stop-downstream": ("downstream_open", False),
        }
        if lowered in gates:
            attr, value = gates[lowered]
            setattr(self, attr, value)
            return ack(True)
        if lowered == "heartbeat":
            self.stats.control_heartbeats += 1
            return ack(True, status="alive")
        if lowered == "codec-select":
            return ack(False, reason="codec selection not implemented")
        return ack(False, reason="unknown")

    def _on_receipt(self, meta: Mapping[str, str]) -> None:
        # Values are trimmed; a missing or malformed sequence/size is logged and ignored by the
        # Go connector (parseDownstreamDeliveryReceipt); we record it as a violation.
        stream_id = meta.get("stream_id", "").strip()
        partition = meta.get("partition", "").strip()
        try:
            sequence = int(meta.get("sequence", "").strip())
            raw_size = meta.get("size_bytes", "").strip()
            size = int(raw_size) if raw_size else 0
            if sequence < 0 or size < 0:
                raise ValueError("negative")
        except ValueError:
            self.stats.violations.append(f"malformed downstream.delivered receipt: {dict(meta)}")
            self._notify()
            return
        expected: int | None = None
        pending = self._unacked.get((stream_id, partition))
        if pending is not None:
            entry = pending.get(sequence)
            if entry is not None:
                expected = entry.expected_size
            # Cumulative, like the hub's ApplyFlow: an ack of N trims everything up to N.
            for seq in [s for s in pending if s <= sequence]:
                del pending[seq]
            if not pending:
                del self._unacked[(stream_id, partition)]
        self.stats.receipts.append(Receipt(stream_id, sequence, partition, size, expected))
        if self._flow is not None:
            self._on_hub_flow(self._flow.record_receipt(size, sequence, partition))

    def _on_hub_flow(self, update: pb.FlowControl | None) -> None:
        if update is not None:
            self.hub_flow.append(update)
            self._notify()


def hub_packet_response(
    metadata: Mapping[str, str],
    *,
    payload: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> pb.DataResponse:
    """Convert a frameless hub packet to the connector's ``DataResponse`` (Go connector rules).

    ``structuredEnvelopeFromPacket``: the envelope takes ``kind`` from metadata ``kind``, the
    message id from ``bubu.envelope.message_id``, payload/inputs as JSON, and - only when one of
    those is set - the packet metadata; nothing set means a frameless response with the Structs.
    """
    meta = dict(metadata)
    kind = meta.get("kind", "").strip()
    message_id = meta.get(codec.META_MESSAGE_ID, "").strip()
    populated = bool(kind or message_id or payload is not None or inputs is not None)
    response = pb.DataResponse(metadata=meta)
    if not populated:
        return response
    doc: dict[str, Any] = {"version": "v1"}
    if not kind and (payload is not None or inputs is not None):
        kind = "data"  # envelope.Marshal's default
    if kind:
        doc["kind"] = kind
    if message_id:
        doc["messageId"] = message_id
    if meta:
        doc["metadata"] = meta
    if payload is not None:
        doc["payload"] = dict(payload)
    if inputs is not None:
        doc["inputs"] = dict(inputs)
    response.binary.payload = json.dumps(doc, separators=(",", ":")).encode()
    response.binary.mime_type = "application/vnd.bubu.packet+json"
    return response
