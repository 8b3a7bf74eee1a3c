"""The committed bubu/_gen matches what scripts/gen_protos.py produces from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_generated_imports_live_in_the_bubu_namespace() -> None:
    for path in (ROOT / "bubu" / "_gen").rglob("*.py"):
        text = path.read_text()
        assert "\nfrom transport." not in text and "\nimport transport." not in text, path
        assert "\nfrom buf." not in text and "\nimport buf." not in text, path


def test_routes_match_the_contract() -> None:
    from bubu._gen.transport.v1 import hub_grpc, transport_grpc

    class Impl(transport_grpc.TransportConnectorServiceBase):
        async def Data(self, stream: object) -> None: ...
        async def Control(self, stream: object) -> None: ...
        async def HubPush(self, stream: object) -> None: ...

    class Hub(hub_grpc.HubServiceBase):
        async def Process(self, stream: object) -> None: ...

    assert set(Impl().__mapping__()) == {
        "/transport.v1.TransportConnectorService/Data",
        "/transport.v1.TransportConnectorService/Control",
        "/transport.v1.TransportConnectorService/HubPush",
    }
    assert set(Hub().__mapping__()) == {"/transport.v1.HubService/Process"}


def test_field_numbers_match_tractatus_v0_2_0() -> None:
    from bubu._gen.transport.v1 import hub_pb2
    from bubu._gen.transport.v1 import transport_pb2 as pb

    def numbers(message: object) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    packet = {
        "audio": 1,
        "video": 2,
        "binary": 3,
        "metadata": 4,
        "payload": 5,
        "inputs": 6,
        "transports": 7,
        "envelope": 8,
    }
    assert numbers(pb.DataRequest) == packet
    assert numbers(pb.DataResponse) == packet
    assert numbers(pb.PublishRequest) == packet
    assert numbers(hub_pb2.DataPacket) == {
        "metadata": 1,
        "payload": 2,
        "inputs": 3,
        "transports": 4,
        "audio": 5,
        "video": 6,
        "binary": 7,
        "envelope": 8,
    }
    assert numbers(pb.HubPushRequest)["binary"] == 6
    assert numbers(pb.HubPushResponse)["transports"] == 4
    assert numbers(pb.TransportDescriptor) == {"name": 1, "kind": 2, "mode": 3, "typed_config": 5}
    assert numbers(pb.FlowControl) == {
        "ack": 1,
        "credits_messages": 2,
        "credits_bytes": 3,
        "partition_acks": 6,
        "signal": 7,
    }
    assert numbers(pb.StreamEnvelope) == {
        "stream_id": 1,
        "sequence": 2,
        "partition": 3,
        "chunk_id": 4,
        "chunk_index": 5,
        "chunk_count": 6,
        "chunk_bytes": 7,
        "total_bytes": 8,
    }
    assert numbers(pb.ControlResponse) == {
        "action": 1,
        "metadata": 2,
        "flow": 3,
        "custom_action": 4,
        "error": 5,
    }
    assert numbers(pb.BindingInfo) == {
        "transport_ref": 1,
        "driver": 2,
        "endpoint": 3,
        "audio_codecs": 4,
        "video_codecs": 5,
        "payload": 6,
        "binary_types": 7,
        "protocol_version": 8,
    }
    assert pb.ControlAction.Value("CONTROL_ACTION_CODEC_SELECT") == 16
    assert pb.StreamType.Value("STREAM_TYPE_OPENAI_CHAT") == 14
    assert pb.FlowControlSignal.Value("FLOW_CONTROL_SIGNAL_RESUME") == 2
