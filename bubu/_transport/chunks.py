"""Inbound chunk reassembly with the Go SDK's limits (docs/contract/stream.md#chunking).

Works on any protobuf packet that has ``envelope`` and a ``binary`` frame (``DataResponse``), by
attribute access only, so this module does not import the generated code. The Go SDK never emits
chunks, so there is no outbound chunker: a non-Go or P2P sender is the only source of chunks.

Every error here is a session error (Go: fatal to the session, then reconnect), so
:class:`~bubu.errors.ChunkError` is a retryable :class:`~bubu.errors.StreamSessionError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bubu.errors import ChunkError

__all__ = [
    "DEFAULT_TTL",
    "MAX_ASSEMBLIES",
    "MAX_BUFFERED_BYTES",
    "MAX_CHUNKS_PER_ASSEMBLY",
    "MAX_CHUNK_BYTES",
    "ChunkReassembler",
    "is_chunked",
]

DEFAULT_TTL = 120.0
"""Seconds of inactivity after which a partial assembly is forgotten (Go: 2 min)."""
MAX_ASSEMBLIES = 256
"""Assemblies in flight at once (Go ``defaultChunkMaxInFlightChunks``)."""
MAX_CHUNKS_PER_ASSEMBLY = 256
"""Largest ``chunk_count`` accepted; also the buf.validate ``lte 256`` rule."""
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
"""Bytes buffered across every assembly (Go: 64 MiB)."""
MAX_CHUNK_BYTES = 10 * 1024 * 1024
"""Largest single chunk payload (Go: the 10 MiB message cap)."""


def is_chunked(envelope: Any) -> bool:
    """Return whether a packet's envelope carries any chunk field.

    See docs/contract/stream.md#chunking.
    """
    return bool(
        envelope.chunk_id
        or envelope.chunk_count
        or envelope.chunk_index
        or envelope.chunk_bytes
        or envelope.total_bytes
    )


class _Assembly:
    # A plain slotted class, not a dataclass: building a dataclass costs ~0.6 ms of every
    # streaming engram's start (docs/performance.md, spawn-to-handshake).
    __slots__ = (
        "buffered",
        "expected",
        "last_seen",
        "parts",
        "received",
        "template",
        "total_bytes",
    )

    def __init__(
        self,
        *,
        template: Any,
        expected: int,
        total_bytes: int,
        last_seen: float,
        parts: list[bytes | None],
        received: int = 0,
        buffered: int = 0,
    ) -> None:
        self.template = template
        self.expected = expected
        self.total_bytes = total_bytes
        self.last_seen = last_seen
        self.parts = parts
        self.received = received
        self.buffered = buffered


class ChunkReassembler:
    """Buffer chunks until a packet is whole.

    Args:
        ttl: seconds of inactivity before a partial assembly is evicted.
        max_assemblies: assemblies in flight at once.
        max_buffered_bytes: bytes buffered across every assembly.
        clock: monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_assemblies: int = MAX_ASSEMBLIES,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl if ttl > 0 else DEFAULT_TTL
        self._max_assemblies = max_assemblies if max_assemblies > 0 else MAX_ASSEMBLIES
        self._max_bytes = max_buffered_bytes if max_buffered_bytes > 0 else MAX_BUFFERED_BYTES
        self._clock = clock
        self._assemblies: dict[str, _Assembly] = {}
        self._buffered = 0
        self._last_sweep = clock()

    @property
    def in_flight(self) -> int:
        """Number of partial assemblies held."""
        return len(self._assemblies)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held across every partial assembly."""
        return self._buffered

    def sweep(self, now: float | None = None) -> int:
        """Evict assemblies idle for longer than the TTL.

        Go sweeps on a TTL/2 ticker; the session calls this on every inbound packet (heartbeats
        arrive every 10 s) and :meth:`add` calls it too, which bounds memory the same way.

        Returns:
            How many assemblies were evicted.
        """
        now = self._clock() if now is None else now
        self._last_sweep = now
        stale = [k for k, a in self._assemblies.items() if now - a.last_seen > self._ttl]
        for key in stale:
            self._buffered -= self._assemblies.pop(key).buffered
        return len(stale)

    def add(self, packet: Any) -> Any | None:
        """Feed one packet; return the whole packet when it is complete.

        A packet without chunk fields is returned unchanged. A chunk is buffered and ``None`` is
        returned until its last missing index arrives; a duplicate index is ignored. The result
        is a copy of the *first-arriving* chunk (its metadata, envelope and frame fields) with the
        payload replaced by the concatenation in index order and the chunk fields cleared.

        Raises:
            ChunkError: a rule of docs/contract/stream.md#chunking is broken.
        """
        envelope = packet.envelope
        if not packet.HasField("envelope") or not is_chunked(envelope):
            return packet
        chunk_id = envelope.chunk_id.strip()
        if not chunk_id:
            raise ChunkError("chunked packet missing chunk_id")
        stream_id = envelope.stream_id.strip()
        if not stream_id:
            raise ChunkError("chunked packet missing stream_id")
        count = envelope.chunk_count
        index = envelope.chunk_index
        if count == 0:
            raise ChunkError("chunked packet missing chunk_count")
        if index >= count:
            raise ChunkError(f"chunk_index {index} out of range (count {count})")
        if count > MAX_CHUNKS_PER_ASSEMBLY:
            raise ChunkError(
                f"chunk_count {count} exceeds max chunks per assembly {MAX_CHUNKS_PER_ASSEMBLY}"
            )
        if packet.WhichOneof("frame") != "binary":
            raise ChunkError("chunked packet missing binary frame")
        payload: bytes = packet.binary.payload
        if len(payload) > MAX_CHUNK_BYTES:
            raise ChunkError(
                f"chunk payload {len(payload)} exceeds max chunk size {MAX_CHUNK_BYTES}"
            )
        if envelope.chunk_bytes and envelope.chunk_bytes != len(payload):
            raise ChunkError(
                f"chunk_bytes {envelope.chunk_bytes} does not match payload size {len(payload)}"
            )
        partition = envelope.partition
        key = f"{stream_id}|{partition}|{chunk_id}" if partition else f"{stream_id}|{chunk_id}"
        now = self._clock()
        self.sweep(now)
        assembly = self._assemblies.get(key)
        if assembly is None:
            if len(self._assemblies) >= self._max_assemblies:
                raise ChunkError("too many chunk assemblies in flight")
            self._check_room(len(payload))
            template = type(packet)()
            template.CopyFrom(packet)
            assembly = _Assembly(
                template=template,
                expected=count,
                total_bytes=envelope.total_bytes,
                last_seen=now,
                parts=[None] * count,
            )
            self._assemblies[key] = assembly
        if assembly.expected != count:
            raise ChunkError(f"chunk_count mismatch for {chunk_id}: {count} != {assembly.expected}")
        assembly.last_seen = now
        if assembly.parts[index] is not None:
            return None
        self._check_room(len(payload))
        assembly.parts[index] = bytes(payload)
        assembly.received += 1
        assembly.buffered += len(payload)
        self._buffered += len(payload)
        if assembly.received < assembly.expected:
            return None
        del self._assemblies[key]
        self._buffered -= assembly.buffered
        return _assemble(assembly, chunk_id)

    def _check_room(self, size: int) -> None:
        if self._buffered + size > self._max_bytes:
            raise ChunkError(
                f"chunk reassembly buffer exceeded ({self._buffered + size} > {self._max_bytes})"
            )


def _assemble(assembly: _Assembly, chunk_id: str) -> Any:
    parts = [p for p in assembly.parts if p is not None]
    if len(parts) != assembly.expected:  # pragma: no cover - received == expected guarantees it
        raise ChunkError(f"chunk assembly {chunk_id} incomplete")
    whole = b"".join(parts)
    if assembly.total_bytes and len(whole) != assembly.total_bytes:
        raise ChunkError(
            f"total_bytes {assembly.total_bytes} does not match assembled payload {len(whole)}"
        )
    result = assembly.template
    result.binary.payload = whole
    env = result.envelope
    env.chunk_id = ""
    env.chunk_index = 0
    env.chunk_count = 0
    env.chunk_bytes = 0
    env.total_bytes = 0
    return result
