"""Reconnect policy, error classification, default control replies and dial rules."""

from __future__ import annotations

import random
import ssl
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.transport import TransportSettings
from bubu._streaming import jitter_delay, run_with_reconnect
from bubu._transport.channel import (
    CappedProtoCodec,
    Endpoint,
    check_security_mode,
    parse_endpoint,
    tls_context,
)
from bubu._transport.session import (
    DeliveryBook,
    Receipt,
    default_control_reply,
    is_retriable,
)
from bubu.errors import (
    ContractError,
    HandshakeTimeoutError,
    HangTimeoutError,
    MessageTooLargeError,
    ProtocolViolationError,
    StreamSessionError,
)


@pytest.mark.parametrize(
    ("directive", "reply"),
    [
        ("", ("false", "noop")),
        ("noop", ("false", "noop")),
        ("connector.ready", ("true", "startup")),
        ("connector.capabilities", ("true", "capabilities")),
        ("handoff.draining", ("true", "handoff")),
        ("handoff.cutover", ("true", "handoff")),
        ("handoff.ready", ("true", "handoff")),
        ("start", ("false", "no_control_handler")),
        ("heartbeat", ("false", "no_control_handler")),
        ("codec-select", ("false", "no_control_handler")),
        ("error", ("false", "no_control_handler")),
        ("my.custom", ("false", "no_control_handler")),
    ],
)
def test_default_control_replies(directive: str, reply: tuple[str, str]) -> None:
    kind, meta = default_control_reply(directive)  # type: ignore[misc]
    assert kind == "ack"
    assert meta == {"handled": reply[0], "reason": reply[1], "type": directive}


def test_ack_gets_no_reply() -> None:
    assert default_control_reply("ack") is None


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (StreamSessionError("data stream recv failed: EOF"), True),
        (ConnectionResetError("reset"), True),
        (RuntimeError("engram bug"), True),
        (GRPCError(Status.UNAVAILABLE), True),
        (GRPCError(Status.RESOURCE_EXHAUSTED), True),
        (GRPCError(Status.INVALID_ARGUMENT), False),
        (GRPCError(Status.PERMISSION_DENIED), False),
        (GRPCError(Status.UNAUTHENTICATED), False),
        (GRPCError(Status.UNIMPLEMENTED), False),
        (GRPCError(Status.FAILED_PRECONDITION), False),
        (HandshakeTimeoutError("x"), False),
        (HangTimeoutError("x"), False),
        (ContractError("transport binding missing endpoint"), False),
        (ProtocolViolationError("protocol mismatch"), False),
    ],
)
def test_retriable_split(error: BaseException, retry: bool) -> None:
    assert is_retriable(error) is retry


def test_jitter_is_within_0_8_and_1_2_and_clamped() -> None:
    rng = random.Random(1)
    delays = [jitter_delay(1.0, 30.0, rng) for _ in range(500)]
    assert 0.8 <= min(delays) and max(delays) < 1.2
    assert jitter_delay(29.0, 30.0, random.Random(0)) <= 30.0
    assert jitter_delay(100.0, 30.0) == 30.0
    # without a generator: the random module's, imported on the first reconnect
    assert all(0.8 <= jitter_delay(1.0, 30.0) < 1.2 for _ in range(50))


class FakeSession:
    def __init__(self, outcome: BaseException | None) -> None:
        self.outcome = outcome

    async def run(self) -> None:
        if self.outcome is not None:
            raise self.outcome


async def _reconnect(outcomes: list[BaseException | None], **kw: Any) -> tuple[Any, list[float]]:
    sleeps: list[float] = []
    pending = list(outcomes)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    settings = TransportSettings(reconnect_base_backoff=0.1, reconnect_max_backoff=0.3, **kw)
    result = await run_with_reconnect(
        lambda: FakeSession(pending.pop(0)),  # type: ignore[arg-type, return-value]
        settings,
        sleep=sleep,
        delay=lambda backoff, cap: backoff,
    )
    return result, sleeps


async def test_retries_transient_errors_with_doubling_backoff_to_the_cap() -> None:
    eof = StreamSessionError("EOF")
    retries, sleeps = await _reconnect([eof, eof, eof, eof, None])
    assert retries == 4
    assert sleeps == pytest.approx([0.1, 0.2, 0.3, 0.3])


async def test_non_retriable_errors_stop_immediately() -> None:
    with pytest.raises(HandshakeTimeoutError):
        await _reconnect([HandshakeTimeoutError("no ready"), None])


async def test_max_retries_counts_over_the_process_lifetime() -> None:
    eof = StreamSessionError("EOF")
    with pytest.raises(StreamSessionError, match="retries exhausted") as info:
        await _reconnect([eof, eof, eof], reconnect_max_retries=2)
    assert info.value.__cause__ is eof


async def test_unlimited_retries_when_negative() -> None:
    eof = StreamSessionError("EOF")
    retries, _ = await _reconnect([eof] * 20 + [None], reconnect_max_retries=-1)
    assert retries == 20


async def test_group_errors_are_unwrapped() -> None:
    group = BaseExceptionGroup("tg", [GRPCError(Status.PERMISSION_DENIED)])
    with pytest.raises(GRPCError):
        await _reconnect([group])


def test_receipt_wire_shape() -> None:
    req = Receipt("ns/run/step", 7, "", 138).to_pb()
    assert req.action == pb.CONTROL_ACTION_UNSPECIFIED
    assert req.custom_action == "downstream.delivered"
    assert dict(req.metadata) == {
        "stream_id": "ns/run/step",
        "sequence": "7",
        "partition": "",
        "size_bytes": "138",
    }


def test_delivery_book_outbox_outlives_sessions_and_wakes_the_sender() -> None:
    book = DeliveryBook()
    woken: list[int] = []
    book.queue_receipt(Receipt("s", 1, "", 1))  # no session bound: kept
    book.bind(lambda: woken.append(1))
    book.queue_receipt(Receipt("s", 2, "", 1))
    assert [r.sequence for r in book.outbox] == [1, 2] and woken == [1]


@pytest.mark.parametrize(
    ("endpoint", "host", "port", "path", "plaintext"),
    [
        ("127.0.0.1:50051", "127.0.0.1", 50051, None, True),
        ("127.9.8.7:1", "127.9.8.7", 1, None, True),
        ("localhost:50051", "localhost", 50051, None, True),
        ("[::1]:50051", "::1", 50051, None, True),
        ("dns:///connector.ns.svc:50051", "connector.ns.svc", 50051, None, False),
        ("10.0.0.5:9000", "10.0.0.5", 9000, None, False),
        ("unix:///tmp/c.sock", None, None, "/tmp/c.sock", True),
        ("unix:/tmp/c.sock", None, None, "/tmp/c.sock", True),
    ],
)
def test_endpoints_and_plaintext_rule(
    endpoint: str, host: str | None, port: int | None, path: str | None, plaintext: bool
) -> None:
    ep = parse_endpoint(endpoint)
    assert (ep.host, ep.port, ep.path, ep.plaintext) == (host, port, path, plaintext)


def test_endpoint_is_an_immutable_value() -> None:
    ep = parse_endpoint("127.0.0.1:50051")
    assert ep == Endpoint("127.0.0.1", 50051, None, True)
    assert ep != Endpoint("127.0.0.1", 50051, None, False)
    assert hash(ep) == hash(Endpoint(host="127.0.0.1", port=50051, path=None, plaintext=True))
    assert repr(ep) == "Endpoint(host='127.0.0.1', port=50051, path=None, plaintext=True)"
    with pytest.raises(AttributeError):
        ep.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("endpoint", ["", "connector", "host:notaport", "host:0", "unix://"])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ContractError):
        parse_endpoint(endpoint)


def test_security_mode_rule() -> None:
    check_security_mode("")
    check_security_mode("tls")
    check_security_mode("TLS")
    with pytest.raises(ContractError, match="BUBU_TRANSPORT_SECURITY_MODE"):
        check_security_mode("plaintext")


def test_tls_context_is_tls13_with_system_roots() -> None:
    ctx = tls_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.get_ca_certs() is not None


def test_capped_codec_enforces_both_caps() -> None:
    codec = CappedProtoCodec(max_send=10, max_recv=10)
    small = pb.DataRequest(metadata={"a": "b"})
    assert pb.DataRequest.FromString(codec.encode(small, pb.DataRequest)) == small
    big = pb.DataRequest(metadata={"a": "b" * 20})
    with pytest.raises(MessageTooLargeError, match="larger than max"):
        codec.encode(big, pb.DataRequest)
    with pytest.raises(MessageTooLargeError, match="received message larger") as info:
        codec.decode(big.SerializeToString(), pb.DataRequest)
    # Inbound: named (size, limit, variable, message) and not retried (no redelivery loop).
    assert "BUBU_GRPC_CLIENT_MAX_RECV_BYTES" in str(info.value) and "DataRequest" in str(info.value)
    assert not info.value.retryable and not is_retriable(info.value)
    assert MessageTooLargeError("x").retryable


def test_full_outbox_releases_the_key_so_the_replay_is_redelivered() -> None:
    from bubu._transport.dedupe import Outcome, PacketDeduper
    from bubu._transport.session import _settler

    book = DeliveryBook(PacketDeduper(), max_outbox=1)
    gen = book.deduper.start_session()
    assert gen == 1
    for key in ("a", "b"):
        assert book.deduper.begin(key) is Outcome.NEW
    _settler(book, book.deduper, "a", Receipt("s", 1, "", 1))()
    _settler(book, book.deduper, "b", Receipt("s", 2, "", 1))()  # outbox full
    assert [r.sequence for r in book.outbox] == [1]
    assert book.deduper.is_completed("a")
    assert not book.deduper.is_completed("b")
    assert book.deduper.begin("b") is Outcome.NEW  # released: a replay is delivered again


async def test_open_channel_uses_tls_off_loopback_and_no_keepalive() -> None:
    from bubu._transport.channel import open_channel

    remote = open_channel("connector.ns.svc:50051", TransportSettings())
    local = open_channel("127.0.0.1:50051", TransportSettings(security_mode="tls"))
    try:
        assert isinstance(remote._ssl, ssl.SSLContext)
        assert remote._ssl.minimum_version == ssl.TLSVersion.TLSv1_3
        assert local._ssl is None  # loopback is plaintext even in tls mode
        # grpclib's client keepalive stays off: a Go connector answers pings more frequent
        # than 5 min with GOAWAY too_many_pings (docs/contract/stream.md#keepalive-and-limits).
        assert remote._config._keepalive_time is None
    finally:
        remote.close()
        local.close()
