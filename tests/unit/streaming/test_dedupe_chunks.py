"""The deduper and chunk reassembly.

See docs/contract/stream.md#dedupe and docs/contract/stream.md#chunking.
"""

from __future__ import annotations

import pytest

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._transport.chunks import ChunkReassembler
from bubu._transport.dedupe import Outcome, PacketDeduper, dedupe_key
from bubu.errors import ChunkError, DedupeOverflowError


def test_keys_prefer_stream_sequence_then_message_id() -> None:
    assert dedupe_key("s", "p0", 7, "m") == "env|s|p0|7"
    assert dedupe_key("s", "", 0, "m") == "msg|m"
    assert dedupe_key("", "", 3, "m") == "msg|m"
    assert dedupe_key("", "", 0, None) is None


def test_pending_and_completed_duplicates() -> None:
    d = PacketDeduper()
    d.start_session()
    assert d.begin("k") is Outcome.NEW
    assert d.begin("k") is Outcome.PENDING_DUPLICATE
    assert d.pending_count == 1  # repeated begin keeps the pending set bounded
    d.complete("k")
    assert d.begin("k") is Outcome.COMPLETED_DUPLICATE


def test_overflow_when_pending_capacity_exceeded() -> None:
    d = PacketDeduper(max_entries=2)
    d.start_session()
    d.begin("a")
    d.begin("b")
    with pytest.raises(DedupeOverflowError, match="pending capacity exceeded") as info:
        d.begin("c")
    assert info.value.retryable


def test_new_session_clears_pending_and_keeps_completed() -> None:
    d = PacketDeduper()
    d.start_session()
    d.begin("done")
    d.begin("undone")
    d.complete("done")
    d.start_session()
    assert d.begin("undone") is Outcome.NEW  # redelivered after a reconnect
    assert d.begin("done") is Outcome.COMPLETED_DUPLICATE  # suppressed


def test_release_from_a_stale_generation_is_ignored() -> None:
    d = PacketDeduper()
    old = d.start_session()
    d.begin("k")
    d.start_session()
    d.begin("k")
    d.release("k", old)
    assert d.begin("k") is Outcome.PENDING_DUPLICATE
    d.release("k", d.generation)
    assert d.begin("k") is Outcome.NEW


def test_completed_set_is_a_fifo_of_max_entries() -> None:
    d = PacketDeduper(max_entries=4096)
    d.start_session()
    for i in range(4097):
        d.begin(str(i))
        d.complete(str(i))
    assert not d.is_completed("0") and d.is_completed("4096")


def chunk(
    data: bytes,
    index: int,
    count: int,
    *,
    chunk_id: str = "c",
    stream_id: str = "s",
    partition: str = "",
    total: int = 0,
    chunk_bytes: int | None = None,
) -> pb.DataResponse:
    p = pb.DataResponse(metadata={"i": str(index)})
    p.binary.payload = data
    p.binary.mime_type = "text/plain"
    e = p.envelope
    e.stream_id, e.partition, e.chunk_id = stream_id, partition, chunk_id
    e.chunk_index, e.chunk_count, e.total_bytes = index, count, total
    e.sequence = 4
    e.chunk_bytes = len(data) if chunk_bytes is None else chunk_bytes
    return p


def test_two_chunks_make_one_packet_with_the_first_chunk_as_template() -> None:
    r = ChunkReassembler()
    assert r.add(chunk(b"world", 1, 2, partition="p")) is None
    whole = r.add(chunk(b"hello", 0, 2, partition="p", total=10))
    assert whole.binary.payload == b"helloworld"
    assert whole.metadata["i"] == "1" and whole.binary.mime_type == "text/plain"
    e = whole.envelope
    assert (e.stream_id, e.sequence, e.partition) == ("s", 4, "p")
    assert (e.chunk_id, e.chunk_index, e.chunk_count, e.chunk_bytes, e.total_bytes) == (
        "",
        0,
        0,
        0,
        0,
    )
    assert r.in_flight == 0 and r.buffered_bytes == 0


def test_duplicate_chunk_is_idempotent_and_plain_packets_pass_through() -> None:
    r = ChunkReassembler()
    assert r.add(chunk(b"a", 0, 2)) is None
    assert r.add(chunk(b"a", 0, 2)) is None
    assert r.add(chunk(b"b", 1, 2)).binary.payload == b"ab"
    plain = pb.DataResponse()
    plain.binary.payload = b"x"
    assert r.add(plain) is plain


@pytest.mark.parametrize(
    ("packet", "match"),
    [
        (chunk(b"a", 0, 257), "exceeds max chunks"),
        (chunk(b"a", 2, 2), "out of range"),
        (chunk(b"a", 0, 0, chunk_id="c"), "missing chunk_count"),
        (chunk(b"a", 0, 2, chunk_id=""), "missing chunk_id"),
        (chunk(b"a", 0, 2, stream_id=""), "missing stream_id"),
        (chunk(b"abc", 0, 2, chunk_bytes=2), "does not match payload size"),
    ],
)
def test_invalid_chunks(packet: pb.DataResponse, match: str) -> None:
    with pytest.raises(ChunkError, match=match) as info:
        ChunkReassembler().add(packet)
    assert info.value.retryable


def test_missing_binary_frame() -> None:
    p = pb.DataResponse()
    p.audio.pcm = b"\x00"
    p.envelope.stream_id, p.envelope.chunk_id, p.envelope.chunk_count = "s", "c", 2
    with pytest.raises(ChunkError, match="missing binary frame"):
        ChunkReassembler().add(p)


def test_chunk_count_changing_mid_message() -> None:
    r = ChunkReassembler()
    r.add(chunk(b"a", 0, 2))
    with pytest.raises(ChunkError, match="chunk_count mismatch"):
        r.add(chunk(b"b", 1, 3))


def test_total_bytes_mismatch() -> None:
    r = ChunkReassembler()
    r.add(chunk(b"a", 0, 2, total=5))
    with pytest.raises(ChunkError, match="total_bytes"):
        r.add(chunk(b"b", 1, 2, total=5))


def test_assembly_and_byte_limits() -> None:
    r = ChunkReassembler(max_assemblies=1)
    r.add(chunk(b"a", 0, 2, chunk_id="one"))
    with pytest.raises(ChunkError, match="too many chunk assemblies"):
        r.add(chunk(b"a", 0, 2, chunk_id="two"))
    small = ChunkReassembler(max_buffered_bytes=4)
    small.add(chunk(b"abc", 0, 3))
    with pytest.raises(ChunkError, match="buffer exceeded"):
        small.add(chunk(b"de", 1, 3))


def test_stale_assemblies_are_evicted_after_the_ttl() -> None:
    now = [0.0]
    r = ChunkReassembler(ttl=120.0, clock=lambda: now[0])
    r.add(chunk(b"a", 0, 2))
    now[0] = 60.0
    assert r.sweep() == 0
    now[0] = 181.0
    assert r.sweep() == 1 and r.in_flight == 0 and r.buffered_bytes == 0
    # A late chunk starts over instead of completing a forgotten assembly.
    assert r.add(chunk(b"b", 1, 2)) is None
