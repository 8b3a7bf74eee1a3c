from bubu._gen.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from bubu._gen.transport.v1 import transport_pb2 as _transport_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataPacket(_message.Message):
    __slots__ = ("metadata", "payload", "inputs", "transports", "audio", "video", "binary", "envelope")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    inputs: _struct_pb2.Struct
    transports: _containers.RepeatedCompositeFieldContainer[_transport_pb2.TransportDescriptor]
    audio: _transport_pb2.AudioFrame
    video: _transport_pb2.VideoFrame
    binary: _transport_pb2.BinaryFrame
    envelope: _transport_pb2.StreamEnvelope
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., transports: _Optional[_Iterable[_Union[_transport_pb2.TransportDescriptor, _Mapping]]] = ..., audio: _Optional[_Union[_transport_pb2.AudioFrame, _Mapping]] = ..., video: _Optional[_Union[_transport_pb2.VideoFrame, _Mapping]] = ..., binary: _Optional[_Union[_transport_pb2.BinaryFrame, _Mapping]] = ..., envelope: _Optional[_Union[_transport_pb2.StreamEnvelope, _Mapping]] = ...) -> None: ...

class ProcessRequest(_message.Message):
    __slots__ = ("packet", "flow")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    packet: DataPacket
    flow: _transport_pb2.FlowControl
    def __init__(self, packet: _Optional[_Union[DataPacket, _Mapping]] = ..., flow: _Optional[_Union[_transport_pb2.FlowControl, _Mapping]] = ...) -> None: ...

class ProcessResponse(_message.Message):
    __slots__ = ("packet", "flow")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    packet: DataPacket
    flow: _transport_pb2.FlowControl
    def __init__(self, packet: _Optional[_Union[DataPacket, _Mapping]] = ..., flow: _Optional[_Union[_transport_pb2.FlowControl, _Mapping]] = ...) -> None: ...
