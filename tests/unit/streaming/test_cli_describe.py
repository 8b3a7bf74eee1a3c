"""How ``bubu run --stream`` prints published messages."""

from __future__ import annotations

import json

from bubu._cli.stream import describe_output
from bubu._runtime.messages import StreamMessage


def test_json_payload_prints_as_the_json_itself() -> None:
    line = describe_output(StreamMessage.json({"b": 1, "a": "é"}))
    assert json.loads(line) == {"a": "é", "b": 1}


def test_binary_and_audio_print_a_description_with_base64() -> None:
    raw = json.loads(describe_output(StreamMessage.from_bytes(b"\x00\x01", "image/png")))
    assert raw == {"mime_type": "image/png", "base64": "AAE="}
    audio = json.loads(describe_output(StreamMessage.from_audio(b"\x00\x00", 16000, kind="pcm")))
    assert audio["audio"] == {"sample_rate_hz": 16000, "channels": 1, "codec": "pcm16"}
    assert audio["kind"] == "pcm" and audio["base64"] == "AAA="
