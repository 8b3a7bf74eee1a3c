"""Fault tests for the streaming runtime against the local connector (loopback gRPC).

The soak kills the connector's streams repeatedly while 10,000 messages flow and checks the
delivery guarantees: nothing that was not ``done()`` is lost (the hub replays it), and nothing
that was ``done()`` reaches the engram twice (the process-wide deduper suppresses the replay and
re-sends its receipt). The other tests feed broken input and check the documented error and the
documented retry-or-stop (docs/contract/stream.md#keepalive-and-limits,
docs/contract/stream.md#chunking, docs/contract/stream.md#errors,
docs/contract/stream.md#non-protobuf-contracts).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.sources import MappingSource
from bubu._runtime.transport import TransportSettings
from bubu._streaming import run_with_reconnect, start_streaming, supervise
from bubu._transport.dedupe import PacketDeduper
from bubu._transport.session import DeliveryBook, Session
from bubu.engram import StreamingEngram
from bubu.errors import (
    ContractError,
    HangTimeoutError,
    MessageTooLargeError,
    StreamSessionError,
)
from bubu.testkit._connector import LocalConnector
from tests.integration._stream_helpers import running

pytestmark = pytest.mark.loopback

# Unlimited retries and short backoffs: these tests kill sessions on purpose.
FAST = {
    "BUBU_GRPC_RECONNECT_BASE_BACKOFF": "5ms",
    "BUBU_GRPC_RECONNECT_MAX_BACKOFF": "20ms",
    "BUBU_GRPC_RECONNECT_MAX_RETRIES": "-1",
    "BUBU_GRPC_MESSAGE_TIMEOUT": "5s",
}


class Ledger(StreamingEngram[dict[str, Any]]):
    """Echoes each message and keeps a ledger of deliveries per sequence number."""

    def __init__(self) -> None:
        self.deliveries: dict[int, int] = {}
        self.done: set[int] = set()
        self.delivered_after_done: list[int] = []
        self.streams = 0
        self.inits = 0

    async def init(self, config: dict[str, Any], secrets: Any) -> None:
        self.inits += 1

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        self.streams += 1
        async for msg in inbound:
            seq = msg.envelope.sequence if msg.envelope is not None else 0
            if seq in self.done:
                self.delivered_after_done.append(seq)
            self.deliveries[seq] = self.deliveries.get(seq, 0) + 1
            async with msg:
                yield StreamMessage.json(msg.json_data())
            self.done.add(seq)


@pytest.mark.slow
async def test_soak_10000_messages_with_repeated_connector_kills() -> None:
    total = 10_000
    kill_every = 700
    engram = Ledger()
    conn = LocalConnector(settings={"env": FAST}, buffer_size=64)
    kills = 0
    async with conn, running(engram, conn) as task:
        await conn.wait_ready()
        for n in range(total):
            await conn.send(StreamMessage.json({"n": n}))
            if n and n % kill_every == 0:
                mode = "error" if kills % 2 == 0 else "eof"
                await conn.restart(mode=mode, timeout=20)
                kills += 1
        await conn.wait_until(lambda: conn.stats.sent == total and not conn.unacked, timeout=60)
        assert not task.done()
    sequences = set(range(1, total + 1))
    # Nothing lost: every sequence reached the engram and was done (hence receipted).
    assert set(engram.deliveries) == sequences
    assert engram.done == sequences
    # Nothing that was done reached the engram twice.
    assert engram.delivered_after_done == []
    # The kills really interrupted in-flight work, so some undone messages were redelivered.
    assert kills >= 10
    assert conn.stats.redelivered > 0
    assert engram.inits == 1 and engram.streams == kills + 1
    assert conn.stats.violations == []


async def test_undecodable_protobuf_bytes_are_a_retryable_session_error() -> None:
    engram = Ledger()
    conn = LocalConnector(settings={"env": FAST}, sequenced=False)
    async with conn, running(engram, conn):
        await conn.wait_ready()
        server_codec = conn._server._codec  # type: ignore[union-attr]
        original = server_codec.encode

        def garbage(message: Any, message_type: Any) -> bytes:
            if isinstance(message, pb.DataResponse) and message.metadata.get("garbage"):
                return b"\xff\xff\xff\xff"
            return original(message, message_type)

        server_codec.encode = garbage
        await conn.send_packet(pb.DataResponse(metadata={"garbage": "1"}))
        await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=5)
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"after": 1}))
        out = await conn.next_output()
    assert out.json_data() == {"after": 1}
    assert engram.streams >= 2


async def test_invalid_envelope_json_is_a_retryable_session_error() -> None:
    engram = Ledger()
    conn = LocalConnector(settings={"env": FAST}, sequenced=False)
    async with conn, running(engram, conn):
        await conn.wait_ready()
        packet = pb.DataResponse()
        packet.binary.payload = b'{"version":"v1","payload":{not json'
        packet.binary.mime_type = "application/vnd.bubu.packet+json"
        await conn.send_packet(packet)
        await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=5)
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"after": 2}))
        assert (await conn.next_output()).json_data() == {"after": 2}


async def test_oversized_inbound_frame_is_one_error_naming_it_and_no_reconnect_loop() -> None:
    # Go reconnects, and the connector redelivers the same message until the retries run out
    # (issue 12 item 4); here the run stops with one error naming the limit and the message.
    engram = Ledger()
    conn = LocalConnector(settings={"env": FAST})
    async with conn, running(engram, conn) as task:
        await conn.wait_ready()
        await conn.send(StreamMessage.from_bytes(b"x" * (10 * 1024 * 1024 + 10), "a/b"))
        with pytest.raises(MessageTooLargeError) as info:
            await asyncio.wait_for(task, 10)
    text = str(info.value)
    assert "vs. 10485760 bytes, BUBU_GRPC_CLIENT_MAX_RECV_BYTES" in text
    assert "stream_id='default/local-run/local-step' sequence=1" in text
    assert conn.stats.data_sessions == 1 and engram.deliveries == {}


async def test_dedupe_overflow_is_a_session_error_then_reconnect() -> None:
    settings = TransportSettings(reconnect_base_backoff=0.005, reconnect_max_backoff=0.01)
    book = DeliveryBook(PacketDeduper(max_entries=3))
    held: list[InboundMessage] = []
    sessions: list[Session] = []

    async def hold_all(inbound: Any, emit: Any) -> None:
        async for msg in inbound:
            held.append(msg)

    async with LocalConnector() as conn:

        def make() -> Session:
            session = Session(
                endpoint=conn.address,
                binding_reference="",
                settings=settings,
                book=book,
                body=supervise(hold_all),
            )
            sessions.append(session)
            return session

        task = asyncio.create_task(run_with_reconnect(make, settings))
        try:
            await conn.wait_ready()
            for n in range(4):
                await conn.send(StreamMessage.json({"n": n}))
            await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=5)
            await conn.wait_until(lambda: conn.stats.redelivered >= 1, timeout=5)
            await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    # The first session took 3 pending packets, the 4th overflowed; the replay starts over.
    assert len(sessions) >= 2
    assert [m.envelope.sequence for m in held[:3]] == [1, 2, 3]
    assert held[3].envelope.sequence == 1


async def test_hang_watcher_stops_the_process_without_reconnecting() -> None:
    engram = Ledger()
    env = {**FAST, "BUBU_GRPC_HANG_TIMEOUT": "200ms"}
    conn = LocalConnector(settings={"env": env}, send_handoff=False)
    async with conn, running(engram, conn) as task:
        with pytest.raises(HangTimeoutError, match="BUBU_GRPC_HANG_TIMEOUT"):
            await asyncio.wait_for(task, 5)
    assert conn.stats.data_sessions == 1


def _binding(version: str = "1.0.0", **changes: Any) -> str:
    envelope: dict[str, Any] = {
        "name": "b",
        "namespace": "ns",
        "binding": {"driver": "local", "endpoint": "127.0.0.1:1", "protocolVersion": version},
    }
    envelope.update(changes)
    return json.dumps(envelope)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (_binding("9.9.9"), "unsupported transport protocol version"),
        (_binding(name=""), "binding envelope name is required"),
        (json.dumps({"driver": "x", "endpoint": "e", "protocolVersion": "1.0.0"}), "name"),
        ("not-json", "must be a JSON envelope"),
        ("", "transport binding missing"),
    ],
)
async def test_bad_bindings_stop_before_any_dial(value: str, match: str) -> None:
    engram = Ledger()
    with pytest.raises(ContractError, match=match) as info:
        await start_streaming(engram, source=MappingSource({"BUBU_TRANSPORT_BINDING": value}))
    assert info.value.variable == "BUBU_TRANSPORT_BINDING"
    assert engram.inits == 0
    assert not info.value.retryable


async def test_plaintext_security_mode_is_rejected() -> None:
    async with LocalConnector() as conn:
        env = {**conn.binding_env(), "BUBU_TRANSPORT_SECURITY_MODE": "plaintext"}
        with pytest.raises(ContractError, match="BUBU_TRANSPORT_SECURITY_MODE"):
            await start_streaming(Ledger(), source=MappingSource(env))
        assert conn.stats.data_sessions == 0


async def test_loopback_is_dialled_in_plaintext_even_with_tls_mode() -> None:
    engram = Ledger()
    async with LocalConnector(settings={"env": FAST}) as conn:
        env = {**conn.binding_env(), "BUBU_TRANSPORT_SECURITY_MODE": "tls"}
        task = asyncio.create_task(start_streaming(engram, source=MappingSource(env)))
        try:
            await conn.wait_ready()
            await conn.send(StreamMessage.json({"tls": "skipped"}))
            assert (await conn.next_output()).json_data() == {"tls": "skipped"}
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _tls_host() -> str:
    """A name for this machine that is not loopback-looking, so the engram must use TLS.

    The rule is on the endpoint text (docs/contract/stream.md#tls): ``localhost`` and loopback
    IPs are plaintext, any other name is TLS, whatever address it resolves to.
    """
    name = socket.gethostname()
    assert name and name.lower() != "localhost", "the TLS tests need a real host name"
    socket.getaddrinfo(name, None)  # resolvable, or the test fails here and says why
    return name


def _tls_files(tmp_path: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host`` signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("bubu test CA", ca_key, "bubu test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(host, key, "bubu test CA", ca_key, ca=False)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "tls.crt", tmp_path / "tls.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def _server_context(cert: Path, key: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.minimum_version = context.maximum_version = version
    return context


async def test_tls13_dial_to_a_non_loopback_name_with_the_tls_knobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _tls_host()
    ca, cert, key = _tls_files(tmp_path, host)
    # The engram trusts the system roots (Go: no CA knob, no client certificate); OpenSSL's
    # SSL_CERT_FILE points those roots at our CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    server = _server_context(cert, key, ssl.TLSVersion.TLSv1_3)
    engram = Ledger()
    conn = LocalConnector(
        host="0.0.0.0", endpoint_host=host, ssl=server, settings={"env": FAST}, sequenced=False
    )
    async with conn:
        assert conn.address == f"{host}:{conn.port}"
        env = {**conn.binding_env(), "BUBU_TRANSPORT_SECURITY_MODE": "tls"}
        task = asyncio.create_task(start_streaming(engram, source=MappingSource(env)))
        try:
            await conn.wait_ready()
            await conn.send(StreamMessage.json({"over": "tls"}))
            assert (await conn.next_output()).json_data() == {"over": "tls"}
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    assert conn.stats.data_sessions == 1


@pytest.mark.parametrize("case", ["plaintext-server", "tls12-server", "untrusted-cert"])
async def test_non_loopback_dial_never_falls_back_to_plaintext_or_old_tls(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _tls_host()
    ca, cert, key = _tls_files(tmp_path, host)
    server: ssl.SSLContext | None = None
    if case == "tls12-server":
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        server = _server_context(cert, key, ssl.TLSVersion.TLSv1_2)
    elif case == "untrusted-cert":
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-roots.pem"))
        server = _server_context(cert, key, ssl.TLSVersion.TLSv1_3)
    env = {**FAST, "BUBU_GRPC_RECONNECT_MAX_RETRIES": "1", "BUBU_GRPC_DIAL_TIMEOUT": "2s"}
    conn = LocalConnector(host="0.0.0.0", endpoint_host=host, ssl=server, settings={"env": env})
    async with conn:
        source = MappingSource(conn.binding_env())
        with pytest.raises(StreamSessionError, match="retries exhausted.*dial failed"):
            await asyncio.wait_for(start_streaming(Ledger(), source=source), 20)
        # The handshake failed before HTTP/2: no stream ever reached the connector.
        assert conn.stats.data_sessions == 0 and conn.stats.control_sessions == 0


async def test_connector_refusing_every_stream_is_retried_until_exhausted() -> None:
    settings = TransportSettings(
        reconnect_base_backoff=0.001, reconnect_max_backoff=0.002, reconnect_max_retries=3
    )
    attempts: list[int] = []

    async def engram(inbound: Any, emit: Any) -> None:
        return None

    async with LocalConnector(send_ready=False) as conn:

        def make() -> Session:
            attempts.append(1)
            return Session(
                endpoint=conn.address,
                binding_reference="",
                settings=settings,
                book=DeliveryBook(),
                body=supervise(engram),
            )

        task = asyncio.create_task(run_with_reconnect(make, settings))
        await conn.wait_until(lambda: conn.stats.control_sessions >= 1)
        await conn.kill_session("eof")
        await asyncio.sleep(0.05)
        for _ in range(5):
            await conn.kill_session("error")
            await asyncio.sleep(0.05)
        with pytest.raises(StreamSessionError, match="retries exhausted"):
            await asyncio.wait_for(task, 5)
    assert len(attempts) == 4  # the first attempt + 3 retries


class Flood(StreamingEngram[dict[str, Any]]):
    """Answers each message with ``count`` outputs of 1 MiB each (raw binary)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.streams = 0

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        self.streams += 1
        async for msg in inbound:
            n = (msg.json_data() or {}).get("n", 0)
            async with msg:
                for _ in range(self.count if n == 0 else 1):
                    yield StreamMessage.from_bytes(b"x" * (1024 * 1024))


async def test_blocked_data_send_times_out_and_the_session_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A connector that stops reading leaves the engram's send blocked on HTTP/2 flow control;
    # BUBU_GRPC_MESSAGE_TIMEOUT bounds that send (Go "<op> timed out after 30s", retryable).
    engram = Flood(count=8)
    env = {**FAST, "BUBU_GRPC_MESSAGE_TIMEOUT": "300ms"}
    conn = LocalConnector(settings={"env": env}, sequenced=False)
    async with conn, running(engram, conn):
        await conn.wait_ready()
        conn.stall_reads()
        with caplog.at_level("WARNING", logger="bubu.transport"):
            await conn.send(StreamMessage.json({"n": 0}))
            await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=10)
        assert any("data send: timed out after 0.3s" in r.getMessage() for r in caplog.records)
        conn.resume_reads()
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await conn.wait_until(lambda: conn.stats.published >= 1, timeout=10)
    assert engram.streams >= 2
