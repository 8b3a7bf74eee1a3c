"""The one table of every environment variable the SDK knows, and the loaders that read them.

This is the only module that reads ``BUBU_*`` values, always through an ``EnvSource``
(``os.environ`` by default). ``VARIABLES`` lists every variable of the runtime
contract (docs/contract/runtime-environment.md; the test-only and legacy ones as not read) and
the streaming variables (docs/contract/stream.md#environment, parsed
by ``bubu._runtime.transport`` with the helpers in ``parse.py``). ``scripts/gen_docs.py`` renders
it to ``docs/reference/environment.md``.

``load_env`` follows Go's load order (docs/contract/runtime-environment.md#execution-context) and
raises ``ContractError(variable=NAME)`` for every fatal value; invalid tuning knobs fall back to
their default with a warning on ``bubu.runtime``, as ``pkg/env`` does. ``load_trigger_settings``
re-reads the trigger delivery variables (docs/contract/runtime-environment.md#trigger-delivery) on
every trigger call. No network I/O and no imports of kr8s, grpclib or OpenTelemetry here.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from bubu._runtime import parse
from bubu._runtime.secrets import Descriptors, SecretValue
from bubu._runtime.sources import EnvSource, OsEnviron
from bubu.errors import ContractError

__all__ = [
    "CONFIG_PREFIX",
    "SECRET_PREFIX",
    "VARIABLES",
    "ClientSettings",
    "RuntimeEnv",
    "S3Config",
    "StorageConfig",
    "TransportDescriptor",
    "TransportTypedConfig",
    "TriggerSettings",
    "Variable",
    "debug_enabled",
    "execution_mode",
    "load_client_settings",
    "load_env",
    "load_identity",
    "load_trigger_settings",
    "resolve_namespace",
    "storage_named",
]

logger = logging.getLogger("bubu.runtime")

Kind = Literal[
    "str", "int", "float", "duration", "bool", "json_object", "json_array", "enum", "prefix"
]
Status = Literal["read", "streaming", "ignored", "test-only"]


class Variable(msgspec.Struct, frozen=True, kw_only=True):
    """One environment variable of the contract.

    Attributes:
        name: the variable name (a prefix ends with ``_``).
        kind: how the value is parsed.
        default: the default, as documentation text ("" when there is none).
        meaning: what it controls.
        entry_points: which entry points read it (``batch``, ``impulse``, ``streaming``...).
        section: the group key the reference page is ordered by (``b.1`` ... ``b.8``,
            ``streaming 2.2``; ``scripts/gen_docs.py`` titles each group).
        parse: the exact parse rule, including the fallback on bad input.
        status: ``read`` by this module, ``streaming`` (read by ``_runtime.transport``),
            ``ignored`` (documented by Go but not read) or ``test-only``.
    """

    name: str
    kind: Kind
    default: str
    meaning: str
    entry_points: str
    section: str
    parse: str = ""
    status: Status = "read"


def _v(  # noqa: PLR0917 - table rows read best positionally
    name: str,
    kind: Kind,
    default: str,
    meaning: str,
    entry_points: str,
    section: str,
    parse_rule: str = "",
    status: Status = "read",
) -> Variable:
    return Variable(
        name=name,
        kind=kind,
        default=default,
        meaning=meaning,
        entry_points=entry_points,
        section=section,
        parse=parse_rule,
        status=status,
    )


_ENVDUR = "envDur: trimmed Go duration; invalid or <=0 warns and uses the default"
_ENVINT = "envInt: trimmed Atoi; invalid or <=0 warns and uses the default"
_OBS_BOOL = (
    "bool set 1,true,t,yes,y,on / 0,false,f,no,n,off (case-insensitive); invalid warns and "
    "uses the default"
)
_S3_BOOL = "bool set 1,true,t,yes,y,on / 0,false,f,no,n,off; invalid is fatal"

#: Every environment variable of the contract, in the order of the reference page.
VARIABLES: Final[tuple[Variable, ...]] = (
    # b.1 Identity and workload metadata
    _v("BUBU_STORY_NAME", "str", "", "Story name", "batch, impulse, logs", "b.1", "raw"),
    _v(
        "BUBU_STORY_VERSION",
        "str",
        "",
        "Story spec.version (output schema version fallback)",
        "batch",
        "b.1",
        "trimmed",
    ),
    _v("BUBU_STORYRUN_ID", "str", "", "StoryRun name", "batch, trigger", "b.1", "raw"),
    _v("BUBU_STEP_NAME", "str", "", "step id", "batch, trigger", "b.1", "raw"),
    _v(
        "BUBU_STEPRUN_NAME",
        "str",
        "",
        "StepRun name; required for status writes, effects, signals and logs",
        "batch, effects, signals, logs, trigger",
        "b.1",
        "raw",
    ),
    _v(
        "BUBU_STEPRUN_NAMESPACE",
        "str",
        "",
        "StepRun namespace (3rd in namespace resolution)",
        "all",
        "b.1",
        "raw",
    ),
    _v(
        "BUBU_POD_NAME",
        "str",
        "",
        "pod name (downward API), for zombie-pod fencing",
        "status patch",
        "b.1",
        "trimmed",
    ),
    _v(
        "BUBU_POD_NAMESPACE",
        "str",
        "",
        "pod namespace (4th in namespace resolution)",
        "all",
        "b.1",
        "raw",
    ),
    _v(
        "BUBU_SERVICE_ACCOUNT_NAME",
        "str",
        "",
        "service account name (injected, not read)",
        "-",
        "b.1",
        "",
        "ignored",
    ),
    _v(
        "BUBU_ENGRAM_NAME",
        "str",
        "",
        "Engram name (schema lookup, output schema id)",
        "batch",
        "b.1",
        "trimmed",
    ),
    _v(
        "BUBU_ENGRAM_VERSION",
        "str",
        "",
        "Engram spec.version (output schema version)",
        "batch",
        "b.1",
        "trimmed",
    ),
    _v(
        "BUBU_EXECUTION_MODE",
        "enum",
        "batch",
        "batch / job / hybrid (Job), realtime or "
        "streaming (Deployment); picks the entry point of start()",
        "start",
        "b.1",
        "trimmed, lowercased; empty means batch",
    ),
    _v(
        "BUBU_WORKLOAD_MODE",
        "str",
        "",
        "workload mode (injected, not read)",
        "-",
        "b.1",
        "",
        "ignored",
    ),
    _v(
        "BUBU_STARTED_AT",
        "str",
        "now",
        "execution start, the baseline of status.duration",
        "batch",
        "b.1",
        "RFC3339 with optional fractional seconds; unset or invalid gives now",
    ),
    _v(
        "BUBU_IMPULSE_NAME",
        "str",
        "",
        "Impulse name (StoryTrigger impulseRef, trigger key)",
        "impulse, trigger",
        "b.1",
        "trimmed",
    ),
    _v(
        "BUBU_IMPULSE_NAMESPACE",
        "str",
        "",
        "Impulse namespace (2nd in namespace resolution)",
        "impulse, trigger",
        "b.1",
        "trimmed",
    ),
    _v(
        "BUBU_TARGET_STORY_NAME",
        "str",
        "",
        "Story an Impulse triggers",
        "impulse",
        "b.1",
        "trimmed; required by the target-story helper",
    ),
    _v(
        "BUBU_TARGET_STORY_NAMESPACE",
        "str",
        "",
        "namespace of the target story (1st in namespace resolution)",
        "impulse, trigger",
        "b.1",
        "trimmed",
    ),
    _v(
        "BUBU_TRIGGER_TOKEN",
        "str",
        "",
        "process-wide default trigger token",
        "trigger",
        "b.1",
        "trimmed; a token passed in code wins",
    ),
    # b.2 Inputs, config, secrets, templating
    _v(
        "BUBU_TRIGGER_DATA",
        "json_object",
        "{}",
        "resolved step inputs",
        "batch, impulse",
        "b.2",
        "JSON object; blank gives {}; null gives {}; invalid or non-object is fatal: "
        "failed to unmarshal BUBU_TRIGGER_DATA: ...",
    ),
    _v(
        "BUBU_STEP_CONFIG",
        "json_object",
        "{}",
        "static config (step.with, Impulse.spec.with)",
        "batch, impulse, streaming",
        "b.2",
        "JSON object (same rules)",
    ),
    _v(
        "BUBU_CONFIG_",
        "prefix",
        "",
        "BUBU_CONFIG_<KEY>=v overrides config key <KEY> (case "
        "preserved) with the string v. BUBU_CONFIG_HYDRATION_MAX_* also match (Go quirk kept)",
        "batch, impulse, streaming",
        "b.2",
        "raw string value",
    ),
    _v(
        "BUBU_TEMPLATE_CONTEXT",
        "json_object",
        "{inputs:{}, steps:{}}",
        "template variables {inputs, steps}",
        "batch, impulse",
        "b.2",
        "JSON object (same rules)",
    ),
    _v(
        "BUBU_SKIP_INPUT_TEMPLATING",
        "bool",
        "false",
        "disable SDK-side templating of inputs",
        "batch",
        "b.2",
        "truthy set 1,true,yes,y,on (trimmed, case-insensitive)",
    ),
    _v(
        "BUBU_SECRET_",
        "prefix",
        "",
        "BUBU_SECRET_<NAME> is the descriptor of secret NAME: "
        "env:<PREFIX>, file:<path> or a literal; names ending _NAME or containing __ are skipped",
        "batch, impulse, streaming",
        "b.2",
        "raw; expanded by expand_secrets (docs/contract/runtime-environment.md#secrets)",
    ),
    _v(
        "BUBU_TRANSPORTS",
        "json_array",
        "",
        "declared story transports",
        "batch, streaming",
        "b.2",
        "JSON array of objects {name, kind, mode=hot|fallback, typedConfig}; errors are fatal",
    ),
    _v(
        "BUBU_RUNTIME_STRICT_UNMARSHAL",
        "bool",
        "false",
        "reject unknown keys in typed decode",
        "batch, impulse, streaming",
        "b.2",
        "strconv.ParseBool (trimmed); invalid warns and counts as false",
    ),
    _v(
        "BUBU_CONFIG_HYDRATION_MAX_DEPTH",
        "int",
        "64",
        "config traversal depth limit",
        "batch, impulse",
        "b.2",
        _ENVINT,
    ),
    _v(
        "BUBU_CONFIG_HYDRATION_MAX_NODES",
        "int",
        "10000",
        "config traversal node limit",
        "batch, impulse",
        "b.2",
        _ENVINT,
    ),
    _v(
        "BUBU_TEMPLATE_MAX_INPUT_BYTES",
        "int",
        "8388608",
        "JSON size cap on the template payload and on the context, separately",
        "batch, impulse",
        "b.2",
        _ENVINT,
    ),
    _v(
        "BUBU_TEMPLATE_MAX_OUTPUT_BYTES",
        "int",
        "1048576",
        "cap on rendered output per template",
        "batch, impulse",
        "b.2",
        _ENVINT,
    ),
    _v(
        "BUBU_TEMPLATE_EVALUATION_TIMEOUT",
        "duration",
        "30s",
        "per-render timeout",
        "batch, impulse",
        "b.2",
        _ENVDUR,
    ),
    _v(
        "BUBU_MAX_RECURSION_DEPTH",
        "int",
        "10",
        "storage hydrate/dehydrate depth",
        "all",
        "b.2",
        "Atoi; must be >0, else the default",
    ),
    # b.3 Execution and limits
    _v(
        "BUBU_STEP_TIMEOUT",
        "duration",
        "30m0s",
        "batch deadline covering init, inputs and process",
        "batch",
        "b.3",
        _ENVDUR,
    ),
    _v(
        "BUBU_MAX_INLINE_SIZE",
        "int",
        "1024",
        "inline threshold in bytes before offload",
        "batch, trigger, logs",
        "b.3",
        "Atoi, >=0 allowed; invalid is fatal: invalid BUBU_MAX_INLINE_SIZE '<v>': ...",
    ),
    _v(
        "BUBU_MEDIA_INLINE_SIZE",
        "int",
        "BUBU_MAX_INLINE_SIZE, then 49152",
        "inline threshold for media blobs",
        "media helper",
        "b.3",
        "Atoi >0, else the fallback",
    ),
    _v(
        "BUBU_GRPC_PORT",
        "int",
        "",
        "gRPC port (informational for the engram)",
        "streaming",
        "b.3",
        "positive Atoi; invalid warns and is ignored",
    ),
    _v(
        "BUBU_HYBRID_BRIDGE",
        "bool",
        "on",
        "forward a successful batch output to the hub",
        "batch",
        "b.3",
        "off only for 0,false,no,off (case-insensitive, not trimmed)",
    ),
    _v(
        "BUBU_HYBRID_BRIDGE_TIMEOUT",
        "duration",
        "15s",
        "bound on the hybrid bridge",
        "batch",
        "b.3",
        _ENVDUR,
    ),
    _v(
        "BUBU_TRANSPORT_BINDING",
        "json_object",
        "",
        "transport binding envelope (bridge and "
        "streaming); kept raw here, parsed by _runtime.binding",
        "batch, streaming",
        "b.3",
        "raw",
    ),
    _v(
        "BUBU_DEBUG",
        "bool",
        "false",
        "verbose debug logs and previews",
        "all",
        "b.3",
        "truthy set 1,true,t,yes,y,on,debug (trimmed, case-insensitive)",
    ),
    # b.4 Storage
    _v(
        "BUBU_STORAGE_PROVIDER",
        "enum",
        "disabled",
        "s3, file, none or empty",
        "all",
        "b.4",
        "trimmed, exact match; anything else is fatal: unknown BUBU_STORAGE_PROVIDER 'x' "
        "(expected 's3', 'file', or 'none')",
    ),
    _v(
        "BUBU_STORAGE_PATH",
        "str",
        "",
        "file store root",
        "all",
        "b.4",
        "required when the provider is file (fatal)",
    ),
    _v(
        "BUBU_STORAGE_TIMEOUT",
        "duration",
        "300s",
        "per storage operation timeout",
        "all",
        "b.4",
        _ENVDUR,
    ),
    _v(
        "BUBU_STORAGE_S3_BUCKET",
        "str",
        "",
        "bucket",
        "all",
        "b.4",
        "trimmed; required for s3 (fatal)",
    ),
    _v(
        "BUBU_STORAGE_S3_REGION",
        "str",
        "AWS default chain, else us-east-1",
        "region",
        "all",
        "b.4",
        "trimmed",
    ),
    _v(
        "BUBU_STORAGE_S3_ENDPOINT",
        "str",
        "AWS",
        "custom endpoint (MinIO...)",
        "all",
        "b.4",
        "trimmed; https:// added without a scheme (http:// if BUBU_S3_TLS=false); a scheme "
        "contradicting BUBU_S3_TLS is fatal",
    ),
    _v(
        "BUBU_S3_FORCE_PATH_STYLE",
        "bool",
        "true with a custom endpoint, else false",
        "path-style addressing",
        "all",
        "b.4",
        _S3_BOOL,
    ),
    _v(
        "BUBU_S3_TLS",
        "bool",
        "unset",
        "force http or https",
        "all",
        "b.4",
        _S3_BOOL + "; set but empty is fatal",
    ),
    _v(
        "BUBU_S3_ACCESS_KEY_ID",
        "str",
        "AWS default chain",
        "static credentials: key id",
        "all",
        "b.4",
        "trimmed; any of the three set requires id and secret",
    ),
    _v(
        "BUBU_S3_SECRET_ACCESS_KEY",
        "str",
        "AWS default chain",
        "static credentials: secret key (never printed)",
        "all",
        "b.4",
        "trimmed",
    ),
    _v(
        "BUBU_S3_SESSION_TOKEN",
        "str",
        "",
        "static credentials: session token (never printed)",
        "all",
        "b.4",
        "trimmed",
    ),
    _v(
        "BUBU_S3_MAX_RETRIES",
        "int",
        "3",
        "S3 retryer max attempts",
        "all",
        "b.4",
        "Atoi >0, else the default",
    ),
    _v(
        "BUBU_S3_MAX_BACKOFF",
        "duration",
        "10s",
        "S3 retryer max backoff",
        "all",
        "b.4",
        "Go duration >0, else the default",
    ),
    _v(
        "BUBU_S3_TIMEOUT",
        "duration",
        "5m0s",
        "S3 HTTP client timeout",
        "all",
        "b.4",
        "Go duration >0, else the default",
    ),
    _v(
        "BUBU_S3_MAX_PART_SIZE",
        "int",
        "5242880",
        "multipart upload part size",
        "all",
        "b.4",
        "int >0, else the default",
    ),
    _v(
        "BUBU_S3_CONCURRENCY",
        "int",
        "5",
        "multipart upload concurrency",
        "all",
        "b.4",
        "int >0, else the default",
    ),
    _v(
        "BUBU_S3_SSE",
        "enum",
        "",
        "server-side encryption: s3, sse-s3, aes256 (AES256); kms, aws:kms (aws:kms)",
        "all",
        "b.4",
        "trimmed, lowercased; anything else is fatal (Go fails the write)",
    ),
    _v("BUBU_S3_SSE_KMS_KEY", "str", "", "KMS key id for aws:kms", "all", "b.4", "trimmed"),
    _v("BUBU_STORAGE_OUTPUT_PREFIX", "str", "outputs", "output key prefix", "all", "b.4", "raw"),
    _v("BUBU_STORAGE_INPUT_PREFIX", "str", "inputs", "input key prefix", "all", "b.4", "raw"),
    _v(
        "AWS_ACCESS_KEY_ID",
        "str",
        "",
        "AWS default credential chain (injected by the operator from the storage auth secret; "
        "read by the S3 client; its presence keeps a custom endpoint from going anonymous)",
        "all",
        "b.4",
        "",
        "ignored",
    ),
    # b.5 Kubernetes client
    _v(
        "BUBU_K8S_USER_AGENT",
        "str",
        "bubu-sdk-python",
        "REST user agent and field manager",
        "all",
        "b.5",
        "raw, non-empty",
    ),
    _v(
        "BUBU_K8S_TIMEOUT",
        "duration",
        "30s",
        "REST client HTTP timeout",
        "all",
        "b.5",
        "raw Go duration (not trimmed); invalid or <=0 warns and uses the default",
    ),
    _v(
        "BUBU_K8S_OPERATION_TIMEOUT",
        "duration",
        "30s",
        "per-operation timeout: status patch "
        "loop, trigger create/poll, stop, stats, schema lookups",
        "all",
        "b.5",
        _ENVDUR,
    ),
    _v(
        "BUBU_K8S_QPS",
        "float",
        "0",
        "client-side requests/s limit of the SDK's Kubernetes client (SDK-local; 0 means none: "
        "the API server's own limits apply). Go's client is fixed at 20: set 20 and a burst "
        "of 40 to match it",
        "all",
        "b.5",
        "trimmed float >= 0; invalid warns and gives 0",
    ),
    _v(
        "BUBU_K8S_BURST",
        "int",
        "0",
        "burst of BUBU_K8S_QPS (SDK-local; 0 means the rate rounded down, at least 1)",
        "all",
        "b.5",
        "trimmed Atoi >= 0; invalid warns and gives 0",
    ),
    _v(
        "BUBU_K8S_PATCH_MAX_RETRIES",
        "int",
        "5",
        "retries after the first status patch attempt",
        "batch, effects, signals",
        "b.5",
        "trimmed Atoi; invalid warns and gives 5; negative gives 0",
    ),
    _v(
        "KUBECONFIG",
        "str",
        "$HOME/.kube/config",
        "kubeconfig path (one path) out of cluster",
        "all",
        "b.5",
        "raw path",
    ),
    # b.6 Trigger delivery (re-read on every trigger call by load_trigger_settings)
    _v(
        "BUBU_TRIGGER_DEDUPE_MODE",
        "enum",
        "unset",
        "none, token or key",
        "trigger",
        "b.6",
        "trimmed, lowercased; other values fail the call",
    ),
    _v(
        "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE",
        "str",
        "",
        "template producing the dedupe key",
        "trigger",
        "b.6",
        "trimmed; requires BUBU_TRIGGER_DEDUPE_MODE",
    ),
    _v(
        "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS",
        "int",
        "1",
        "total attempts (0 or 1: one)",
        "trigger",
        "b.6",
        "Atoi >=0, else the call fails",
    ),
    _v(
        "BUBU_TRIGGER_RETRY_BASE_DELAY",
        "duration",
        "1s",
        "retry base delay",
        "trigger",
        "b.6",
        "Go duration >0, else the call fails",
    ),
    _v(
        "BUBU_TRIGGER_RETRY_MAX_DELAY",
        "duration",
        "5m0s",
        "retry delay cap",
        "trigger",
        "b.6",
        "Go duration >0, else the call fails",
    ),
    _v(
        "BUBU_TRIGGER_RETRY_BACKOFF",
        "enum",
        "exponential",
        "exponential, linear or constant",
        "trigger",
        "b.6",
        "trimmed, lowercased; other values fail the call",
    ),
    _v(
        "BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND",
        "int",
        "0 (off)",
        "token-bucket rate",
        "trigger",
        "b.6",
        "Atoi >=0, else the call fails",
    ),
    _v(
        "BUBU_TRIGGER_THROTTLE_BURST",
        "int",
        "the rate",
        "token-bucket burst",
        "trigger",
        "b.6",
        "Atoi >=0, else the call fails",
    ),
    _v(
        "BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT",
        "int",
        "0 (off)",
        "concurrent trigger calls",
        "trigger",
        "b.6",
        "Atoi >=0, else the call fails",
    ),
    # b.7 Effects, signals, logs, observability
    _v(
        "BUBU_EFFECT_MAX_DETAILS_BYTES",
        "int",
        "8192",
        "max JSON bytes of effect details",
        "effects",
        "b.7",
        _ENVINT,
    ),
    _v(
        "BUBU_EFFECT_LEASE_DURATION",
        "duration",
        "10m",
        "EffectClaim lease (SDK-local; Go hard-codes 10m); renewed every lease/3, at most 30s",
        "effects",
        "b.7",
        _ENVDUR,
    ),
    _v(
        "BUBU_SIGNAL_MAX_PAYLOAD_BYTES",
        "int",
        "8192",
        "max stored signal value size",
        "signals",
        "b.7",
        _ENVINT,
    ),
    _v(
        "BUBU_LOG_ALLOWED_ROOTS",
        "str",
        "/tmp, /var/tmp, /var/log, the temp dir, cwd",
        "allowed roots for publishing a log file",
        "logs",
        "b.7",
        "':'-separated paths",
    ),
    _v(
        "BUBU_LOG_FILE_MAX_BYTES",
        "int",
        "5242880",
        "max log file size to publish",
        "logs",
        "b.7",
        _ENVINT,
    ),
    _v("BUBU_SDK_METRICS_ENABLED", "bool", "true", "SDK metrics", "all", "b.7", _OBS_BOOL),
    _v(
        "BUBU_SDK_TRACING_ENABLED",
        "bool",
        "true",
        "SDK tracer (no-op when false)",
        "all",
        "b.7",
        _OBS_BOOL,
    ),
    _v(
        "BUBU_TRACE_PROPAGATION",
        "bool",
        "true",
        "W3C TraceContext and Baggage in packet metadata; a client span per connector call, "
        "its context in the call headers (Go otelgrpc)",
        "all",
        "b.7",
        _OBS_BOOL,
    ),
    # docs/contract/stream.md#environment (parsed by bubu._runtime.transport with parse.env_dur /
    # env_int)
    _v(
        "BUBU_TRANSPORT_SECURITY_MODE",
        "enum",
        "",
        "must be empty or tls, else the dial fails",
        "streaming",
        "streaming 2.2",
        "raw",
        "streaming",
    ),
    _v(
        "BUBU_GRPC_DIAL_TIMEOUT",
        "duration",
        "10s",
        "connector dial deadline",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_CLIENT_MAX_RECV_BYTES",
        "int",
        "10485760",
        "max received message size",
        "streaming",
        "streaming 2.2",
        _ENVINT,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_CLIENT_MAX_SEND_BYTES",
        "int",
        "10485760",
        "max sent message size",
        "streaming",
        "streaming 2.2",
        _ENVINT,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_CHANNEL_BUFFER_SIZE",
        "int",
        "16",
        "depth of the inbound, outbound and control queues",
        "streaming",
        "streaming 2.2",
        _ENVINT,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_MESSAGE_TIMEOUT",
        "duration",
        "30s",
        "per-send and handshake timeout",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_CHANNEL_SEND_TIMEOUT",
        "duration",
        "0 (block)",
        "drop an inbound message not queued within this time",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_HANG_TIMEOUT",
        "duration",
        "0 (off)",
        "cancel the session after this long without traffic",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_HEARTBEAT_INTERVAL",
        "duration",
        "10s",
        "Data-stream heartbeat interval",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_TRANSPORT_HEARTBEAT_INTERVAL",
        "duration",
        "30s",
        "Control-stream heartbeat interval",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_RECONNECT_BASE_BACKOFF",
        "duration",
        "500ms",
        "reconnect backoff start",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_RECONNECT_MAX_BACKOFF",
        "duration",
        "30s",
        "reconnect backoff cap",
        "streaming",
        "streaming 2.2",
        _ENVDUR,
        "streaming",
    ),
    _v(
        "BUBU_GRPC_RECONNECT_MAX_RETRIES",
        "int",
        "10",
        "reconnect retries; negative is unlimited",
        "streaming",
        "streaming 2.2",
        "Atoi; non-integer values are ignored",
        "streaming",
    ),
    _v(
        "BUBU_GRPC_GRACEFUL_SHUTDOWN_TIMEOUT",
        "duration",
        "",
        "in Go docs, read by no SDK code",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    _v(
        "BUBU_GRPC_REQUIRE_TLS",
        "bool",
        "",
        "in Go docs, read by no SDK code",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    _v(
        "BUBU_TRANSPORT_DRIVER",
        "str",
        "",
        "operator convenience env, no effect on the engram",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    _v(
        "BUBU_TRANSPORT_ENDPOINT",
        "str",
        "",
        "operator convenience env, no effect on the engram",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    _v(
        "BUBU_TRANSPORT_AUDIO_CODECS",
        "str",
        "",
        "operator convenience env, no effect on the engram",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    _v(
        "BUBU_TRANSPORT_VIDEO_CODECS",
        "str",
        "",
        "operator convenience env, no effect on the engram",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    _v(
        "BUBU_TRANSPORT_BINARY_TYPES",
        "str",
        "",
        "operator convenience env, no effect on the engram",
        "-",
        "streaming 2.2",
        "",
        "ignored",
    ),
    # b.8 Test-only and legacy
    _v(
        "KUBEBUILDER_ASSETS",
        "str",
        "",
        "envtest binaries (Go integration tests)",
        "-",
        "b.8",
        "",
        "test-only",
    ),
    _v("BOBRAPET_CRD_PATH", "str", "", "CRD directory for envtest", "-", "b.8", "", "test-only"),
    _v(
        "BUBU_ENVTEST_TRIGGER_RESOLVER_POLL_INTERVAL",
        "duration",
        "20ms",
        "fake StoryTrigger resolver timing (Go integration tests)",
        "-",
        "b.8",
        "",
        "test-only",
    ),
    _v(
        "BUBU_ENVTEST_TRIGGER_RESOLVER_REQUEST_TIMEOUT",
        "duration",
        "500ms",
        "fake StoryTrigger resolver timing (Go integration tests)",
        "-",
        "b.8",
        "",
        "test-only",
    ),
    _v(
        "BUBU_ENVTEST_TRIGGER_RESOLVER_STOP_TIMEOUT",
        "duration",
        "2s",
        "fake StoryTrigger resolver timing (Go integration tests)",
        "-",
        "b.8",
        "",
        "test-only",
    ),
    _v(
        "BUBU_SCHEMA_ALLOW_LOOKUP_SKIP_ON_ERROR",
        "bool",
        "",
        "legacy; no longer changes behaviour",
        "-",
        "b.8",
        "",
        "ignored",
    ),
    _v(
        "BUBU_SCHEMA_ALLOW_IMPLICIT_RUNTIME_ALTERNATIVES",
        "bool",
        "",
        "legacy; no longer changes behaviour",
        "-",
        "b.8",
        "",
        "ignored",
    ),
    _v(
        "BUBU_SDK_GRACEFUL_SHUTDOWN_TIMEOUT",
        "duration",
        "",
        "mentioned in Go docs, read nowhere",
        "-",
        "b.8",
        "",
        "ignored",
    ),
)

CONFIG_PREFIX: Final = "BUBU_CONFIG_"
SECRET_PREFIX: Final = "BUBU_SECRET_"

DEFAULT_USER_AGENT: Final = "bubu-sdk-python"
DEFAULT_MEDIA_INLINE_SIZE: Final = 48 * 1024


# --- typed results -----------------------------------------------------------------------------


class TransportTypedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``typedConfig`` of a declared transport (``transportRef``, ``modeReason``)."""

    transport_ref: str = ""
    mode_reason: str = ""


class TransportDescriptor(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``BUBU_TRANSPORTS``.

    Attributes:
        name: unique, trimmed, non-empty.
        kind: trimmed, non-empty.
        mode: ``hot`` (default) or ``fallback``.
        typed_config: ``None`` when both of its fields are empty.
    """

    name: str
    kind: str
    mode: Literal["hot", "fallback"] = "hot"
    typed_config: TransportTypedConfig | None = None


class S3Config(msgspec.Struct, frozen=True, kw_only=True):
    """S3 settings, validated with bob storage's fatal rules.

    See docs/contract/runtime-environment.md#storage.

    Attributes:
        endpoint: the custom endpoint with its scheme (``""`` for AWS).
        tls: ``BUBU_S3_TLS`` (``None`` when unset).
        secret_access_key, session_token: never printed (``SecretValue``).
        sse: ``"AES256"``, ``"aws:kms"`` or ``None``.
        anonymous: sign nothing: a custom endpoint, no ``BUBU_S3_*`` keys and no credentials
            for the AWS default chain in the environment (docs/differences.md).
        shared_credentials_file, profile: ``AWS_SHARED_CREDENTIALS_FILE`` and ``AWS_PROFILE``,
            read by the S3 provider when nothing else supplies credentials.
    """

    bucket: str
    region: str = ""
    endpoint: str = ""
    force_path_style: bool = False
    tls: bool | None = None
    access_key_id: str = ""
    secret_access_key: SecretValue | None = None
    session_token: SecretValue | None = None
    max_retries: int = 3
    max_backoff: float = 10.0
    timeout: float = 300.0
    max_part_size: int = 5 * 1024 * 1024
    concurrency: int = 5
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key: str = ""
    anonymous: bool = False
    shared_credentials_file: str = ""
    profile: str = ""


class StorageConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Enabled storage; ``RuntimeEnv.storage`` is ``None`` when storage is disabled.

    See docs/contract/runtime-environment.md#storage.
    """

    provider: Literal["s3", "file"]
    timeout: float = 300.0
    path: str = ""
    output_prefix: str = "outputs"
    input_prefix: str = "inputs"
    s3: S3Config | None = None


class RuntimeEnv(msgspec.Struct, frozen=True, kw_only=True):
    """Everything batch, impulse and streaming read from the environment, typed.

    Durations are float seconds. Field groups follow the sections of
    docs/contract/runtime-environment.md; see ``docs/reference/environment.md`` for each variable.
    """

    # b.1 identity
    story_name: str = ""
    story_version: str = ""
    storyrun_id: str = ""
    step_name: str = ""
    steprun_name: str = ""
    steprun_namespace: str = ""
    pod_name: str = ""
    pod_namespace: str = ""
    engram_name: str = ""
    engram_version: str = ""
    execution_mode_raw: str = ""
    started_at: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))
    impulse_name: str = ""
    impulse_namespace: str = ""
    target_story_name: str = ""
    target_story_namespace: str = ""
    trigger_token: str = ""
    # b.2
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    template_context: dict[str, Any] | None = None
    transports: tuple[TransportDescriptor, ...] = ()
    secret_descriptors: Descriptors = msgspec.field(default_factory=Descriptors)
    skip_input_templating: bool = False
    strict_unmarshal: bool = False
    config_hydration_max_depth: int = 64
    config_hydration_max_nodes: int = 10000
    template_max_input_bytes: int = 8 * 1024 * 1024
    template_max_output_bytes: int = 1024 * 1024
    template_evaluation_timeout: float = 30.0
    max_recursion_depth: int = 10
    # b.3
    step_timeout: float = 1800.0
    max_inline_size: int = 1024
    media_inline_size: int = 1024
    grpc_port: int | None = None
    hybrid_bridge: bool = True
    hybrid_bridge_timeout: float = 15.0
    transport_binding: str | None = None
    debug: bool = False
    # b.4
    storage: StorageConfig | None = None
    # b.5
    k8s_user_agent: str = DEFAULT_USER_AGENT
    k8s_timeout: float = 30.0
    k8s_operation_timeout: float = 30.0
    k8s_patch_max_retries: int = 5
    k8s_qps: float = 0.0
    k8s_burst: int = 0
    kubeconfig: str | None = None
    # b.7
    effect_max_details_bytes: int = 8192
    effect_lease_duration: float = 600.0
    signal_max_payload_bytes: int = 8192
    log_allowed_roots: tuple[str, ...] | None = None
    log_file_max_bytes: int = 5 * 1024 * 1024
    metrics_enabled: bool = True
    tracing_enabled: bool = True
    trace_propagation: bool = True

    @property
    def execution_mode(self) -> str:
        """``BUBU_EXECUTION_MODE`` trimmed and lowercased; ``batch`` when empty (sdk.go)."""
        mode = parse.go_trim_space(self.execution_mode_raw).lower()
        return mode or "batch"

    @property
    def is_batch_mode(self) -> bool:
        """Whether ``start()`` runs batch: mode ``batch`` or ``job`` (Go ``Start``)."""
        return self.execution_mode in ("batch", "job")

    @property
    def namespace(self) -> str:
        """The client namespace (``resolve_namespace``)."""
        return resolve_namespace(self)

    @property
    def workload_namespace(self) -> str:
        """The namespace ConfigMap/Secret refs and storage keys resolve in (bob storage
        ``defaultNamespace``): the first non-empty trimmed ``BUBU_POD_NAMESPACE``,
        ``BUBU_STEPRUN_NAMESPACE``, ``BUBU_TARGET_STORY_NAMESPACE``, ``BUBU_IMPULSE_NAMESPACE``.

        The order differs from ``namespace`` on purpose (docs/differences.md, kept as in Go).
        """
        for ns in (
            self.pod_namespace,
            self.steprun_namespace,
            self.target_story_namespace,
            self.impulse_namespace,
        ):
            trimmed = parse.go_trim_space(ns)
            if trimmed:
                return trimmed
        return ""


class TriggerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The trigger delivery policy, resolved with defaults.

    Attributes:
        dedupe_mode: ``None`` (no policy), ``none``, ``token`` or ``key``.
        dedupe_key_template: the key template (``key`` mode).
        retry_max_attempts: total attempts, at least 1.
        retry_base_delay, retry_max_delay: seconds.
        retry_backoff: ``exponential``, ``linear`` or ``constant``.
        throttle_rate_per_second: 0 disables the token bucket.
        throttle_burst: as configured (0 means "equal to the rate"; see ``effective_burst``).
        throttle_max_in_flight: 0 disables the concurrency bound.
    """

    dedupe_mode: Literal["none", "token", "key"] | None = None
    dedupe_key_template: str = ""
    retry_max_attempts: int = 1
    retry_base_delay: float = 1.0
    retry_max_delay: float = 300.0
    retry_backoff: Literal["exponential", "linear", "constant"] = "exponential"
    throttle_rate_per_second: int = 0
    throttle_burst: int = 0
    throttle_max_in_flight: int = 0

    @property
    def effective_burst(self) -> int:
        """The token-bucket burst: the configured burst, or the rate when it is 0."""
        return self.throttle_burst if self.throttle_burst > 0 else self.throttle_rate_per_second

    @property
    def throttle_key(self) -> str:
        """Go's throttle cache key ``rate=..;burst=..;max=..``: rebuild the throttle on change."""
        return (
            f"rate={self.throttle_rate_per_second};burst={self.throttle_burst};"
            f"max={self.throttle_max_in_flight}"
        )


# --- helpers ---------------------------------------------------------------------------------


def _trimmed(source: EnvSource, name: str) -> str:
    raw = source.get(name)
    return parse.go_trim_space(raw) if raw else ""


def _raw(source: EnvSource, name: str) -> str:
    return source.get(name) or ""


def _warn_invalid(name: str, raw: str, expected: str) -> None:
    logger.warning(
        "ignoring invalid runtime env override %s=%r (expected %s)",
        name,
        raw,
        expected,
        extra={"env": name, "value": raw, "expected": expected},
    )


# RFC 3339 as Go's time.Parse(time.RFC3339) accepts it: fractional seconds allowed.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def parse_rfc3339(value: str) -> datetime | None:
    """Parse an RFC 3339 timestamp (nanoseconds truncated to microseconds); ``None`` if invalid."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    micros = int((frac + "000000")[:6]) if frac else 0
    zone = m.group(8)
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            return None
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    try:
        return datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    except ValueError:
        return None


def _load_transports(source: EnvSource) -> tuple[TransportDescriptor, ...]:
    name = "BUBU_TRANSPORTS"
    entries = parse.parse_json_array(name, source.get(name))
    if not entries:
        return ()
    out: list[TransportDescriptor] = []
    seen: set[str] = set()
    for i, item in enumerate(entries):
        # Go unmarshals into []map[string]any: a non-object element is an unmarshal error, and
        # null becomes an empty map (then "name is required").
        entry: Any = {} if item is None else item
        if not isinstance(entry, dict):
            raise ContractError(
                f"failed to unmarshal {name}: element {i} is not a JSON object", variable=name
            )

        def text(obj: dict[str, Any], key: str) -> str:
            value = obj.get(key)
            return parse.go_trim_space(value) if isinstance(value, str) else ""

        t_name, t_kind, t_mode = text(entry, "name"), text(entry, "kind"), text(entry, "mode")
        if not t_name:
            raise ContractError(f"invalid {name}[{i}]: name is required", variable=name)
        if not t_kind:
            raise ContractError(f"invalid {name}[{i}]: kind is required", variable=name)
        if t_name in seen:
            raise ContractError(
                f"invalid {name}[{i}]: duplicate transport name {parse.go_quote(t_name)}",
                variable=name,
            )
        seen.add(t_name)
        if not t_mode:
            t_mode = "hot"
        elif t_mode not in ("hot", "fallback"):
            raise ContractError(
                f"invalid {name}[{i}]: mode {parse.go_quote(t_mode)} must be hot or fallback",
                variable=name,
            )
        typed: TransportTypedConfig | None = None
        raw_cfg = entry["typedConfig"] if "typedConfig" in entry else entry.get("typed_config")
        if isinstance(raw_cfg, dict):
            ref = raw_cfg.get("transportRef")
            if not isinstance(ref, str):
                ref = raw_cfg.get("transport_ref")
            reason = raw_cfg.get("modeReason")
            if not isinstance(reason, str):
                reason = raw_cfg.get("mode_reason")
            ref_s = parse.go_trim_space(ref) if isinstance(ref, str) else ""
            reason_s = parse.go_trim_space(reason) if isinstance(reason, str) else ""
            if ref_s or reason_s:
                typed = TransportTypedConfig(transport_ref=ref_s, mode_reason=reason_s)
        out.append(
            TransportDescriptor(
                name=t_name,
                kind=t_kind,
                mode="hot" if t_mode == "hot" else "fallback",
                typed_config=typed,
            )
        )
    return tuple(out)


def _scan_overrides(
    source: EnvSource, config: dict[str, Any]
) -> tuple[dict[str, Any], Descriptors]:
    descriptors: dict[str, str] = {}
    for key, value in source.items():
        if key.startswith(CONFIG_PREFIX):
            config_key = key[len(CONFIG_PREFIX) :]
            # Kept as in Go (docs/differences.md): BUBU_CONFIG_HYDRATION_MAX_* also land here as
            # config keys HYDRATION_MAX_*; documented in docs/differences.md.
            if config_key:
                config[config_key] = value
        elif key.startswith(SECRET_PREFIX):
            secret_key = key[len(SECRET_PREFIX) :]
            # "<NAME>_NAME" carries the Kubernetes Secret name and "__" marks bucket-scoped
            # exports used only by descriptor expansion (context.go applyConfigAndSecretOverrides).
            if not secret_key or secret_key.endswith("_NAME") or "__" in secret_key:
                continue
            descriptors[secret_key] = value
    return config, Descriptors(descriptors)


def _obs_bool(source: EnvSource, name: str, default: bool) -> bool:
    raw = source.get(name)
    if not raw:
        return default
    lowered = parse.go_trim_space(raw).lower()
    if lowered in parse.BOOL_TRUE:
        return True
    if lowered in parse.BOOL_FALSE:
        return False
    logger.warning(
        "ignoring invalid observability env override %s=%r, using default %s",
        name,
        raw,
        default,
        extra={"env": name, "value": raw, "default": default},
    )
    return default


def _positive_int_or(source: EnvSource, name: str, default: int, *, trim: bool = True) -> int:
    # bob storage: Atoi, must be >0, else the default, silently.
    raw = source.get(name) or ""
    text = parse.go_trim_space(raw) if trim else raw
    if not text:
        return default
    try:
        value = parse.parse_atoi(text)
    except parse.GoParseError:
        return default
    return value if value > 0 else default


def _positive_dur_or(source: EnvSource, name: str, default: float) -> float:
    text = _trimmed(source, name)
    if not text:
        return default
    try:
        ns = parse.parse_go_duration_ns(text)
    except parse.GoParseError:
        return default
    return ns / 1e9 if ns > 0 else default


def _max_inline_size(source: EnvSource) -> int:
    name = "BUBU_MAX_INLINE_SIZE"
    raw = source.get(name)
    if not raw:
        return 1024
    # bob storage getMaxInlineSize: Atoi of the raw (untrimmed) value, >=0; invalid is fatal.
    try:
        value = parse.parse_atoi(raw)
    except parse.GoParseError as exc:
        raise ContractError(
            f"invalid {name} '{raw}': must be a non-negative integer: {exc}", variable=name
        ) from None
    if value < 0:
        raise ContractError(f"invalid {name} '{raw}': must be >= 0", variable=name)
    return value


def _s3_bool(source: EnvSource, name: str) -> bool | None:
    raw = source.get(name)
    if raw is None:
        return None
    if name == "BUBU_S3_TLS" and not parse.go_trim_space(raw):
        raise ContractError(f"{name} is set but empty", variable=name)
    if not parse.go_trim_space(raw):
        return None
    try:
        return parse.parse_bool_set(raw)
    except parse.GoParseError as exc:
        raise ContractError(f"invalid {name} value: {exc}", variable=name) from None


def _resolve_endpoint(raw: str, tls: bool | None) -> str:
    name = "BUBU_STORAGE_S3_ENDPOINT"
    endpoint = parse.go_trim_space(raw)
    if not endpoint:
        return ""
    if "://" not in endpoint:
        scheme = "http" if tls is False else "https"
        endpoint = f"{scheme}://{endpoint}"
    try:
        parts = urlsplit(endpoint)
        host = parts.netloc
    except ValueError as exc:
        raise ContractError(
            f"invalid S3 endpoint {parse.go_quote(raw)}: {exc}", variable=name
        ) from None
    if not parts.scheme or not host:
        raise ContractError(
            f"invalid S3 endpoint {parse.go_quote(raw)}: expected scheme and host", variable=name
        )
    if tls is not None:
        expected = "https" if tls else "http"
        if parts.scheme != expected:
            raise ContractError(
                f"BUBU_S3_TLS={'true' if tls else 'false'} requires {expected} endpoint scheme, "
                f"but got {parse.go_quote(parts.scheme)}",
                variable=name,
            )
    # Go drops the fragment.
    return parts._replace(fragment="").geturl()


_AWS_CHAIN_VARS: Final = (
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def _aws_chain_configured(source: EnvSource) -> bool:
    # Go signs nothing with a custom endpoint and no BUBU_S3_* keys, even when the operator
    # injected AWS_* keys from the storage secret; we use those (docs/differences.md).
    return any(_trimmed(source, name) for name in _AWS_CHAIN_VARS)


def storage_named(source: EnvSource) -> bool:
    """Whether ``BUBU_STORAGE_PROVIDER`` names a provider (not blank, not ``none``); the value
    is not validated here (``load_env`` does)."""
    return _trimmed(source, "BUBU_STORAGE_PROVIDER") not in ("", "none")


def _load_storage(source: EnvSource) -> StorageConfig | None:
    name = "BUBU_STORAGE_PROVIDER"
    provider = _trimmed(source, name)
    # A whitespace-only provider means no storage (context.go;
    # docs/contract/runtime-environment.md#storage); the storage manager's exact match then applies
    # to the trimmed value.
    if provider in ("", "none"):
        return None
    if provider not in ("s3", "file"):
        raise ContractError(
            f"unknown {name} '{provider}' (expected 's3', 'file', or 'none')", variable=name
        )
    timeout = parse.env_dur("BUBU_STORAGE_TIMEOUT", source.get("BUBU_STORAGE_TIMEOUT"), 300.0)
    output_prefix = source.get("BUBU_STORAGE_OUTPUT_PREFIX") or "outputs"
    input_prefix = source.get("BUBU_STORAGE_INPUT_PREFIX") or "inputs"
    if provider == "file":
        path = source.get("BUBU_STORAGE_PATH") or ""
        if not path:
            raise ContractError(
                "BUBU_STORAGE_PROVIDER is set to 'file' but BUBU_STORAGE_PATH is not set",
                variable="BUBU_STORAGE_PATH",
            )
        return StorageConfig(
            provider="file",
            timeout=timeout,
            path=path,
            output_prefix=output_prefix,
            input_prefix=input_prefix,
        )
    bucket = _trimmed(source, "BUBU_STORAGE_S3_BUCKET")
    if not bucket:
        raise ContractError(
            "s3 storage is enabled but BUBU_STORAGE_S3_BUCKET is not set",
            variable="BUBU_STORAGE_S3_BUCKET",
        )
    tls = _s3_bool(source, "BUBU_S3_TLS")
    access_key = _trimmed(source, "BUBU_S3_ACCESS_KEY_ID")
    secret_key = _trimmed(source, "BUBU_S3_SECRET_ACCESS_KEY")
    session_token = _trimmed(source, "BUBU_S3_SESSION_TOKEN")
    if access_key or secret_key or session_token:
        if not access_key:
            raise ContractError(
                "BUBU_S3_ACCESS_KEY_ID must be set when providing explicit S3 credentials",
                variable="BUBU_S3_ACCESS_KEY_ID",
            )
        if not secret_key:
            raise ContractError(
                "BUBU_S3_SECRET_ACCESS_KEY must be set when providing explicit S3 credentials",
                variable="BUBU_S3_SECRET_ACCESS_KEY",
            )
    endpoint = _resolve_endpoint(source.get("BUBU_STORAGE_S3_ENDPOINT") or "", tls)
    path_style = _s3_bool(source, "BUBU_S3_FORCE_PATH_STYLE")
    if path_style is None:
        path_style = bool(endpoint)
    sse_raw = _trimmed(source, "BUBU_S3_SSE").lower()
    sse: Literal["AES256", "aws:kms"] | None = None
    if sse_raw in ("s3", "sse-s3", "aes256"):
        sse = "AES256"
    elif sse_raw in ("kms", "aws:kms"):
        sse = "aws:kms"
    elif sse_raw:
        # Go fails each write; failing at startup reports the same error earlier.
        raise ContractError(
            f"unsupported BUBU_S3_SSE value {parse.go_quote(sse_raw)} (expected 's3' or 'kms')",
            variable="BUBU_S3_SSE",
        )
    s3 = S3Config(
        bucket=bucket,
        region=_trimmed(source, "BUBU_STORAGE_S3_REGION"),
        endpoint=endpoint,
        force_path_style=path_style,
        tls=tls,
        access_key_id=access_key,
        secret_access_key=SecretValue(secret_key) if secret_key else None,
        session_token=SecretValue(session_token) if session_token else None,
        max_retries=_positive_int_or(source, "BUBU_S3_MAX_RETRIES", 3),
        max_backoff=_positive_dur_or(source, "BUBU_S3_MAX_BACKOFF", 10.0),
        timeout=_positive_dur_or(source, "BUBU_S3_TIMEOUT", 300.0),
        max_part_size=_positive_int_or(source, "BUBU_S3_MAX_PART_SIZE", 5 * 1024 * 1024),
        concurrency=_positive_int_or(source, "BUBU_S3_CONCURRENCY", 5),
        sse=sse,
        sse_kms_key=_trimmed(source, "BUBU_S3_SSE_KMS_KEY") if sse == "aws:kms" else "",
        anonymous=bool(endpoint) and not access_key and not _aws_chain_configured(source),
        shared_credentials_file=_trimmed(source, "AWS_SHARED_CREDENTIALS_FILE"),
        profile=_trimmed(source, "AWS_PROFILE"),
    )
    return StorageConfig(
        provider="s3",
        timeout=timeout,
        output_prefix=output_prefix,
        input_prefix=input_prefix,
        s3=s3,
    )


def _k8s_timeout(raw: str | None) -> float:
    # Go's applyEnvOverridesToRestConfig hands the raw value to time.ParseDuration: unlike
    # pkg/env's GetDuration it does not trim, so " 5s" keeps the 30s default
    # (docs/contract/runtime-environment.md#kubernetes-client).
    name = "BUBU_K8S_TIMEOUT"
    if not raw:
        return 30.0
    try:
        ns = parse.parse_go_duration_ns(raw)
    except parse.GoParseError:
        ns = 0
    if ns <= 0:
        logger.warning(
            "ignoring invalid env var duration %s=%r, using default 30s",
            name,
            raw,
            extra={"env": name, "value": raw, "default": "30s"},
        )
        return 30.0
    return ns / 1e9


def _patch_max_retries(source: EnvSource) -> int:
    name = "BUBU_K8S_PATCH_MAX_RETRIES"
    text = _trimmed(source, name)
    if not text:
        return 5
    try:
        value = parse.parse_atoi(text)
    except parse.GoParseError:
        logger.warning(
            "ignoring invalid env var integer %s=%r, using default 5",
            name,
            text,
            extra={"env": name, "value": text, "default": 5},
        )
        return 5
    return max(value, 0)


def _strict_unmarshal(source: EnvSource) -> bool:
    name = "BUBU_RUNTIME_STRICT_UNMARSHAL"
    text = _trimmed(source, name)
    if not text:
        return False
    try:
        return parse.parse_bool_go(text)
    except parse.GoParseError:
        _warn_invalid(name, text, "a boolean (true/false)")
        return False


def _grpc_port(source: EnvSource) -> int | None:
    name = "BUBU_GRPC_PORT"
    text = _trimmed(source, name)
    if not text:
        return None
    try:
        value = parse.parse_atoi(text)
    except parse.GoParseError:
        value = 0
    if value <= 0:
        _warn_invalid(name, text, "a positive integer")
        return None
    return value


def _started_at(source: EnvSource) -> datetime:
    raw = source.get("BUBU_STARTED_AT")
    # Unset or invalid silently falls back to now (context.go parseStartedAtFromEnv).
    parsed = parse_rfc3339(raw) if raw else None
    return parsed if parsed is not None else datetime.now(UTC)


def _log_roots(source: EnvSource) -> tuple[str, ...] | None:
    raw = source.get("BUBU_LOG_ALLOWED_ROOTS")
    if not raw or not parse.go_trim_space(raw):
        return None
    roots = tuple(p for p in (parse.go_trim_space(x) for x in raw.split(":")) if p)
    return roots or None


def load_env(source: EnvSource | None = None) -> RuntimeEnv:
    """Read and validate the whole runtime environment (docs/contract/runtime-environment.md).

    Args:
        source: where to read; the live ``os.environ`` when ``None``.

    Returns:
        The typed, frozen environment.

    Raises:
        ContractError: for a fatal value, with ``variable`` naming it: invalid JSON in
            ``BUBU_TRIGGER_DATA`` / ``BUBU_STEP_CONFIG`` / ``BUBU_TEMPLATE_CONTEXT``
            (``failed to unmarshal <ENV>: ...``), a bad ``BUBU_TRANSPORTS``, an invalid
            ``BUBU_MAX_INLINE_SIZE``, or a storage configuration the storage manager refuses.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    k8s_qps, k8s_burst = _k8s_rate(src)
    # Go's load order (docs/contract/runtime-environment.md#execution-context): story info, mode,
    # startedAt, inputs, config, template context, transports, BUBU_CONFIG_* / BUBU_SECRET_* scan,
    # execution settings, storage.
    inputs = parse.parse_json_object("BUBU_TRIGGER_DATA", src.get("BUBU_TRIGGER_DATA")) or {}
    config = parse.parse_json_object("BUBU_STEP_CONFIG", src.get("BUBU_STEP_CONFIG")) or {}
    template_context = (
        parse.parse_json_object("BUBU_TEMPLATE_CONTEXT", src.get("BUBU_TEMPLATE_CONTEXT")) or None
    )
    transports = _load_transports(src)
    config, descriptors = _scan_overrides(src, config)
    max_inline = _max_inline_size(src)
    media_inline = _positive_int_or(
        src, "BUBU_MEDIA_INLINE_SIZE", max_inline if max_inline > 0 else DEFAULT_MEDIA_INLINE_SIZE
    )
    binding = src.get("BUBU_TRANSPORT_BINDING")
    user_agent = src.get("BUBU_K8S_USER_AGENT") or DEFAULT_USER_AGENT
    return RuntimeEnv(
        story_name=_raw(src, "BUBU_STORY_NAME"),
        story_version=_trimmed(src, "BUBU_STORY_VERSION"),
        storyrun_id=_raw(src, "BUBU_STORYRUN_ID"),
        step_name=_raw(src, "BUBU_STEP_NAME"),
        steprun_name=_raw(src, "BUBU_STEPRUN_NAME"),
        steprun_namespace=_raw(src, "BUBU_STEPRUN_NAMESPACE"),
        pod_name=_trimmed(src, "BUBU_POD_NAME"),
        pod_namespace=_raw(src, "BUBU_POD_NAMESPACE"),
        engram_name=_trimmed(src, "BUBU_ENGRAM_NAME"),
        engram_version=_trimmed(src, "BUBU_ENGRAM_VERSION"),
        execution_mode_raw=_raw(src, "BUBU_EXECUTION_MODE"),
        started_at=_started_at(src),
        impulse_name=_trimmed(src, "BUBU_IMPULSE_NAME"),
        impulse_namespace=_trimmed(src, "BUBU_IMPULSE_NAMESPACE"),
        target_story_name=_trimmed(src, "BUBU_TARGET_STORY_NAME"),
        target_story_namespace=_trimmed(src, "BUBU_TARGET_STORY_NAMESPACE"),
        trigger_token=_trimmed(src, "BUBU_TRIGGER_TOKEN"),
        inputs=inputs,
        config=config,
        template_context=template_context,
        transports=transports,
        secret_descriptors=descriptors,
        skip_input_templating=parse.is_truthy(src.get("BUBU_SKIP_INPUT_TEMPLATING")),
        strict_unmarshal=_strict_unmarshal(src),
        config_hydration_max_depth=parse.env_int(
            "BUBU_CONFIG_HYDRATION_MAX_DEPTH", src.get("BUBU_CONFIG_HYDRATION_MAX_DEPTH"), 64
        ),
        config_hydration_max_nodes=parse.env_int(
            "BUBU_CONFIG_HYDRATION_MAX_NODES", src.get("BUBU_CONFIG_HYDRATION_MAX_NODES"), 10000
        ),
        template_max_input_bytes=parse.env_int(
            "BUBU_TEMPLATE_MAX_INPUT_BYTES", src.get("BUBU_TEMPLATE_MAX_INPUT_BYTES"), 8388608
        ),
        template_max_output_bytes=parse.env_int(
            "BUBU_TEMPLATE_MAX_OUTPUT_BYTES", src.get("BUBU_TEMPLATE_MAX_OUTPUT_BYTES"), 1048576
        ),
        template_evaluation_timeout=parse.env_dur(
            "BUBU_TEMPLATE_EVALUATION_TIMEOUT", src.get("BUBU_TEMPLATE_EVALUATION_TIMEOUT"), 30.0
        ),
        max_recursion_depth=_positive_int_or(src, "BUBU_MAX_RECURSION_DEPTH", 10, trim=False),
        step_timeout=parse.env_dur("BUBU_STEP_TIMEOUT", src.get("BUBU_STEP_TIMEOUT"), 1800.0),
        max_inline_size=max_inline,
        media_inline_size=media_inline,
        grpc_port=_grpc_port(src),
        hybrid_bridge=parse.is_bridge_enabled(src.get("BUBU_HYBRID_BRIDGE")),
        hybrid_bridge_timeout=parse.env_dur(
            "BUBU_HYBRID_BRIDGE_TIMEOUT", src.get("BUBU_HYBRID_BRIDGE_TIMEOUT"), 15.0
        ),
        transport_binding=binding if binding and parse.go_trim_space(binding) else None,
        debug=debug_enabled(src),
        storage=_load_storage(src),
        k8s_user_agent=user_agent,
        k8s_timeout=_k8s_timeout(src.get("BUBU_K8S_TIMEOUT")),
        k8s_operation_timeout=parse.env_dur(
            "BUBU_K8S_OPERATION_TIMEOUT", src.get("BUBU_K8S_OPERATION_TIMEOUT"), 30.0
        ),
        k8s_patch_max_retries=_patch_max_retries(src),
        k8s_qps=k8s_qps,
        k8s_burst=k8s_burst,
        kubeconfig=src.get("KUBECONFIG") or None,
        effect_max_details_bytes=parse.env_int(
            "BUBU_EFFECT_MAX_DETAILS_BYTES", src.get("BUBU_EFFECT_MAX_DETAILS_BYTES"), 8192
        ),
        effect_lease_duration=parse.env_dur(
            "BUBU_EFFECT_LEASE_DURATION", src.get("BUBU_EFFECT_LEASE_DURATION"), 600.0
        ),
        signal_max_payload_bytes=parse.env_int(
            "BUBU_SIGNAL_MAX_PAYLOAD_BYTES", src.get("BUBU_SIGNAL_MAX_PAYLOAD_BYTES"), 8192
        ),
        log_allowed_roots=_log_roots(src),
        log_file_max_bytes=parse.env_int(
            "BUBU_LOG_FILE_MAX_BYTES", src.get("BUBU_LOG_FILE_MAX_BYTES"), 5242880
        ),
        metrics_enabled=_obs_bool(src, "BUBU_SDK_METRICS_ENABLED", True),
        tracing_enabled=_obs_bool(src, "BUBU_SDK_TRACING_ENABLED", True),
        trace_propagation=_obs_bool(src, "BUBU_TRACE_PROPAGATION", True),
    )


def load_identity(source: EnvSource | None = None) -> RuntimeEnv:
    """Load only the run's identity and Kubernetes settings, which never fail to load.

    What an entry point needs to report an unusable environment (``load_env`` raised a
    ``ContractError``) on its StepRun, and what the trigger helpers read on every call (the
    target story, the trigger token, the namespaces); every other field keeps its default.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    k8s_qps, k8s_burst = _k8s_rate(src)
    return RuntimeEnv(
        story_name=_raw(src, "BUBU_STORY_NAME"),
        storyrun_id=_raw(src, "BUBU_STORYRUN_ID"),
        step_name=_raw(src, "BUBU_STEP_NAME"),
        steprun_name=_raw(src, "BUBU_STEPRUN_NAME"),
        steprun_namespace=_raw(src, "BUBU_STEPRUN_NAMESPACE"),
        pod_name=_trimmed(src, "BUBU_POD_NAME"),
        pod_namespace=_raw(src, "BUBU_POD_NAMESPACE"),
        impulse_name=_trimmed(src, "BUBU_IMPULSE_NAME"),
        impulse_namespace=_trimmed(src, "BUBU_IMPULSE_NAMESPACE"),
        target_story_name=_trimmed(src, "BUBU_TARGET_STORY_NAME"),
        target_story_namespace=_trimmed(src, "BUBU_TARGET_STORY_NAMESPACE"),
        trigger_token=_trimmed(src, "BUBU_TRIGGER_TOKEN"),
        debug=debug_enabled(src),
        k8s_user_agent=src.get("BUBU_K8S_USER_AGENT") or DEFAULT_USER_AGENT,
        k8s_timeout=parse.env_dur("BUBU_K8S_TIMEOUT", src.get("BUBU_K8S_TIMEOUT"), 30.0),
        k8s_operation_timeout=parse.env_dur(
            "BUBU_K8S_OPERATION_TIMEOUT", src.get("BUBU_K8S_OPERATION_TIMEOUT"), 30.0
        ),
        k8s_patch_max_retries=_patch_max_retries(src),
        k8s_qps=k8s_qps,
        k8s_burst=k8s_burst,
        kubeconfig=src.get("KUBECONFIG") or None,
    )


def execution_mode(source: EnvSource | None = None) -> str:
    """Return ``BUBU_EXECUTION_MODE`` exactly as ``RuntimeEnv.execution_mode`` reads it.

    ``bubu.start`` dispatches on it before the chosen entry point loads (and reports) the rest.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    return parse.go_trim_space(_raw(src, "BUBU_EXECUTION_MODE")).lower() or "batch"


def debug_enabled(source: EnvSource | None = None) -> bool:
    """Return ``BUBU_DEBUG`` exactly as ``load_env`` reads it.

    Entry points set up logging from this before the full load, so the warnings that
    loading emits (ignored invalid values) go through the JSON handler too.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    return parse.is_debug(src.get("BUBU_DEBUG"))


def resolve_namespace(env: RuntimeEnv | EnvSource | None = None) -> str:
    """Return the client namespace: the first non-empty of ``BUBU_TARGET_STORY_NAMESPACE``,
    ``BUBU_IMPULSE_NAMESPACE``, ``BUBU_STEPRUN_NAMESPACE``, ``BUBU_POD_NAMESPACE``, else ``""``.

    In an Impulse pod this is the *story's* namespace (docs/differences.md, kept as in Go).

    Args:
        env: a loaded ``RuntimeEnv``, or a source to read (``os.environ`` when ``None``).
    """
    candidates: tuple[str, ...]
    if isinstance(env, RuntimeEnv):
        candidates = (
            env.target_story_namespace,
            env.impulse_namespace,
            env.steprun_namespace,
            env.pod_namespace,
        )
    else:
        src: EnvSource = env if env is not None else OsEnviron()
        candidates = tuple(
            src.get(n) or ""
            for n in (
                "BUBU_TARGET_STORY_NAMESPACE",
                "BUBU_IMPULSE_NAMESPACE",
                "BUBU_STEPRUN_NAMESPACE",
                "BUBU_POD_NAMESPACE",
            )
        )
    for ns in candidates:
        if ns:
            return ns
    return ""


def _trigger_non_negative(source: EnvSource, name: str) -> int | None:
    text = _trimmed(source, name)
    if not text:
        return None
    try:
        value = parse.parse_atoi(text)
    except parse.GoParseError:
        value = -1
    if value < 0:
        raise ContractError(f"{name} must be a non-negative integer", variable=name)
    return value


def _trigger_duration(source: EnvSource, name: str) -> float | None:
    text = _trimmed(source, name)
    if not text:
        return None
    try:
        ns = parse.parse_go_duration_ns(text)
    except parse.GoParseError as exc:
        raise ContractError(f"{name} invalid: parse duration: {exc}", variable=name) from None
    if ns <= 0:
        raise ContractError(f"{name} invalid: duration must be positive", variable=name)
    return ns / 1e9


def load_trigger_settings(source: EnvSource | None = None) -> TriggerSettings:
    """Read the trigger delivery variables; call it on every trigger, as Go does.

    Args:
        source: where to read; the live ``os.environ`` when ``None``.

    Raises:
        ContractError: with Go's texts, e.g. ``BUBU_TRIGGER_DEDUPE_MODE must be one of none,
            token, key``, ``BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE requires
            BUBU_TRIGGER_DEDUPE_MODE=key``, ``BUBU_TRIGGER_RETRY_MAX_ATTEMPTS must be a
            non-negative integer``, ``BUBU_TRIGGER_RETRY_BASE_DELAY invalid: ...``.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    mode = _trimmed(src, "BUBU_TRIGGER_DEDUPE_MODE").lower()
    template = _trimmed(src, "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE")
    dedupe_mode: Literal["none", "token", "key"] | None = None
    if mode or template:
        if not mode:
            raise ContractError(
                "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE requires BUBU_TRIGGER_DEDUPE_MODE=key",
                variable="BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE",
            )
        if mode == "none":
            dedupe_mode = "none"
        elif mode == "token":
            dedupe_mode = "token"
        elif mode == "key":
            dedupe_mode = "key"
        else:
            raise ContractError(
                "BUBU_TRIGGER_DEDUPE_MODE must be one of none, token, key",
                variable="BUBU_TRIGGER_DEDUPE_MODE",
            )
    attempts = _trigger_non_negative(src, "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS")
    base = _trigger_duration(src, "BUBU_TRIGGER_RETRY_BASE_DELAY")
    cap = _trigger_duration(src, "BUBU_TRIGGER_RETRY_MAX_DELAY")
    backoff_raw = _trimmed(src, "BUBU_TRIGGER_RETRY_BACKOFF").lower()
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    if backoff_raw == "linear":
        backoff = "linear"
    elif backoff_raw == "constant":
        backoff = "constant"
    elif backoff_raw not in ("", "exponential"):
        raise ContractError(
            "BUBU_TRIGGER_RETRY_BACKOFF must be one of exponential, linear, constant",
            variable="BUBU_TRIGGER_RETRY_BACKOFF",
        )
    rate = _trigger_non_negative(src, "BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND")
    burst = _trigger_non_negative(src, "BUBU_TRIGGER_THROTTLE_BURST")
    in_flight = _trigger_non_negative(src, "BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT")
    return TriggerSettings(
        dedupe_mode=dedupe_mode,
        dedupe_key_template=template,
        retry_max_attempts=max(attempts or 1, 1),
        retry_base_delay=base if base is not None else 1.0,
        retry_max_delay=cap if cap is not None else 300.0,
        retry_backoff=backoff,
        throttle_rate_per_second=rate or 0,
        throttle_burst=burst or 0,
        throttle_max_in_flight=in_flight or 0,
    )


class ClientSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What building a Kubernetes client reads from the environment.

    See docs/contract/runtime-environment.md#kubernetes-client and
    docs/contract/errors.md#kubernetes-errors.

    Attributes:
        namespace: the client namespace (``resolve_namespace``); ``""`` lets the client decide
            (service account, kubeconfig context, ``default``).
        user_agent: ``BUBU_K8S_USER_AGENT``.
        timeout: ``BUBU_K8S_TIMEOUT`` in seconds.
        kubeconfig: ``KUBECONFIG`` (out of cluster).
        qps: ``BUBU_K8S_QPS``; 0: no client-side rate limit.
        burst: ``BUBU_K8S_BURST``; 0: derived from ``qps``.
    """

    namespace: str = ""
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = 30.0
    kubeconfig: str = ""
    qps: float = 0.0
    burst: int = 0


def _k8s_rate(src: EnvSource) -> tuple[float, int]:
    """``BUBU_K8S_QPS`` / ``BUBU_K8S_BURST``; an invalid value warns and means "no limit"."""
    qps = 0.0
    raw_qps = _trimmed(src, "BUBU_K8S_QPS")
    if raw_qps:
        try:
            qps = float(raw_qps)
        except ValueError:
            qps = -1.0
        if not qps >= 0 or qps == float("inf"):  # NaN, negative, infinite
            _warn_invalid("BUBU_K8S_QPS", raw_qps, "a number >= 0")
            qps = 0.0
    burst = 0
    raw_burst = _trimmed(src, "BUBU_K8S_BURST")
    if raw_burst:
        try:
            burst = parse.parse_atoi(raw_burst)
        except parse.GoParseError:
            burst = -1
        if burst < 0:
            _warn_invalid("BUBU_K8S_BURST", raw_burst, "an integer >= 0")
            burst = 0
    return qps, burst


def load_client_settings(source: EnvSource | None = None) -> ClientSettings:
    """Read the Kubernetes client variables only (a bad value elsewhere does not matter here).

    Args:
        source: where to read; the live ``os.environ`` when ``None``.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    qps, burst = _k8s_rate(src)
    return ClientSettings(
        namespace=resolve_namespace(src),
        user_agent=src.get("BUBU_K8S_USER_AGENT") or DEFAULT_USER_AGENT,
        timeout=parse.env_dur("BUBU_K8S_TIMEOUT", src.get("BUBU_K8S_TIMEOUT"), 30.0),
        kubeconfig=src.get("KUBECONFIG") or "",
        qps=qps,
        burst=burst,
    )
