"""Streaming message types: what engrams receive and publish.

See docs/contract/stream.md#stream-message.

Pure data, no protobuf: ``bubu._transport.codec`` is the one place these types meet the
generated ``transport.v1`` messages. The shapes mirror the Go SDK's ``engram.StreamMessage`` and
media frames field for field, with Python names:

- ``Kind`` -> ``kind: str`` (``[A-Za-z0-9._-]``; ``data``, ``error``, ``hook`` or your own)
- ``MessageID`` -> ``message_id: str`` (the dedupe key downstream)
- ``Timestamp`` -> ``timestamp: datetime | None`` (wall clock, UTC, millisecond precision)
- ``Metadata`` -> ``metadata: dict[str, str]`` (packet metadata; trace context lives here)
- ``Payload`` -> ``payload: bytes`` (JSON bytes; an object when structured)
- ``Inputs`` -> ``inputs: bytes`` (JSON object bytes)
- ``Transports`` -> ``transports: tuple[TransportDescriptor, ...]``
- ``Envelope`` -> ``envelope: StreamEnvelope | None`` (stream id, sequence, partition, chunks)
- ``Audio`` / ``Video`` / ``Binary`` -> ``audio`` / ``video`` / ``binary`` (at most one)

Media ``timestamp_ms`` is a media-timeline offset in milliseconds (Go carries a Duration that the
wire truncates to ms), separate from the message's wall-clock ``timestamp``.

All types are ``msgspec.Struct`` (frozen, ``gc=False``): construction costs well under a
microsecond, which matters at ~10k messages/s. Use :meth:`StreamMessage.replace` to derive a
changed copy.
"""

from __future__ import annotations

import datetime as _dt
import functools
import string
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar, overload

import msgspec

from bubu.errors import ProtocolViolationError

__all__ = [
    "ENVELOPE_MIME_TYPE",
    "JSON_MIME_TYPE",
    "KIND_DATA",
    "KIND_ERROR",
    "KIND_HEARTBEAT",
    "KIND_NOOP",
    "OCTET_STREAM_MIME_TYPE",
    "AudioFrame",
    "BinaryFrame",
    "Drop",
    "InboundMessage",
    "StreamEnvelope",
    "StreamMessage",
    "TransportConfig",
    "TransportDescriptor",
    "VideoFrame",
    "is_envelope_mime",
    "parse_media_type",
]

T = TypeVar("T")

# Kinds the Go SDK defines (engram/stream_kinds.go); "hook" comes from hub lifecycle packets.
KIND_DATA: Final = "data"
KIND_HEARTBEAT: Final = "heartbeat"
KIND_NOOP: Final = "noop"
KIND_ERROR: Final = "error"

JSON_MIME_TYPE: Final = "application/json"
OCTET_STREAM_MIME_TYPE: Final = "application/octet-stream"
# The JSON packet envelope carried in BinaryFrame.payload
# (docs/contract/stream.md#non-protobuf-contracts).
ENVELOPE_MIME_TYPE: Final = "application/vnd.bubu.packet+json"

# The characters a kind may hold ([A-Za-z0-9._-]+): a str.strip check, no regex to compile at
# start-up (docs/performance.md, spawn-to-handshake).
_KIND_CHARS: Final = string.ascii_letters + string.digits + "._-"
_VALID_KINDS: dict[str, str] = {}  # valid kind -> its lower-case form
# Go mime tspecials plus control characters and space (mime.isTokenChar).
_TSPECIALS: Final = frozenset('()<>@,;:\\"/[]?=')

_json_encoder = msgspec.json.Encoder(order="sorted")
_json_decoder = msgspec.json.Decoder()


class AudioFrame(msgspec.Struct, frozen=True, gc=False):
    """One chunk of audio samples.

    Attributes:
        pcm: The audio bytes (PCM samples, or codec frames when passed through).
        sample_rate_hz: Samples per second; the wire accepts 8000-192000.
        channels: Interleaved channels; the wire accepts 1-8.
        codec: Encoding name, for example ``"pcm16"`` or ``"opus"``.
        timestamp_ms: Media-timeline offset in milliseconds (not wall clock).
    """

    pcm: bytes
    sample_rate_hz: int
    channels: int = 1
    codec: str = ""
    timestamp_ms: int = 0


class VideoFrame(msgspec.Struct, frozen=True, gc=False):
    """One encoded (``codec`` set) or raw (``raw=True`` with dimensions) video frame."""

    payload: bytes
    codec: str = ""
    width: int = 0
    height: int = 0
    timestamp_ms: int = 0
    raw: bool = False


class BinaryFrame(msgspec.Struct, frozen=True, gc=False):
    """Opaque bytes with a MIME type (empty means ``application/octet-stream`` on the wire)."""

    payload: bytes
    mime_type: str = ""
    timestamp_ms: int = 0


class TransportConfig(msgspec.Struct, frozen=True, gc=False):
    """Typed, bounded descriptor metadata (never endpoints or credentials)."""

    transport_ref: str = ""
    mode_reason: str = ""


class TransportDescriptor(msgspec.Struct, frozen=True, gc=False):
    """A transport lane known to the packet (``TransportDescriptor`` in transport.v1)."""

    name: str
    kind: str = ""
    mode: str = ""
    typed_config: TransportConfig | None = None


class StreamEnvelope(msgspec.Struct, frozen=True, gc=False):
    """Ordering, partitioning and chunking information of a packet (``StreamEnvelope``).

    ``stream_id`` + ``partition`` + ``sequence`` identify a sequenced packet: the SDK sends a
    delivery receipt for it when the engram calls :meth:`InboundMessage.done`.
    """

    stream_id: str = ""
    sequence: int = 0
    partition: str = ""
    chunk_id: str = ""
    chunk_index: int = 0
    chunk_count: int = 0
    chunk_bytes: int = 0
    total_bytes: int = 0


def _now() -> _dt.datetime:
    now = _dt.datetime.now(_dt.UTC)
    # The wire carries milliseconds (bubu.envelope.timestamp_ms); keep equality across a round trip.
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class StreamMessage(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One streaming message (Go ``engram.StreamMessage``).

    See docs/contract/stream.md#stream-message.

    Build JSON messages with :meth:`json`, media with :meth:`binary`, :meth:`audio` and
    :meth:`video`, and stream-level errors with :meth:`error`. The plain constructor takes every
    field as a keyword.

    Attributes:
        payload: JSON bytes. A JSON *object* when the message is structured (it then also becomes
            the packet's ``payload`` Struct the hub evaluates); raw bytes for binary input.
        metadata: Packet metadata (string to string). W3C ``traceparent``/``tracestate``/
            ``baggage`` travel here.
        inputs: Evaluated step inputs as JSON object bytes.
        transports: Transport descriptors attached to the packet.
        envelope: Stream id, sequence, partition and chunk fields, if any.
        kind: Semantic kind (``data``, ``error``, ``hook``, or your own).
        message_id: Sender-chosen id; downstream dedupes on it.
        timestamp: Wall-clock time (UTC, millisecond precision), or ``None``.
        audio: Audio frame, or ``None``.
        video: Video frame, or ``None``.
        binary: Binary frame, or ``None``. For JSON messages it mirrors ``payload`` with MIME
            ``application/json`` (docs/contract/stream.md#json-mirror).
    """

    payload: bytes = b""
    metadata: dict[str, str] = {}
    inputs: bytes = b""
    transports: tuple[TransportDescriptor, ...] = ()
    envelope: StreamEnvelope | None = None
    kind: str = ""
    message_id: str = ""
    timestamp: _dt.datetime | None = None
    audio: AudioFrame | None = None
    video: VideoFrame | None = None
    binary: BinaryFrame | None = None

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def json(
        cls,
        data: Any,
        *,
        kind: str = "",
        message_id: str = "",
        metadata: Mapping[str, str] | None = None,
        inputs: Any = None,
        timestamp: _dt.datetime | None = None,
        transports: tuple[TransportDescriptor, ...] = (),
        envelope: StreamEnvelope | None = None,
    ) -> StreamMessage:
        """Build a structured JSON message.

        ``data`` (a dict, a msgspec Struct, or anything msgspec encodes to a JSON object) is
        encoded as canonical JSON (sorted keys, compact) into ``payload`` and mirrored into a
        ``BinaryFrame`` with MIME ``application/json``: the Go SDK's JSON output shape, which puts
        both the envelope frame and the ``payload`` Struct on the wire
        (docs/contract/stream.md#json-mirror).

        Args:
            data: The JSON object to send.
            kind: Semantic kind; surrounding whitespace is trimmed (Go's builder does the same).
            message_id: Sender-chosen message id.
            metadata: Packet metadata.
            inputs: Optional inputs object (encoded like ``data``), or JSON bytes.
            timestamp: Wall-clock timestamp; ``None`` leaves it unset.
            transports: Transport descriptors.
            envelope: Stream envelope.

        Raises:
            ProtocolViolationError: ``data`` does not encode to a JSON object.
        """
        payload = _encode_json_object(data, "payload")
        return cls(
            payload=payload,
            binary=BinaryFrame(payload=payload, mime_type=JSON_MIME_TYPE),
            kind=kind.strip(),
            message_id=message_id,
            metadata=dict(metadata) if metadata else {},
            inputs=b"" if inputs is None else _encode_json_object(inputs, "inputs"),
            timestamp=timestamp,
            transports=tuple(transports),
            envelope=envelope,
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        content_type: str = OCTET_STREAM_MIME_TYPE,
        *,
        timestamp_ms: int = 0,
        **fields: Any,
    ) -> StreamMessage:
        """Build a raw binary message: ``binary=BinaryFrame(data, content_type)``, no payload.

        On the wire this is a raw frame without a Struct (docs/contract/stream.md#encoding,
        case 3): the hub routes it as media and records no step outputs.
        """
        return cls(
            binary=BinaryFrame(
                payload=bytes(data), mime_type=content_type, timestamp_ms=timestamp_ms
            ),
            **fields,
        )

    @classmethod
    def from_audio(
        cls,
        pcm: bytes,
        sample_rate_hz: int,
        channels: int = 1,
        codec: str = "pcm16",
        *,
        timestamp_ms: int = 0,
        **fields: Any,
    ) -> StreamMessage:
        """Build an audio message (``AudioFrame``); ``fields`` are other StreamMessage fields."""
        frame = AudioFrame(
            pcm=bytes(pcm),
            sample_rate_hz=sample_rate_hz,
            channels=channels,
            codec=codec,
            timestamp_ms=timestamp_ms,
        )
        return cls(audio=frame, **fields)

    @classmethod
    def from_video(
        cls,
        payload: bytes,
        codec: str = "",
        *,
        width: int = 0,
        height: int = 0,
        raw: bool = False,
        timestamp_ms: int = 0,
        **fields: Any,
    ) -> StreamMessage:
        """Build a video message (``VideoFrame``); ``fields`` are other StreamMessage fields."""
        frame = VideoFrame(
            payload=bytes(payload),
            codec=codec,
            width=width,
            height=height,
            raw=raw,
            timestamp_ms=timestamp_ms,
        )
        return cls(video=frame, **fields)

    @classmethod
    def error(
        cls,
        message: str,
        *,
        type: str = "execution_error",
        retryable: bool | None = None,
        exit_code: int | None = None,
        exit_class: str | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> StreamMessage:
        """Build a stream-level error message (Go ``NewStreamErrorMessage``).

        See docs/contract/stream.md#errors.

        ``kind="error"`` with a StructuredError v1 JSON payload and no media frame. It travels as
        an ordinary message and triggers no retries.
        """
        doc: dict[str, Any] = {"version": "v1", "type": type, "message": message}
        if retryable is not None:
            doc["retryable"] = retryable
        if exit_code is not None:
            doc["exitCode"] = exit_code
        if exit_class is not None:
            doc["exitClass"] = exit_class
        if code is not None:
            doc["code"] = code
        if details:
            doc["details"] = dict(details)
        return cls(kind=KIND_ERROR, payload=_json_encoder.encode(doc), **fields)

    @classmethod
    def now(cls, **fields: Any) -> StreamMessage:
        """Build a message whose ``timestamp`` is the current time (ms precision, UTC)."""
        return cls(timestamp=_now(), **fields)

    # -- accessors ----------------------------------------------------------------------------

    @overload
    def json_data(self) -> Any: ...

    @overload
    def json_data(self, type: type[T]) -> T: ...

    def json_data(self, type: Any = None) -> Any:
        """Decode ``payload`` as JSON (into ``type`` when given, e.g. a msgspec Struct).

        Returns ``None`` for an empty payload when no ``type`` is given.

        Raises:
            ProtocolViolationError: the payload is not valid JSON (or does not match ``type``).
        """
        if not self.payload and type is None:
            return None
        try:
            if type is None:
                return _json_decoder.decode(self.payload)
            return msgspec.json.decode(self.payload, type=type)
        except msgspec.DecodeError as exc:
            raise ProtocolViolationError(f"stream message payload: {exc}") from None

    def inputs_data(self) -> Any:
        """Decode ``inputs`` as JSON; ``None`` when empty."""
        if not self.inputs:
            return None
        try:
            return _json_decoder.decode(self.inputs)
        except msgspec.DecodeError as exc:
            raise ProtocolViolationError(f"stream message inputs: {exc}") from None

    @property
    def is_error(self) -> bool:
        """Whether this is a stream-level error message (``kind`` ``error``, any case)."""
        return self.kind.lower() == KIND_ERROR

    def error_info(self) -> dict[str, Any] | None:
        """The StructuredError document of an error message, or ``None`` for other kinds.

        Raises:
            ProtocolViolationError: the kind is ``error`` but the payload is not a JSON object.
        """
        if not self.is_error:
            return None
        doc = self.json_data()
        if not isinstance(doc, dict):
            raise ProtocolViolationError("stream error message payload must be a JSON object")
        return doc

    def replace(self, **changes: Any) -> StreamMessage:
        """Return a copy with ``changes`` applied (messages are immutable)."""
        return msgspec.structs.replace(self, **changes)

    @property
    def is_empty(self) -> bool:
        """Whether the message carries nothing at all (Go drops these on receive)."""
        return not (
            self.payload
            or self.inputs
            or self.transports
            or self.audio
            or self.video
            or self.binary
            or self.kind
            or self.message_id
            or self.metadata
            or self.envelope
            or self.timestamp
        )

    # -- validation ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Apply Go ``StreamMessage.Validate``, outbound and inbound alike.

        See docs/contract/stream.md#message-validation.

        Raises:
            ProtocolViolationError: naming the offending field.
        """
        _validate(self)


def _encode_json_object(value: Any, what: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        try:
            raw = _json_encoder.encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ProtocolViolationError(
                f"stream message {what} is not JSON-encodable: {exc}"
            ) from None
    # Only a JSON object can become a google.protobuf.Struct (Go rejects anything else, 4.3).
    if raw.lstrip()[:1] != b"{":
        raise ProtocolViolationError(f"stream message {what} must be a JSON object")
    return raw


# -- MIME handling (Go mime.ParseMediaType semantics, as far as validation needs them) -----------


def _consume_token(s: str) -> tuple[str, str]:
    i = 0
    while i < len(s):
        c = s[i]
        if ord(c) <= 0x20 or ord(c) >= 0x7F or c in _TSPECIALS:
            break
        i += 1
    return s[:i], s[i:]


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """Parse a MIME type like Go's ``mime.ParseMediaType``: lower-cased type and parameters.

    Raises:
        ValueError: the value is not a media type.
    """
    base, _, rest = value.partition(";")
    media = base.strip().lower()
    typ, tail = _consume_token(media)
    if not typ:
        raise ValueError("no media type")
    if tail:
        if not tail.startswith("/"):
            raise ValueError("expected slash after first token")
        sub, tail = _consume_token(tail[1:])
        if not sub:
            raise ValueError("expected token after slash")
        if tail:
            raise ValueError("unexpected content after media subtype")
    params: dict[str, str] = {}
    if rest:
        for raw_part in rest.split(";"):
            part = raw_part.strip()
            if not part:
                continue
            key, eq, val = part.partition("=")
            key = key.strip().lower()
            val = val.strip()
            if not eq or not key or _consume_token(key)[1]:
                raise ValueError("invalid media parameter")
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            elif not val or _consume_token(val)[1]:
                raise ValueError("invalid media parameter")
            if key in params:
                raise ValueError("duplicate parameter name")
            params[key] = val
    return media, params


@functools.lru_cache(maxsize=256)
def _media_type_problem(mime_type: str) -> tuple[str | None, bool]:
    # Streams reuse a handful of MIME types; parse each once. Also whether it is the envelope's.
    try:
        parse_media_type(mime_type)
    except ValueError as exc:
        return str(exc), False
    return None, is_envelope_mime(mime_type)


@functools.lru_cache(maxsize=256)
def is_envelope_mime(mime_type: str) -> bool:
    """Whether ``mime_type`` is the packet-envelope MIME (case-insensitive, parameters allowed)."""
    if not mime_type:
        return False
    base = mime_type.split(";", 1)[0].strip().lower()
    return base == ENVELOPE_MIME_TYPE


def _is_json_mime(mime_type: str) -> bool:
    return mime_type.split(";", 1)[0].strip().lower() == JSON_MIME_TYPE


def _bad(field: str, problem: str) -> ProtocolViolationError:
    return ProtocolViolationError(f"stream message {field}: {problem}")


def _validate(m: StreamMessage) -> None:
    # Section 4.2, in Go's order so the first reported problem matches. A kind seen valid before
    # is known to have no surrounding whitespace and only _KIND_CHARS: its checks are skipped
    # and its lower-case form is cached with it.
    kind = m.kind
    lowered = _VALID_KINDS.get(kind) if kind else ""
    if lowered is None and kind != kind.strip():
        raise _bad("kind", "must not have surrounding whitespace")
    message_id = m.message_id
    if message_id and message_id != message_id.strip():
        raise _bad("message_id", "must not have surrounding whitespace")
    for key in m.metadata:
        if not key:
            raise _bad("metadata", "keys must be non-empty")
        if key != key.strip():
            raise _bad(f"metadata[{key!r}]", "key must not have surrounding whitespace")
    if lowered is None:
        if not kind or kind.strip(_KIND_CHARS):
            raise _bad("kind", f"{kind!r} may only contain letters, digits, '.', '_' and '-'")
        # Streams reuse a handful of kinds: check each once (bounded, kinds come from the wire).
        if len(_VALID_KINDS) >= 256:
            _VALID_KINDS.clear()
        lowered = _VALID_KINDS[kind] = kind.lower()

    audio, video, b = m.audio, m.video, m.binary
    frames = (audio is not None) + (video is not None) + (b is not None)
    if lowered == KIND_ERROR:
        if not m.payload:
            raise _bad("payload", "an error message requires a payload")
        if frames:
            raise _bad("kind", "an error message must not carry audio, video or binary frames")
    elif lowered in (KIND_HEARTBEAT, KIND_NOOP) and (
        m.payload
        or m.inputs
        or m.transports
        or m.metadata
        or frames
        or m.envelope is not None
        or m.message_id
        or m.timestamp is not None
    ):
        raise _bad("kind", f"a {lowered} message must not carry any other field")
    if frames > 1:
        raise _bad("frames", "at most one of audio, video and binary may be set")

    if audio is not None:
        a = audio
        if a.codec != a.codec.strip():
            raise _bad("audio.codec", "must not have surrounding whitespace")
        if not a.pcm:
            raise _bad("audio.pcm", "must not be empty")
        if a.sample_rate_hz <= 0:
            raise _bad("audio.sample_rate_hz", "must be positive")
        if a.channels <= 0:
            raise _bad("audio.channels", "must be positive")
        if a.timestamp_ms < 0:
            raise _bad("audio.timestamp_ms", "must not be negative")
    if video is not None:
        v = video
        if v.codec != v.codec.strip():
            raise _bad("video.codec", "must not have surrounding whitespace")
        if not v.payload:
            raise _bad("video.payload", "must not be empty")
        if not v.raw and not v.codec:
            raise _bad("video.codec", "encoded video requires a codec")
        if v.raw and (v.width <= 0 or v.height <= 0):
            raise _bad("video", "raw video requires width and height")
        if v.timestamp_ms < 0:
            raise _bad("video.timestamp_ms", "must not be negative")
    if b is not None:
        if not b.payload:
            raise _bad("binary.payload", "must not be empty")
        if b.timestamp_ms < 0:
            raise _bad("binary.timestamp_ms", "must not be negative")
        if b.mime_type != b.mime_type.strip():
            raise _bad("binary.mime_type", "must not have surrounding whitespace")
        if b.mime_type:
            problem, envelope = _media_type_problem(b.mime_type)
            if problem is not None:
                raise _bad("binary.mime_type", f"{b.mime_type!r} is not a media type ({problem})")
            if envelope:
                structured = (
                    kind
                    or m.message_id
                    or m.timestamp is not None
                    or m.metadata
                    or m.payload
                    or m.inputs
                    or m.transports
                    or m.envelope is not None
                )
                if not structured:
                    raise _bad(
                        "binary.mime_type",
                        f"{ENVELOPE_MIME_TYPE} requires at least one structured field",
                    )
                if b.payload != m.payload:
                    raise _bad("binary.payload", f"{ENVELOPE_MIME_TYPE} must mirror payload")
        if m.payload and b.payload != m.payload:
            raise _bad("binary.payload", "must equal payload when both are set")
        if (m.inputs or m.transports or m.envelope is not None) and b.payload != m.payload:
            raise _bad(
                "binary.payload",
                "must mirror payload when inputs, transports or envelope are set",
            )
    if not (frames or m.payload or m.inputs or m.transports or kind):
        raise _bad("payload", "stream message missing audio, video, or binary payload")


# -- inbound ----------------------------------------------------------------------------------


class Drop(Exception):
    """Raise inside ``async with inbound:`` (or call ``inbound.drop()``) to skip a message.

    The message is settled (``done()`` is called, so its receipt goes out and a replay is
    suppressed) and the exception is swallowed by the ``async with`` block.
    """


class InboundMessage:
    """A received :class:`StreamMessage` plus its delivery receipt.

    See docs/contract/stream.md#inbound.

    Attribute access forwards to the message (``inbound.payload``, ``inbound.json_data()``).
    Call :meth:`done` once the message is fully processed: for a sequenced packet that sends the
    ``downstream.delivered`` receipt and marks it completed for dedupe; until then a replay after
    a reconnect is redelivered. ``done()`` is idempotent and never blocks.

    ``async with inbound:`` calls ``done()`` when the block ends normally or by :class:`Drop`,
    and not when the block raises anything else (the packet stays pending, so it is redelivered
    after a reconnect - at-least-once).
    """

    __slots__ = ("_done", "_settle", "message")

    def __init__(self, message: StreamMessage, settle: Callable[[], None] | None = None) -> None:
        """Wrap ``message``; ``settle`` is the runtime's receipt callback (called at most once)."""
        self.message = message
        self._settle = settle
        self._done = False

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the wrapper: forward to the message.
        return getattr(self.message, name)

    # The message fields, forwarded explicitly: engrams read them once or more per message,
    # and a property costs ~0.15 us where the failed lookup + __getattr__ costs ~1.1 us.

    @property
    def payload(self) -> bytes:
        """The message's ``payload``."""
        return self.message.payload

    @property
    def metadata(self) -> dict[str, str]:
        """The message's ``metadata``."""
        return self.message.metadata

    @property
    def inputs(self) -> bytes:
        """The message's ``inputs``."""
        return self.message.inputs

    @property
    def transports(self) -> tuple[TransportDescriptor, ...]:
        """The message's ``transports``."""
        return self.message.transports

    @property
    def envelope(self) -> StreamEnvelope | None:
        """The message's ``envelope``."""
        return self.message.envelope

    @property
    def kind(self) -> str:
        """The message's ``kind``."""
        return self.message.kind

    @property
    def message_id(self) -> str:
        """The message's ``message_id``."""
        return self.message.message_id

    @property
    def timestamp(self) -> _dt.datetime | None:
        """The message's ``timestamp``."""
        return self.message.timestamp

    @property
    def audio(self) -> AudioFrame | None:
        """The message's ``audio`` frame."""
        return self.message.audio

    @property
    def video(self) -> VideoFrame | None:
        """The message's ``video`` frame."""
        return self.message.video

    @property
    def binary(self) -> BinaryFrame | None:
        """The message's ``binary`` frame."""
        return self.message.binary

    def __repr__(self) -> str:
        return f"InboundMessage({self.message!r}, done={self._done})"

    @property
    def is_done(self) -> bool:
        """Whether :meth:`done` has been called."""
        return self._done

    def done(self) -> None:
        """Settle the message: at most once, never blocks (Go ``Done()`` is a ``sync.Once``)."""
        if self._done:
            return
        self._done = True
        settle, self._settle = self._settle, None
        if settle is not None:
            settle()

    def drop(self) -> None:
        """Skip this message deliberately: raises :class:`Drop` (settled by ``async with``)."""
        raise Drop()

    async def __aenter__(self) -> InboundMessage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None:
            self.done()
            return False
        if issubclass(exc_type, Drop):
            self.done()
            return True
        return False
