"""Public message types: constructors, validation, InboundMessage settlement.

See docs/contract/stream.md#message-validation.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from bubu._runtime.messages import (
    BinaryFrame,
    Drop,
    InboundMessage,
    StreamMessage,
    VideoFrame,
    parse_media_type,
)
from bubu.errors import ProtocolViolationError


class Order(msgspec.Struct):
    id: int
    item: str


def test_json_constructor_is_canonical_and_mirrored() -> None:
    msg = StreamMessage.json({"b": 2, "a": {"d": 1, "c": 0}}, kind=" data ")
    assert msg.payload == b'{"a":{"c":0,"d":1},"b":2}'
    assert msg.binary == BinaryFrame(msg.payload, "application/json")
    assert msg.kind == "data"  # trimmed like Go's builder
    msg.validate()


def test_json_accepts_structs_and_decodes_into_types() -> None:
    msg = StreamMessage.json(Order(id=7, item="tea"))
    assert msg.json_data() == {"id": 7, "item": "tea"}
    assert msg.json_data(Order) == Order(id=7, item="tea")
    with pytest.raises(ProtocolViolationError, match="payload"):
        StreamMessage(payload=b'{"id":"x"}').json_data(Order)


@pytest.mark.parametrize("value", [[1, 2], "s", 3, None])
def test_json_requires_an_object(value: object) -> None:
    with pytest.raises(ProtocolViolationError, match="must be a JSON object"):
        StreamMessage.json(value)


def test_json_rejects_unencodable_values() -> None:
    with pytest.raises(ProtocolViolationError, match="not JSON-encodable"):
        StreamMessage.json({"x": object()})


def test_error_constructor_builds_structured_error_v1() -> None:
    msg = StreamMessage.error(
        "boom",
        type="timeout",
        retryable=True,
        exit_code=124,
        exit_class="retry",
        code="E",
        details={"a": 1},
    )
    assert msg.kind == "error" and msg.is_error
    assert msg.binary is None
    assert msg.error_info() == {
        "version": "v1",
        "type": "timeout",
        "message": "boom",
        "retryable": True,
        "exitCode": 124,
        "exitClass": "retry",
        "code": "E",
        "details": {"a": 1},
    }
    assert StreamMessage.json({"a": 1}).error_info() is None


def test_media_constructors() -> None:
    audio = StreamMessage.from_audio(b"\x00\x00", 16000, timestamp_ms=20)
    assert audio.audio is not None
    assert (audio.audio.codec, audio.audio.channels, audio.audio.timestamp_ms) == ("pcm16", 1, 20)
    video = StreamMessage.from_video(b"f", "vp8", width=2, height=3)
    assert video.video == VideoFrame(b"f", "vp8", 2, 3, 0, False)
    raw = StreamMessage.from_bytes(b"x", "text/plain", kind="blob")
    assert raw.binary == BinaryFrame(b"x", "text/plain") and raw.kind == "blob"


def test_now_sets_a_millisecond_utc_timestamp() -> None:
    msg = StreamMessage.now(kind="tick")
    assert msg.timestamp is not None
    assert msg.timestamp.tzinfo is dt.UTC and msg.timestamp.microsecond % 1000 == 0


def test_messages_are_immutable_with_replace() -> None:
    msg = StreamMessage.json({"a": 1})
    with pytest.raises(AttributeError):
        msg.kind = "x"  # type: ignore[misc]
    assert msg.replace(kind="x").kind == "x" and msg.kind == ""


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (StreamMessage(kind=" data"), "kind"),
        (StreamMessage(kind="a/b"), "kind"),
        (StreamMessage(kind="noop", message_id="x"), "kind"),
        (StreamMessage(kind="data", metadata={" k": "v"}), "metadata"),
        (StreamMessage(kind="ERROR", payload=b"{}", binary=BinaryFrame(b"{}")), "kind"),
        (StreamMessage(binary=BinaryFrame(b"")), "binary.payload"),
        (StreamMessage(binary=BinaryFrame(b"x", " text/plain")), "binary.mime_type"),
        (StreamMessage(binary=BinaryFrame(b"x", timestamp_ms=-1)), "binary.timestamp_ms"),
        (StreamMessage(video=VideoFrame(b"v", " h264")), "video.codec"),
        (StreamMessage(), "payload"),
    ],
)
def test_validate_names_the_field(msg: StreamMessage, field: str) -> None:
    with pytest.raises(ProtocolViolationError, match=f"stream message {field}"):
        msg.validate()


@pytest.mark.parametrize(
    ("mime", "parsed"),
    [
        ("text/plain", ("text/plain", {})),
        ("application/json; charset=utf-8", ("application/json", {"charset": "utf-8"})),
        ('a/b; x="quoted value"', ("a/b", {"x": "quoted value"})),
        ("text", ("text", {})),
        ("A/B;", ("a/b", {})),
        ("Text/HTML; Charset=UTF-8", ("text/html", {"charset": "UTF-8"})),
    ],
)
def test_media_type_parsing_accepts_go_valid_values(
    mime: str, parsed: tuple[str, dict[str, str]]
) -> None:
    # mime.ParseMediaType: type and parameter names lower-cased, values kept, quotes removed.
    assert parse_media_type(mime) == parsed


@pytest.mark.parametrize("mime", ["not a mime type", "/x", "a/", "a/b c", "a/b; x", "a/b; =1"])
def test_media_type_parsing_rejects_go_invalid_values(mime: str) -> None:
    with pytest.raises(ValueError):
        parse_media_type(mime)


# -- InboundMessage ---------------------------------------------------------------------------


def test_done_settles_once_and_forwards_attributes() -> None:
    calls: list[int] = []
    inbound = InboundMessage(StreamMessage.json({"a": 1}, kind="data"), lambda: calls.append(1))
    assert inbound.kind == "data" and inbound.json_data() == {"a": 1}
    assert not inbound.is_done
    inbound.done()
    inbound.done()
    assert calls == [1] and inbound.is_done


def test_done_without_receipt_is_a_noop() -> None:
    inbound = InboundMessage(StreamMessage.json({}))
    inbound.done()
    assert inbound.is_done


async def test_async_with_settles_on_success() -> None:
    calls: list[int] = []
    async with InboundMessage(StreamMessage.json({}), lambda: calls.append(1)) as msg:
        assert msg.payload == b"{}"
    assert calls == [1]


async def test_async_with_settles_and_swallows_drop() -> None:
    calls: list[int] = []
    inbound = InboundMessage(StreamMessage.json({}), lambda: calls.append(1))
    async with inbound:
        inbound.drop()
    async with InboundMessage(StreamMessage.json({}), lambda: calls.append(2)):
        raise Drop()
    assert calls == [1, 2]


async def test_async_with_does_not_settle_when_the_body_raises() -> None:
    calls: list[int] = []
    inbound = InboundMessage(StreamMessage.json({}), lambda: calls.append(1))
    with pytest.raises(RuntimeError):
        async with inbound:
            raise RuntimeError("handler failed")
    assert calls == [] and not inbound.is_done


def test_validation_of_a_known_kind_takes_the_cached_road() -> None:
    from bubu._runtime import messages

    messages._VALID_KINDS.clear()
    payload = b'{"a":1}'
    for _ in range(2):  # first: checked and cached; then: the cached road, same verdicts
        StreamMessage(payload=payload, kind="Order.Created").validate()
        assert messages._VALID_KINDS["Order.Created"] == "order.created"
        with pytest.raises(ProtocolViolationError, match="an error message requires a payload"):
            StreamMessage(kind="ERROR").validate()
        with pytest.raises(ProtocolViolationError, match="a noop message must not carry"):
            StreamMessage(kind="NoOp", payload=payload).validate()
        with pytest.raises(ProtocolViolationError, match="a heartbeat message must not carry"):
            StreamMessage(kind="heartbeat", message_id="m").validate()
        StreamMessage(kind="heartbeat").validate()
    assert "ERROR" in messages._VALID_KINDS


def test_unknown_kinds_keep_the_check_order_and_are_not_cached() -> None:
    from bubu._runtime import messages

    messages._VALID_KINDS.clear()
    # whitespace around the kind is reported before a bad message id and bad metadata ...
    with pytest.raises(ProtocolViolationError, match="kind: must not have surrounding"):
        StreamMessage(kind=" data", message_id=" m", metadata={"": "v"}).validate()
    # ... a bad kind character only after them
    with pytest.raises(ProtocolViolationError, match="message_id: must not have surrounding"):
        StreamMessage(kind="da ta", message_id=" m").validate()
    with pytest.raises(ProtocolViolationError, match="metadata: keys must be non-empty"):
        StreamMessage(kind="da ta", metadata={"": "v"}).validate()
    with pytest.raises(ProtocolViolationError, match="may only contain letters"):
        StreamMessage(kind="da ta", payload=b'{"a":1}').validate()
    # ASCII letters only, at either end or inside
    for bad in ("dätä", "äata", "data!", "da/ta", "ÿ"):
        with pytest.raises(ProtocolViolationError, match="may only contain letters"):
            StreamMessage(kind=bad, payload=b'{"a":1}').validate()
    assert messages._VALID_KINDS == {}
    StreamMessage(kind="Aa.0_9-z", payload=b'{"a":1}').validate()
    assert messages._VALID_KINDS.pop("Aa.0_9-z") == "aa.0_9-z"
    # a known kind keeps the checks that do not depend on it
    StreamMessage(kind="data", payload=b'{"a":1}').validate()
    with pytest.raises(ProtocolViolationError, match="message_id: must not have surrounding"):
        StreamMessage(kind="data", message_id="m ").validate()


def test_the_known_kinds_stay_bounded() -> None:
    from bubu._runtime import messages

    messages._VALID_KINDS.clear()
    for n in range(256):
        StreamMessage(kind=f"k{n}").validate()
    assert len(messages._VALID_KINDS) == 256
    StreamMessage(kind="one.more").validate()
    assert messages._VALID_KINDS == {"one.more": "one.more"}


def test_binary_mime_type_checks_use_one_cached_parse() -> None:
    with pytest.raises(ProtocolViolationError, match="is not a media type"):
        StreamMessage(binary=BinaryFrame(payload=b"x", mime_type="no/type/here")).validate()
    env = "application/vnd.bubu.packet+json; v=1"
    with pytest.raises(ProtocolViolationError, match="requires at least one structured field"):
        StreamMessage(binary=BinaryFrame(payload=b"x", mime_type=env)).validate()
    with pytest.raises(ProtocolViolationError, match="must mirror payload"):
        StreamMessage(kind="data", binary=BinaryFrame(payload=b"x", mime_type=env)).validate()
    StreamMessage(binary=BinaryFrame(payload=b"x", mime_type="text/plain")).validate()
