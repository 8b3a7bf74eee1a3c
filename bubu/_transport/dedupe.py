"""Inbound packet dedupe across sessions (docs/contract/stream.md#dedupe).

Pure data structure: no I/O, no protobuf. The deduper lives for the whole process; each new
session calls :meth:`PacketDeduper.start_session`, which clears the *pending* keys (so a packet
that was delivered but never ``done()`` is redelivered on replay) and keeps the *completed* keys
(so a packet that was ``done()`` is suppressed and only its receipt is re-sent).
"""

from __future__ import annotations

import enum
from collections import OrderedDict

from bubu.errors import DedupeOverflowError

__all__ = ["DEFAULT_MAX_ENTRIES", "Outcome", "PacketDeduper", "dedupe_key"]

#: Go ``newPacketDeduper`` default (docs/contract/stream.md#dedupe): the pending cap and the
#: completed FIFO size.
DEFAULT_MAX_ENTRIES = 4096

_MESSAGE_ID_KEY = "bubu.envelope.message_id"


class Outcome(enum.Enum):
    """What :meth:`PacketDeduper.begin` decided for a packet."""

    NEW = "new"
    """First sight in this session: deliver it."""
    PENDING_DUPLICATE = "pending_duplicate"
    """Already delivered in this session and not done yet: drop silently."""
    COMPLETED_DUPLICATE = "completed_duplicate"
    """Already done (in any session): drop, and re-send the receipt if sequenced."""


def dedupe_key(stream_id: str, partition: str, sequence: int, message_id: str | None) -> str | None:
    """Return the dedupe key of a packet, or ``None`` when it cannot be deduped.

    Go keys a packet by ``env|<stream_id>|<partition>|<sequence>`` when the envelope carries a
    stream id and a positive sequence, else by ``msg|<bubu.envelope.message_id>`` from the outer
    metadata, else not at all (docs/contract/stream.md#dedupe).

    Args:
        stream_id: ``envelope.stream_id``.
        partition: ``envelope.partition`` (may be empty).
        sequence: ``envelope.sequence``.
        message_id: the outer metadata's ``bubu.envelope.message_id``, if any.
    """
    if stream_id and sequence > 0:
        return f"env|{stream_id}|{partition}|{sequence}"
    if message_id:
        return f"msg|{message_id}"
    return None


class PacketDeduper:
    """Pending and completed dedupe keys, shared by every session of one process.

    Args:
        max_entries: cap on pending keys (overflow is a session error) and size of the completed
            FIFO (the oldest completed key is forgotten first).
    """

    __slots__ = ("_completed", "_generation", "_max", "_pending")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries <= 0:
            max_entries = DEFAULT_MAX_ENTRIES
        self._max = max_entries
        self._generation = 0
        self._pending: dict[str, int] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()

    @property
    def generation(self) -> int:
        """The current session generation (0 before the first session)."""
        return self._generation

    @property
    def pending_count(self) -> int:
        """How many keys are delivered and not done in the current session."""
        return len(self._pending)

    def start_session(self) -> int:
        """Begin a new session: bump the generation and forget pending keys.

        Returns:
            The new generation.
        """
        self._generation += 1
        self._pending.clear()
        return self._generation

    def begin(self, key: str) -> Outcome:
        """Classify a packet and, when it is new, mark it pending in this session.

        Raises:
            DedupeOverflowError: the pending set is full (Go: "packet dedupe pending capacity
                exceeded").
        """
        if key in self._completed:
            return Outcome.COMPLETED_DUPLICATE
        if key in self._pending:
            return Outcome.PENDING_DUPLICATE
        if len(self._pending) >= self._max:
            raise DedupeOverflowError(
                f"packet dedupe pending capacity exceeded ({self._max} pending)"
            )
        self._pending[key] = self._generation
        return Outcome.NEW

    def complete(self, key: str) -> None:
        """Mark a key done: later copies (in any session) are suppressed."""
        self._pending.pop(key, None)
        completed = self._completed
        if key in completed:
            completed.move_to_end(key)
            return
        completed[key] = None
        if len(completed) > self._max:
            completed.popitem(last=False)

    def release(self, key: str, generation: int) -> None:
        """Forget a pending key so that a replay is delivered again.

        A release from an older session is ignored: that session's pending set is already gone
        and the key may be pending again in the current one (Go
        ``ReleaseStaleGenerationDoesNotClearCurrentPending``).
        """
        if self._pending.get(key) == generation:
            del self._pending[key]

    def is_completed(self, key: str) -> bool:
        """Return whether ``key`` was marked done."""
        return key in self._completed
