from bubu._gen.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ControlAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_ACTION_UNSPECIFIED: _ClassVar[ControlAction]
    CONTROL_ACTION_NOOP: _ClassVar[ControlAction]
    CONTROL_ACTION_START: _ClassVar[ControlAction]
    CONTROL_ACTION_STOP: _ClassVar[ControlAction]
    CONTROL_ACTION_START_UPSTREAM: _ClassVar[ControlAction]
    CONTROL_ACTION_STOP_UPSTREAM: _ClassVar[ControlAction]
    CONTROL_ACTION_START_DOWNSTREAM: _ClassVar[ControlAction]
    CONTROL_ACTION_STOP_DOWNSTREAM: _ClassVar[ControlAction]
    CONTROL_ACTION_HEARTBEAT: _ClassVar[ControlAction]
    CONTROL_ACTION_CONNECTOR_READY: _ClassVar[ControlAction]
    CONTROL_ACTION_CONNECTOR_CAPABILITIES: _ClassVar[ControlAction]
    CONTROL_ACTION_HANDOFF_DRAINING: _ClassVar[ControlAction]
    CONTROL_ACTION_HANDOFF_CUTOVER: _ClassVar[ControlAction]
    CONTROL_ACTION_HANDOFF_READY: _ClassVar[ControlAction]
    CONTROL_ACTION_ACK: _ClassVar[ControlAction]
    CONTROL_ACTION_ERROR: _ClassVar[ControlAction]
    CONTROL_ACTION_CODEC_SELECT: _ClassVar[ControlAction]

class FlowControlSignal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_CONTROL_SIGNAL_UNSPECIFIED: _ClassVar[FlowControlSignal]
    FLOW_CONTROL_SIGNAL_PAUSE: _ClassVar[FlowControlSignal]
    FLOW_CONTROL_SIGNAL_RESUME: _ClassVar[FlowControlSignal]

class StreamType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_TYPE_UNSPECIFIED: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_TRANSCRIPT: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_TRANSLATION: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_TRANSCRIPT_DELTA: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_TRANSCRIPT_DONE: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_VAD_ACTIVE: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_VAD_INACTIVE: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_AUDIO: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_AUDIO_DELTA: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_AUDIO_DONE: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_AUDIO_SUMMARY: _ClassVar[StreamType]
    STREAM_TYPE_SPEECH_TURN: _ClassVar[StreamType]
    STREAM_TYPE_CHAT_MESSAGE: _ClassVar[StreamType]
    STREAM_TYPE_CHAT_RESPONSE: _ClassVar[StreamType]
    STREAM_TYPE_OPENAI_CHAT: _ClassVar[StreamType]
CONTROL_ACTION_UNSPECIFIED: ControlAction
CONTROL_ACTION_NOOP: ControlAction
CONTROL_ACTION_START: ControlAction
CONTROL_ACTION_STOP: ControlAction
CONTROL_ACTION_START_UPSTREAM: ControlAction
CONTROL_ACTION_STOP_UPSTREAM: ControlAction
CONTROL_ACTION_START_DOWNSTREAM: ControlAction
CONTROL_ACTION_STOP_DOWNSTREAM: ControlAction
CONTROL_ACTION_HEARTBEAT: ControlAction
CONTROL_ACTION_CONNECTOR_READY: ControlAction
CONTROL_ACTION_CONNECTOR_CAPABILITIES: ControlAction
CONTROL_ACTION_HANDOFF_DRAINING: ControlAction
CONTROL_ACTION_HANDOFF_CUTOVER: ControlAction
CONTROL_ACTION_HANDOFF_READY: ControlAction
CONTROL_ACTION_ACK: ControlAction
CONTROL_ACTION_ERROR: ControlAction
CONTROL_ACTION_CODEC_SELECT: ControlAction
FLOW_CONTROL_SIGNAL_UNSPECIFIED: FlowControlSignal
FLOW_CONTROL_SIGNAL_PAUSE: FlowControlSignal
FLOW_CONTROL_SIGNAL_RESUME: FlowControlSignal
STREAM_TYPE_UNSPECIFIED: StreamType
STREAM_TYPE_SPEECH_TRANSCRIPT: StreamType
STREAM_TYPE_SPEECH_TRANSLATION: StreamType
STREAM_TYPE_SPEECH_TRANSCRIPT_DELTA: StreamType
STREAM_TYPE_SPEECH_TRANSCRIPT_DONE: StreamType
STREAM_TYPE_SPEECH_VAD_ACTIVE: StreamType
STREAM_TYPE_SPEECH_VAD_INACTIVE: StreamType
STREAM_TYPE_SPEECH_AUDIO: StreamType
STREAM_TYPE_SPEECH_AUDIO_DELTA: StreamType
STREAM_TYPE_SPEECH_AUDIO_DONE: StreamType
STREAM_TYPE_SPEECH_AUDIO_SUMMARY: StreamType
STREAM_TYPE_SPEECH_TURN: StreamType
STREAM_TYPE_CHAT_MESSAGE: StreamType
STREAM_TYPE_CHAT_RESPONSE: StreamType
STREAM_TYPE_OPENAI_CHAT: StreamType

class AudioFrame(_message.Message):
    __slots__ = ("pcm", "sample_rate_hz", "channels", "codec", "timestamp_ms")
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    pcm: bytes
    sample_rate_hz: int
    channels: int
    codec: str
    timestamp_ms: int
    def __init__(self, pcm: _Optional[bytes] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ..., codec: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("payload", "codec", "width", "height", "timestamp_ms", "raw")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    codec: str
    width: int
    height: int
    timestamp_ms: int
    raw: bool
    def __init__(self, payload: _Optional[bytes] = ..., codec: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., raw: _Optional[bool] = ...) -> None: ...

class BinaryFrame(_message.Message):
    __slots__ = ("payload", "mime_type", "timestamp_ms")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    mime_type: str
    timestamp_ms: int
    def __init__(self, payload: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class TransportDescriptor(_message.Message):
    __slots__ = ("name", "kind", "mode", "typed_config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TYPED_CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    mode: str
    typed_config: TransportConfig
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., mode: _Optional[str] = ..., typed_config: _Optional[_Union[TransportConfig, _Mapping]] = ...) -> None: ...

class TransportConfig(_message.Message):
    __slots__ = ("transport_ref", "mode_reason")
    TRANSPORT_REF_FIELD_NUMBER: _ClassVar[int]
    MODE_REASON_FIELD_NUMBER: _ClassVar[int]
    transport_ref: str
    mode_reason: str
    def __init__(self, transport_ref: _Optional[str] = ..., mode_reason: _Optional[str] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("audio", "video", "binary", "metadata", "payload", "inputs", "transports", "envelope")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    audio: AudioFrame
    video: VideoFrame
    binary: BinaryFrame
    metadata: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    inputs: _struct_pb2.Struct
    transports: _containers.RepeatedCompositeFieldContainer[TransportDescriptor]
    envelope: StreamEnvelope
    def __init__(self, audio: _Optional[_Union[AudioFrame, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., binary: _Optional[_Union[BinaryFrame, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., transports: _Optional[_Iterable[_Union[TransportDescriptor, _Mapping]]] = ..., envelope: _Optional[_Union[StreamEnvelope, _Mapping]] = ...) -> None: ...

class ControlRequest(_message.Message):
    __slots__ = ("action", "metadata", "flow", "custom_action")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ACTION_FIELD_NUMBER: _ClassVar[int]
    action: ControlAction
    metadata: _containers.ScalarMap[str, str]
    flow: FlowControl
    custom_action: str
    def __init__(self, action: _Optional[_Union[ControlAction, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., flow: _Optional[_Union[FlowControl, _Mapping]] = ..., custom_action: _Optional[str] = ...) -> None: ...

class ControlError(_message.Message):
    __slots__ = ("code", "message", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ControlResponse(_message.Message):
    __slots__ = ("action", "metadata", "flow", "custom_action", "error")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ACTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    action: ControlAction
    metadata: _containers.ScalarMap[str, str]
    flow: FlowControl
    custom_action: str
    error: ControlError
    def __init__(self, action: _Optional[_Union[ControlAction, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., flow: _Optional[_Union[FlowControl, _Mapping]] = ..., custom_action: _Optional[str] = ..., error: _Optional[_Union[ControlError, _Mapping]] = ...) -> None: ...

class PartitionAck(_message.Message):
    __slots__ = ("partition", "ack")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    partition: str
    ack: int
    def __init__(self, partition: _Optional[str] = ..., ack: _Optional[int] = ...) -> None: ...

class FlowControl(_message.Message):
    __slots__ = ("ack", "credits_messages", "credits_bytes", "partition_acks", "signal")
    ACK_FIELD_NUMBER: _ClassVar[int]
    CREDITS_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CREDITS_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARTITION_ACKS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ack: int
    credits_messages: int
    credits_bytes: int
    partition_acks: _containers.RepeatedCompositeFieldContainer[PartitionAck]
    signal: FlowControlSignal
    def __init__(self, ack: _Optional[int] = ..., credits_messages: _Optional[int] = ..., credits_bytes: _Optional[int] = ..., partition_acks: _Optional[_Iterable[_Union[PartitionAck, _Mapping]]] = ..., signal: _Optional[_Union[FlowControlSignal, str]] = ...) -> None: ...

class StreamEnvelope(_message.Message):
    __slots__ = ("stream_id", "sequence", "partition", "chunk_id", "chunk_index", "chunk_count", "chunk_bytes", "total_bytes")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sequence: int
    partition: str
    chunk_id: str
    chunk_index: int
    chunk_count: int
    chunk_bytes: int
    total_bytes: int
    def __init__(self, stream_id: _Optional[str] = ..., sequence: _Optional[int] = ..., partition: _Optional[str] = ..., chunk_id: _Optional[str] = ..., chunk_index: _Optional[int] = ..., chunk_count: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class BindingInfo(_message.Message):
    __slots__ = ("transport_ref", "driver", "endpoint", "audio_codecs", "video_codecs", "payload", "binary_types", "protocol_version")
    TRANSPORT_REF_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CODECS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CODECS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BINARY_TYPES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    transport_ref: str
    driver: str
    endpoint: str
    audio_codecs: _containers.RepeatedScalarFieldContainer[str]
    video_codecs: _containers.RepeatedScalarFieldContainer[str]
    payload: bytes
    binary_types: _containers.RepeatedScalarFieldContainer[str]
    protocol_version: str
    def __init__(self, transport_ref: _Optional[str] = ..., driver: _Optional[str] = ..., endpoint: _Optional[str] = ..., audio_codecs: _Optional[_Iterable[str]] = ..., video_codecs: _Optional[_Iterable[str]] = ..., payload: _Optional[bytes] = ..., binary_types: _Optional[_Iterable[str]] = ..., protocol_version: _Optional[str] = ...) -> None: ...

class DataRequest(_message.Message):
    __slots__ = ("audio", "video", "binary", "metadata", "payload", "inputs", "transports", "envelope")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    audio: AudioFrame
    video: VideoFrame
    binary: BinaryFrame
    metadata: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    inputs: _struct_pb2.Struct
    transports: _containers.RepeatedCompositeFieldContainer[TransportDescriptor]
    envelope: StreamEnvelope
    def __init__(self, audio: _Optional[_Union[AudioFrame, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., binary: _Optional[_Union[BinaryFrame, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., transports: _Optional[_Iterable[_Union[TransportDescriptor, _Mapping]]] = ..., envelope: _Optional[_Union[StreamEnvelope, _Mapping]] = ...) -> None: ...

class DataResponse(_message.Message):
    __slots__ = ("audio", "video", "binary", "metadata", "payload", "inputs", "transports", "envelope")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    audio: AudioFrame
    video: VideoFrame
    binary: BinaryFrame
    metadata: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    inputs: _struct_pb2.Struct
    transports: _containers.RepeatedCompositeFieldContainer[TransportDescriptor]
    envelope: StreamEnvelope
    def __init__(self, audio: _Optional[_Union[AudioFrame, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., binary: _Optional[_Union[BinaryFrame, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., transports: _Optional[_Iterable[_Union[TransportDescriptor, _Mapping]]] = ..., envelope: _Optional[_Union[StreamEnvelope, _Mapping]] = ...) -> None: ...

class HubPushRequest(_message.Message):
    __slots__ = ("metadata", "payload", "inputs", "audio", "video", "binary", "transports", "envelope")
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
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    inputs: _struct_pb2.Struct
    audio: AudioFrame
    video: VideoFrame
    binary: BinaryFrame
    transports: _containers.RepeatedCompositeFieldContainer[TransportDescriptor]
    envelope: StreamEnvelope
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., audio: _Optional[_Union[AudioFrame, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., binary: _Optional[_Union[BinaryFrame, _Mapping]] = ..., transports: _Optional[_Iterable[_Union[TransportDescriptor, _Mapping]]] = ..., envelope: _Optional[_Union[StreamEnvelope, _Mapping]] = ...) -> None: ...

class HubPushResponse(_message.Message):
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
    transports: _containers.RepeatedCompositeFieldContainer[TransportDescriptor]
    audio: AudioFrame
    video: VideoFrame
    binary: BinaryFrame
    envelope: StreamEnvelope
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., transports: _Optional[_Iterable[_Union[TransportDescriptor, _Mapping]]] = ..., audio: _Optional[_Union[AudioFrame, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., binary: _Optional[_Union[BinaryFrame, _Mapping]] = ..., envelope: _Optional[_Union[StreamEnvelope, _Mapping]] = ...) -> None: ...
