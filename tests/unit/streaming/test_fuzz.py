"""Property tests of the transport binding, the transport knobs and chunk reassembly.

The example tests next to these pin Go's exact texts; these check the rules hold for every
input hypothesis can think of (issue 12 deliverable 5): the binding parser either returns a
binding that round-trips what was encoded or raises a ``ContractError`` naming the variable;
the knobs always resolve to usable values; chunks delivered in any order, with duplicates and
interleaved with other assemblies, make exactly one packet with the original payload.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.binding import EnvResolver, go_sprint, parse_binding
from bubu._runtime.parse import go_trim_space
from bubu._runtime.sources import MappingSource
from bubu._runtime.transport import resolve_settings
from bubu._transport.chunks import ChunkReassembler
from bubu.errors import ChunkError, ContractError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_names = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='\\"'),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid BUBU_TRANSPORT_BINDING value and what it encodes."""
    env = draw(
        st.dictionaries(
            st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True), _json_values, max_size=5
        )
    )
    payload = json.dumps({"env": env}).encode()
    encode = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
    text = encode(payload).decode()
    if draw(st.booleans()):
        text = text.rstrip("=")
    doc = {
        "name": draw(_names),
        "namespace": draw(st.one_of(st.just(""), _names)),
        "binding": {
            draw(st.sampled_from(["endpoint"])): draw(_names),
            draw(st.sampled_from(["protocolVersion", "protocol_version"])): "1.0.0",
            "payload": text,
            "driver": draw(st.text(max_size=128)),
        },
    }
    return json.dumps(doc, ensure_ascii=draw(st.booleans())), {"doc": doc, "env": env}


@FAST
@given(envelopes())
def test_a_valid_binding_round_trips(case: tuple[str, dict[str, Any]]) -> None:
    raw, expected = case
    binding = parse_binding(raw)
    doc = expected["doc"]
    assert binding.name == doc["name"].strip() or binding.name == doc["name"]
    assert binding.endpoint.strip() == doc["binding"]["endpoint"].strip()
    # Go's BindingEnvOverrides: fmt.Sprint of each value, nulls and blank renderings skipped.
    rendered = {k: go_sprint(v) for k, v in expected["env"].items() if v is not None}
    assert binding.env_overrides == {k: v for k, v in rendered.items() if go_trim_space(v)}
    resolver = EnvResolver(binding.env_overrides, MappingSource({}))
    for key, value in binding.env_overrides.items():
        assert resolver.get(key) == value


@FAST
@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        _json_values.map(json.dumps),
        envelopes().map(lambda c: c[0][: len(c[0]) // 2]),  # truncated
    )
)
def test_any_other_value_is_a_contract_error_naming_the_variable(raw: str) -> None:
    try:
        parse_binding(raw)
    except ContractError as exc:
        assert exc.variable == "BUBU_TRANSPORT_BINDING" and exc.retryable is False
    # A value that happens to be a valid envelope parses; nothing else may escape.


_KNOBS = (
    "BUBU_GRPC_DIAL_TIMEOUT",
    "BUBU_GRPC_CLIENT_MAX_RECV_BYTES",
    "BUBU_GRPC_CLIENT_MAX_SEND_BYTES",
    "BUBU_GRPC_CHANNEL_BUFFER_SIZE",
    "BUBU_GRPC_MESSAGE_TIMEOUT",
    "BUBU_GRPC_CHANNEL_SEND_TIMEOUT",
    "BUBU_GRPC_HANG_TIMEOUT",
    "BUBU_GRPC_HEARTBEAT_INTERVAL",
    "BUBU_TRANSPORT_HEARTBEAT_INTERVAL",
    "BUBU_GRPC_RECONNECT_BASE_BACKOFF",
    "BUBU_GRPC_RECONNECT_MAX_BACKOFF",
    "BUBU_GRPC_RECONNECT_MAX_RETRIES",
    "BUBU_TRANSPORT_SECURITY_MODE",
    "BUBU_TRACE_PROPAGATION",
)
_knob_values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["1s", "250ms", "-1s", "0", "1h2m", "true", "off", " 5 ", "1e3", "NaN"]),
)


@FAST
@given(
    st.dictionaries(st.sampled_from(_KNOBS), _knob_values),
    st.dictionaries(st.sampled_from(_KNOBS), _knob_values),
)
def test_transport_knobs_always_resolve_to_usable_values(
    process: dict[str, str], overrides: dict[str, str]
) -> None:
    s = resolve_settings(EnvResolver(overrides, MappingSource(process)))
    assert s.dial_timeout > 0 and s.message_timeout > 0
    assert s.max_recv_bytes > 0 and s.max_send_bytes > 0 and s.buffer_size > 0
    assert s.reconnect_base_backoff > 0 and s.reconnect_max_backoff > 0
    assert s.heartbeat_interval > 0 and s.control_heartbeat_interval > 0
    assert s.channel_send_timeout >= 0 and s.hang_timeout >= 0


def _chunk(
    data: bytes, index: int, count: int, chunk_id: str, *, first_meta: str = ""
) -> pb.DataResponse:
    packet = pb.DataResponse(metadata={"i": str(index), "m": first_meta})
    packet.binary.payload = data
    packet.binary.mime_type = "application/octet-stream"
    e = packet.envelope
    e.stream_id, e.chunk_id, e.sequence = "s", chunk_id, 7
    e.chunk_index, e.chunk_count, e.chunk_bytes = index, count, len(data)
    return packet


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)] or [b""]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[str, bytes], list[pb.DataResponse]]:
    """One to three payloads, chunked, delivered interleaved in any order with duplicates."""
    payloads: dict[str, bytes] = {}
    packets: list[pb.DataResponse] = []
    for n in range(draw(st.integers(1, 3))):
        data = draw(st.binary(min_size=1, max_size=300))
        parts = _split(data, draw(st.lists(st.integers(0, 400), max_size=12)))
        chunk_id = f"c{n}"
        payloads[chunk_id] = data
        packets += [_chunk(p, i, len(parts), chunk_id) for i, p in enumerate(parts)]
    order = draw(st.permutations(packets))
    dupes = draw(st.lists(st.sampled_from(packets), max_size=4))
    mixed = list(order)
    for dupe in dupes:
        mixed.insert(draw(st.integers(0, len(mixed))), dupe)
    return payloads, mixed


@FAST
@given(deliveries())
def test_chunks_in_any_order_with_duplicates_make_each_packet_exactly_once(
    case: tuple[dict[str, bytes], list[pb.DataResponse]],
) -> None:
    payloads, packets = case
    r = ChunkReassembler()
    whole: dict[str, bytes] = {}
    completed: set[str] = set()
    for packet in packets:
        chunk_id = packet.envelope.chunk_id
        if chunk_id in completed:
            # A duplicate of a finished assembly starts a new one: never a second packet
            # with a partial payload.
            out = r.add(packet)
            assert out is None or out.binary.payload == payloads[chunk_id]
            continue
        out = r.add(packet)
        if out is not None:
            assert chunk_id not in whole
            whole[chunk_id] = out.binary.payload
            completed.add(chunk_id)
            e = out.envelope
            assert (e.chunk_id, e.chunk_index, e.chunk_count, e.chunk_bytes) == ("", 0, 0, 0)
            assert (e.stream_id, e.sequence) == ("s", 7)
    assert whole == payloads
    assert r.buffered_bytes >= 0


@FAST
@given(
    st.lists(
        st.tuples(
            st.text(max_size=3),
            st.text(max_size=3),
            st.integers(0, 300),
            st.integers(0, 300),
            st.integers(0, 40),
            st.binary(max_size=30),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_garbage_chunk_fields_are_chunk_errors_and_never_corrupt_the_buffer(
    fields: list[tuple[str, str, int, int, int, bytes, bool]],
) -> None:
    r = ChunkReassembler(max_assemblies=4, max_buffered_bytes=200)
    for stream_id, chunk_id, index, count, chunk_bytes, data, binary in fields:
        packet = pb.DataResponse()
        if binary:
            packet.binary.payload = data
        e = packet.envelope
        e.stream_id, e.chunk_id = stream_id, chunk_id
        e.chunk_index, e.chunk_count, e.chunk_bytes = index, count, chunk_bytes
        try:
            out = r.add(packet)
        except ChunkError:
            pass
        else:
            assert out is None or out is packet or out.HasField("binary")
        assert 0 <= r.buffered_bytes <= 200 and 0 <= r.in_flight <= 4
