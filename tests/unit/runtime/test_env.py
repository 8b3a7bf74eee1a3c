"""load_env / load_run_context / load_trigger_settings: every variable, default and error path."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubu._runtime.context import load_run_context
from bubu._runtime.env import (
    VARIABLES,
    RuntimeEnv,
    TransportDescriptor,
    TransportTypedConfig,
    load_env,
    load_trigger_settings,
    resolve_namespace,
)
from bubu._runtime.secrets import SecretValue
from bubu._runtime.sources import MappingSource, OsEnviron
from bubu.errors import BubuError, ContractError

ROOT = Path(__file__).resolve().parents[3]


def env(**values: str) -> RuntimeEnv:
    return load_env(MappingSource(values))


# --- the table ---

# Every name of docs/contract/runtime-environment.md (the test-only ones too) and
# docs/contract/stream.md#environment.
SPEC_NAMES = """
BUBU_STORY_NAME BUBU_STORY_VERSION BUBU_STORYRUN_ID BUBU_STEP_NAME BUBU_STEPRUN_NAME
BUBU_STEPRUN_NAMESPACE BUBU_POD_NAME BUBU_POD_NAMESPACE BUBU_SERVICE_ACCOUNT_NAME BUBU_ENGRAM_NAME
BUBU_ENGRAM_VERSION BUBU_EXECUTION_MODE BUBU_WORKLOAD_MODE BUBU_STARTED_AT BUBU_IMPULSE_NAME
BUBU_IMPULSE_NAMESPACE BUBU_TARGET_STORY_NAME BUBU_TARGET_STORY_NAMESPACE BUBU_TRIGGER_TOKEN
BUBU_TRIGGER_DATA BUBU_STEP_CONFIG BUBU_CONFIG_ BUBU_TEMPLATE_CONTEXT BUBU_SKIP_INPUT_TEMPLATING
BUBU_SECRET_ BUBU_TRANSPORTS BUBU_RUNTIME_STRICT_UNMARSHAL BUBU_CONFIG_HYDRATION_MAX_DEPTH
BUBU_CONFIG_HYDRATION_MAX_NODES BUBU_TEMPLATE_MAX_INPUT_BYTES BUBU_TEMPLATE_MAX_OUTPUT_BYTES
BUBU_TEMPLATE_EVALUATION_TIMEOUT BUBU_MAX_RECURSION_DEPTH BUBU_STEP_TIMEOUT BUBU_MAX_INLINE_SIZE
BUBU_MEDIA_INLINE_SIZE BUBU_GRPC_PORT BUBU_HYBRID_BRIDGE BUBU_HYBRID_BRIDGE_TIMEOUT
BUBU_TRANSPORT_BINDING BUBU_DEBUG BUBU_STORAGE_PROVIDER BUBU_STORAGE_PATH BUBU_STORAGE_TIMEOUT
BUBU_STORAGE_S3_BUCKET BUBU_STORAGE_S3_REGION BUBU_STORAGE_S3_ENDPOINT BUBU_S3_FORCE_PATH_STYLE
BUBU_S3_TLS BUBU_S3_ACCESS_KEY_ID BUBU_S3_SECRET_ACCESS_KEY BUBU_S3_SESSION_TOKEN
BUBU_S3_MAX_RETRIES BUBU_S3_MAX_BACKOFF BUBU_S3_TIMEOUT BUBU_S3_MAX_PART_SIZE BUBU_S3_CONCURRENCY
BUBU_S3_SSE BUBU_S3_SSE_KMS_KEY BUBU_STORAGE_OUTPUT_PREFIX BUBU_STORAGE_INPUT_PREFIX
BUBU_K8S_USER_AGENT BUBU_K8S_TIMEOUT BUBU_K8S_OPERATION_TIMEOUT BUBU_K8S_PATCH_MAX_RETRIES
KUBECONFIG BUBU_TRIGGER_DEDUPE_MODE BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE
BUBU_TRIGGER_RETRY_MAX_ATTEMPTS BUBU_TRIGGER_RETRY_BASE_DELAY BUBU_TRIGGER_RETRY_MAX_DELAY
BUBU_TRIGGER_RETRY_BACKOFF BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND BUBU_TRIGGER_THROTTLE_BURST
BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT BUBU_EFFECT_MAX_DETAILS_BYTES BUBU_SIGNAL_MAX_PAYLOAD_BYTES
BUBU_LOG_ALLOWED_ROOTS BUBU_LOG_FILE_MAX_BYTES BUBU_SDK_METRICS_ENABLED BUBU_SDK_TRACING_ENABLED
BUBU_TRACE_PROPAGATION KUBEBUILDER_ASSETS BOBRAPET_CRD_PATH
BUBU_ENVTEST_TRIGGER_RESOLVER_POLL_INTERVAL BUBU_ENVTEST_TRIGGER_RESOLVER_REQUEST_TIMEOUT
BUBU_ENVTEST_TRIGGER_RESOLVER_STOP_TIMEOUT BUBU_SCHEMA_ALLOW_LOOKUP_SKIP_ON_ERROR
BUBU_SCHEMA_ALLOW_IMPLICIT_RUNTIME_ALTERNATIVES BUBU_SDK_GRACEFUL_SHUTDOWN_TIMEOUT
BUBU_TRANSPORT_SECURITY_MODE BUBU_GRPC_DIAL_TIMEOUT BUBU_GRPC_CLIENT_MAX_RECV_BYTES
BUBU_GRPC_CLIENT_MAX_SEND_BYTES BUBU_GRPC_CHANNEL_BUFFER_SIZE BUBU_GRPC_MESSAGE_TIMEOUT
BUBU_GRPC_CHANNEL_SEND_TIMEOUT BUBU_GRPC_HANG_TIMEOUT BUBU_GRPC_HEARTBEAT_INTERVAL
BUBU_TRANSPORT_HEARTBEAT_INTERVAL BUBU_GRPC_RECONNECT_BASE_BACKOFF BUBU_GRPC_RECONNECT_MAX_BACKOFF
BUBU_GRPC_RECONNECT_MAX_RETRIES
""".split()


def test_table_names_every_spec_variable_once() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert set(SPEC_NAMES) <= set(names)


def test_table_rows_are_complete() -> None:
    for v in VARIABLES:
        assert v.meaning, v.name
        assert v.section, v.name
        if v.status == "read":
            assert v.parse, v.name
            assert v.entry_points not in ("", "-"), v.name


def test_generated_reference_page_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_env_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, bubu._runtime.env, bubu._runtime.context, bubu._runtime.decode, "
        "bubu._runtime.outcome, bubu.engram\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('kr8s', 'grpclib', 'opentelemetry', 'google', 'httpx')]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


# --- defaults ---


def test_empty_environment_gives_documented_defaults() -> None:
    before = datetime.now(UTC)
    e = env()
    assert e.inputs == {}
    assert e.config == {}
    assert dict(e.secret_descriptors) == {}
    assert e.template_context is None
    assert e.transports == ()
    assert before <= e.started_at <= datetime.now(UTC)
    assert e.execution_mode == "batch"
    assert e.is_batch_mode
    assert e.step_timeout == 1800.0
    assert e.max_inline_size == 1024
    assert e.media_inline_size == 1024
    assert e.grpc_port is None
    assert e.hybrid_bridge is True
    assert e.hybrid_bridge_timeout == 15.0
    assert e.transport_binding is None
    assert e.debug is False
    assert e.skip_input_templating is False
    assert e.strict_unmarshal is False
    assert e.config_hydration_max_depth == 64
    assert e.config_hydration_max_nodes == 10000
    assert e.template_max_input_bytes == 8 * 1024 * 1024
    assert e.template_max_output_bytes == 1024 * 1024
    assert e.template_evaluation_timeout == 30.0
    assert e.max_recursion_depth == 10
    assert e.storage is None
    assert e.k8s_user_agent == "bubu-sdk-python"
    assert e.k8s_timeout == 30.0
    assert e.k8s_operation_timeout == 30.0
    assert e.k8s_patch_max_retries == 5
    assert e.kubeconfig is None
    assert e.effect_max_details_bytes == 8192
    assert e.signal_max_payload_bytes == 8192
    assert e.log_allowed_roots is None
    assert e.log_file_max_bytes == 5 * 1024 * 1024
    assert (e.metrics_enabled, e.tracing_enabled, e.trace_propagation) == (True, True, True)
    assert e.namespace == ""


def test_load_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUBU_STORY_NAME", "from-os")
    assert load_env().story_name == "from-os"
    assert OsEnviron().get("BUBU_STORY_NAME") == "from-os"
    assert "from-os" not in repr(OsEnviron())


# --- complete context (docs/contract/runtime-environment.md#execution-context) ---


def test_complete_context() -> None:
    rc = load_run_context(
        MappingSource(
            {
                "BUBU_STORY_NAME": "story",
                "BUBU_STORYRUN_ID": "run-1",
                "BUBU_STEP_NAME": "step",
                "BUBU_STEPRUN_NAME": "run-1-step",
                "BUBU_STEPRUN_NAMESPACE": "ns",
                "BUBU_TRIGGER_DATA": '{"n": 1, "f": 2.5, "s": "x"}',
                "BUBU_STEP_CONFIG": '{"mode": "fast"}',
                "BUBU_SECRET_API": "literal-key",
                "BUBU_STARTED_AT": "2024-05-06T07:08:09.123456789Z",
                "BUBU_TEMPLATE_CONTEXT": '{"inputs": {"a": 1}, "steps": {}}',
            }
        )
    )
    assert rc.inputs == {"n": 1, "f": 2.5, "s": "x"}
    assert rc.config == {"mode": "fast"}
    assert dict(rc.secret_descriptors) == {"API": "literal-key"}
    assert rc.story_info.story_name == "story"
    assert rc.story_info.story_run_id == "run-1"
    assert rc.story_info.step_name == "step"
    assert rc.story_info.step_run_id == "run-1-step"
    assert rc.story_info.step_run_namespace == "ns"
    assert rc.started_at == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert rc.template_context == {"inputs": {"a": 1}, "steps": {}}
    ctx = rc.execution_context()
    assert ctx.story_info == rc.story_info
    assert ctx.template_context == {"inputs": {"a": 1}, "steps": {}}
    assert ctx.idempotency_key() == "ns/ns/storyrun/run-1/steprun/run-1-step"


def test_run_context_dicts_are_copies_of_env() -> None:
    rc = load_run_context(MappingSource({"BUBU_TRIGGER_DATA": '{"a": {"b": 1}}'}))
    rc.inputs["a"]["b"] = 2
    assert rc.env.inputs == {"a": {"b": 1}}


@pytest.mark.parametrize("name", ["BUBU_TRIGGER_DATA", "BUBU_STEP_CONFIG", "BUBU_TEMPLATE_CONTEXT"])
@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_invalid_json_objects_are_fatal(name: str, raw: str) -> None:
    with pytest.raises(ContractError, match=f"^failed to unmarshal {name}: ") as info:
        env(**{name: raw})
    assert info.value.variable == name


@pytest.mark.parametrize("raw", ["null", "", "  "])
def test_trigger_data_null_or_blank_is_empty(raw: str) -> None:
    assert env(BUBU_TRIGGER_DATA=raw).inputs == {}


def test_template_context_null_is_absent() -> None:
    assert env(BUBU_TEMPLATE_CONTEXT="null").template_context is None


# --- BUBU_CONFIG_* and BUBU_SECRET_* ---


def test_config_overrides_are_strings_with_case_preserved() -> None:
    e = env(
        BUBU_STEP_CONFIG='{"retries": 3, "keep": true}',
        BUBU_CONFIG_retries="5",
        BUBU_CONFIG_MixedCase="v",
        BUBU_CONFIG_="ignored",
    )
    assert e.config == {"retries": "5", "keep": True, "MixedCase": "v"}


def test_config_hydration_limits_leak_into_config_like_go() -> None:
    e = env(BUBU_CONFIG_HYDRATION_MAX_DEPTH="8", BUBU_CONFIG_HYDRATION_MAX_NODES="100")
    assert e.config == {"HYDRATION_MAX_DEPTH": "8", "HYDRATION_MAX_NODES": "100"}
    assert (e.config_hydration_max_depth, e.config_hydration_max_nodes) == (8, 100)


def test_secret_descriptors_skip_name_suffix_and_double_underscore() -> None:
    e = env(
        BUBU_SECRET_API="env:API_",
        BUBU_SECRET_API_NAME="k8s-secret",
        BUBU_SECRET_DB__WRITER="file:/x",
        BUBU_SECRET_="empty",
        BUBU_SECRET_token="lit",
    )
    assert dict(e.secret_descriptors) == {"API": "env:API_", "token": "lit"}


def test_secret_descriptors_never_print_values() -> None:
    e = env(BUBU_SECRET_API="super-secret-literal")
    for text in (repr(e), str(e), repr(e.secret_descriptors), f"{e.secret_descriptors}"):
        assert "super-secret-literal" not in text
    assert "API" in repr(e.secret_descriptors)


# --- BUBU_STARTED_AT ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.5Z", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        (
            "2024-01-02T03:04:05+02:00",
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2024-01-02T03:04:05.000000001-07:30",
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=7, minutes=30))),
        ),
    ],
)
def test_started_at_parses_rfc3339(raw: str, expected: datetime) -> None:
    assert env(BUBU_STARTED_AT=raw).started_at == expected


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2024-01-02",
        "2024-01-02 03:04:05Z",
        "2024-13-02T03:04:05Z",
        "2024-01-02T03:04:05",
    ],
)
def test_started_at_invalid_falls_back_to_now(raw: str, caplog: pytest.LogCaptureFixture) -> None:
    before = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        started = env(BUBU_STARTED_AT=raw).started_at
    assert before <= started <= datetime.now(UTC)
    assert caplog.records == []  # silent, as in Go


# --- BUBU_TRANSPORTS ---


def test_transports_default_mode_hot_and_typed_config() -> None:
    e = env(
        BUBU_TRANSPORTS='[{"name": " a ", "kind": "grpc"},'
        '{"name": "b", "kind": "k", "mode": "fallback",'
        ' "typedConfig": {"transportRef": " ref ", "modeReason": "why"}},'
        '{"name": "c", "kind": "k", "typed_config": {"transport_ref": "r2"}},'
        '{"name": "d", "kind": "k", "typedConfig": {}}]'
    )
    assert e.transports == (
        TransportDescriptor(name="a", kind="grpc", mode="hot"),
        TransportDescriptor(
            name="b",
            kind="k",
            mode="fallback",
            typed_config=TransportTypedConfig(transport_ref="ref", mode_reason="why"),
        ),
        TransportDescriptor(
            name="c", kind="k", typed_config=TransportTypedConfig(transport_ref="r2")
        ),
        TransportDescriptor(name="d", kind="k"),
    )


@pytest.mark.parametrize("raw", ["", "null", "[]"])
def test_transports_empty(raw: str) -> None:
    assert env(BUBU_TRANSPORTS=raw).transports == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('[{"kind": "k"}]', "invalid BUBU_TRANSPORTS[0]: name is required"),
        ('[{"name": "  ", "kind": "k"}]', "invalid BUBU_TRANSPORTS[0]: name is required"),
        ('[{"name": 3, "kind": "k"}]', "invalid BUBU_TRANSPORTS[0]: name is required"),
        ("[null]", "invalid BUBU_TRANSPORTS[0]: name is required"),
        ('[{"name": "a"}]', "invalid BUBU_TRANSPORTS[0]: kind is required"),
        (
            '[{"name": "a", "kind": "k", "mode": "cold"}]',
            'invalid BUBU_TRANSPORTS[0]: mode "cold" must be hot or fallback',
        ),
        (
            '[{"name": "a", "kind": "k"}, {"name": "a", "kind": "k"}]',
            'invalid BUBU_TRANSPORTS[1]: duplicate transport name "a"',
        ),
        ("[1]", "failed to unmarshal BUBU_TRANSPORTS: element 0 is not a JSON object"),
        ('{"name": "a"}', "failed to unmarshal BUBU_TRANSPORTS: expected a JSON array, got object"),
    ],
)
def test_transports_rejected_with_documented_text(raw: str, message: str) -> None:
    with pytest.raises(ContractError) as info:
        env(BUBU_TRANSPORTS=raw)
    assert str(info.value) == message
    assert info.value.variable == "BUBU_TRANSPORTS"


# --- identity and mode ---


def test_identity_trimming_follows_go() -> None:
    e = env(
        BUBU_STORY_NAME=" raw ",
        BUBU_STORY_VERSION=" v1 ",
        BUBU_ENGRAM_NAME=" eng ",
        BUBU_ENGRAM_VERSION=" 2 ",
        BUBU_POD_NAME=" pod ",
        BUBU_IMPULSE_NAME=" imp ",
        BUBU_IMPULSE_NAMESPACE=" ins ",
        BUBU_TARGET_STORY_NAME=" target ",
        BUBU_TARGET_STORY_NAMESPACE=" tns ",
        BUBU_TRIGGER_TOKEN=" tok ",
    )
    assert e.story_name == " raw "
    assert (e.story_version, e.engram_name, e.engram_version, e.pod_name) == (
        "v1",
        "eng",
        "2",
        "pod",
    )
    assert (e.impulse_name, e.impulse_namespace) == ("imp", "ins")
    assert (e.target_story_name, e.target_story_namespace, e.trigger_token) == (
        "target",
        "tns",
        "tok",
    )


@pytest.mark.parametrize(
    ("raw", "mode", "batch"),
    [
        ("", "batch", True),
        ("  Batch ", "batch", True),
        ("JOB", "job", True),
        ("hybrid", "hybrid", False),
        ("streaming", "streaming", False),
        ("realtime", "realtime", False),
    ],
)
def test_execution_mode(raw: str, mode: str, batch: bool) -> None:
    e = env(BUBU_EXECUTION_MODE=raw)
    assert e.execution_mode == mode
    assert e.is_batch_mode is batch


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, ""),
        ({"BUBU_POD_NAMESPACE": "pod"}, "pod"),
        ({"BUBU_POD_NAMESPACE": "pod", "BUBU_STEPRUN_NAMESPACE": "sr"}, "sr"),
        ({"BUBU_STEPRUN_NAMESPACE": "sr", "BUBU_IMPULSE_NAMESPACE": "imp"}, "imp"),
        ({"BUBU_IMPULSE_NAMESPACE": "imp", "BUBU_TARGET_STORY_NAMESPACE": "story"}, "story"),
        ({"BUBU_TARGET_STORY_NAMESPACE": "", "BUBU_POD_NAMESPACE": "pod"}, "pod"),
    ],
)
def test_resolve_namespace_precedence(values: dict[str, str], expected: str) -> None:
    assert resolve_namespace(load_env(MappingSource(values))) == expected
    assert resolve_namespace(MappingSource(values)) == expected


# --- inputs, config and execution knobs ---


@pytest.mark.parametrize(
    ("raw", "expected", "warns"),
    [
        ("true", True, False),
        ("1", True, False),
        ("T", True, False),
        (" false ", False, False),
        ("yes", False, True),
        ("", False, False),
    ],
)
def test_strict_unmarshal_parse_bool(
    raw: str, expected: bool, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env(BUBU_RUNTIME_STRICT_UNMARSHAL=raw).strict_unmarshal is expected
    assert bool(caplog.records) is warns


def test_execution_settings_parse() -> None:
    e = env(
        BUBU_STEP_TIMEOUT="5m0s",
        BUBU_MAX_INLINE_SIZE="0",
        BUBU_MEDIA_INLINE_SIZE="4096",
        BUBU_GRPC_PORT="50051",
        BUBU_HYBRID_BRIDGE="off",
        BUBU_HYBRID_BRIDGE_TIMEOUT="2s",
        BUBU_TRANSPORT_BINDING='{"endpoint": "127.0.0.1:50051"}',
        BUBU_DEBUG="Debug",
        BUBU_SKIP_INPUT_TEMPLATING="Y",
        BUBU_TEMPLATE_MAX_INPUT_BYTES="10",
        BUBU_TEMPLATE_MAX_OUTPUT_BYTES="20",
        BUBU_TEMPLATE_EVALUATION_TIMEOUT="250ms",
        BUBU_MAX_RECURSION_DEPTH="64",
    )
    assert e.step_timeout == 300.0
    assert e.max_inline_size == 0
    assert e.media_inline_size == 4096
    assert e.grpc_port == 50051
    assert e.hybrid_bridge is False
    assert e.hybrid_bridge_timeout == 2.0
    assert e.transport_binding == '{"endpoint": "127.0.0.1:50051"}'
    assert e.debug is True
    assert e.skip_input_templating is True
    assert (e.template_max_input_bytes, e.template_max_output_bytes) == (10, 20)
    assert e.template_evaluation_timeout == 0.25
    assert e.max_recursion_depth == 64


def test_invalid_execution_settings_warn_and_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        e = env(
            BUBU_STEP_TIMEOUT="soon",
            BUBU_GRPC_PORT="-1",
            BUBU_STORAGE_PROVIDER="file",
            BUBU_STORAGE_PATH="/data",
            BUBU_STORAGE_TIMEOUT="0s",
        )
    assert e.step_timeout == 1800.0
    assert e.grpc_port is None
    assert e.storage is not None and e.storage.timeout == 300.0
    warned = {getattr(r, "env", None) for r in caplog.records}
    assert {"BUBU_STEP_TIMEOUT", "BUBU_GRPC_PORT", "BUBU_STORAGE_TIMEOUT"} <= warned


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", "invalid BUBU_MAX_INLINE_SIZE 'abc': must be a non-negative integer: strconv.Atoi"),
        ("-1", "invalid BUBU_MAX_INLINE_SIZE '-1': must be >= 0"),
        (" 10", "invalid BUBU_MAX_INLINE_SIZE ' 10': must be a non-negative integer"),
    ],
)
def test_max_inline_size_invalid_is_fatal(raw: str, message: str) -> None:
    with pytest.raises(ContractError) as info:
        env(BUBU_MAX_INLINE_SIZE=raw)
    assert str(info.value).startswith(message)
    assert info.value.variable == "BUBU_MAX_INLINE_SIZE"


@pytest.mark.parametrize(("raw", "depth"), [("0", 10), ("x", 10), ("-4", 10), (" 5", 10), ("5", 5)])
def test_max_recursion_depth_positive_atoi_else_default(raw: str, depth: int) -> None:
    assert env(BUBU_MAX_RECURSION_DEPTH=raw).max_recursion_depth == depth


def test_media_inline_size_falls_back_to_max_inline_then_48k() -> None:
    assert env(BUBU_MAX_INLINE_SIZE="2048").media_inline_size == 2048
    assert env(BUBU_MAX_INLINE_SIZE="0").media_inline_size == 48 * 1024
    assert env(BUBU_MEDIA_INLINE_SIZE="0", BUBU_MAX_INLINE_SIZE="10").media_inline_size == 10


# --- storage ---


@pytest.mark.parametrize("raw", ["", "   ", "none"])
def test_storage_disabled(raw: str) -> None:
    assert env(BUBU_STORAGE_PROVIDER=raw).storage is None


@pytest.mark.parametrize("raw", ["S3", "gcs", "File"])
def test_storage_unknown_provider_is_fatal(raw: str) -> None:
    with pytest.raises(ContractError) as info:
        env(BUBU_STORAGE_PROVIDER=raw)
    assert str(info.value) == (
        f"unknown BUBU_STORAGE_PROVIDER '{raw}' (expected 's3', 'file', or 'none')"
    )
    assert info.value.variable == "BUBU_STORAGE_PROVIDER"


def test_storage_file_requires_path() -> None:
    with pytest.raises(ContractError) as info:
        env(BUBU_STORAGE_PROVIDER="file")
    assert str(info.value) == (
        "BUBU_STORAGE_PROVIDER is set to 'file' but BUBU_STORAGE_PATH is not set"
    )
    assert info.value.variable == "BUBU_STORAGE_PATH"
    storage = env(BUBU_STORAGE_PROVIDER="file", BUBU_STORAGE_PATH="/var/run/bubu/storage").storage
    assert storage is not None
    assert (storage.provider, storage.path, storage.output_prefix, storage.input_prefix) == (
        "file",
        "/var/run/bubu/storage",
        "outputs",
        "inputs",
    )


def test_storage_s3_values_are_trimmed_and_defaults_apply() -> None:
    storage = env(
        BUBU_STORAGE_PROVIDER=" s3 ",
        BUBU_STORAGE_S3_BUCKET=" bucket ",
        BUBU_STORAGE_S3_REGION=" eu-west-1 ",
        BUBU_STORAGE_TIMEOUT="1m",
        BUBU_STORAGE_OUTPUT_PREFIX="out",
        BUBU_STORAGE_INPUT_PREFIX="in",
    ).storage
    assert storage is not None and storage.s3 is not None
    assert storage.provider == "s3"
    assert storage.timeout == 60.0
    assert (storage.output_prefix, storage.input_prefix) == ("out", "in")
    s3 = storage.s3
    assert (s3.bucket, s3.region, s3.endpoint) == ("bucket", "eu-west-1", "")
    assert s3.force_path_style is False
    assert s3.tls is None
    assert (s3.max_retries, s3.max_backoff, s3.timeout) == (3, 10.0, 300.0)
    assert (s3.max_part_size, s3.concurrency) == (5 * 1024 * 1024, 5)
    assert s3.sse is None


def test_storage_s3_requires_bucket() -> None:
    with pytest.raises(ContractError) as info:
        env(BUBU_STORAGE_PROVIDER="s3", BUBU_STORAGE_S3_BUCKET="  ")
    assert str(info.value) == "s3 storage is enabled but BUBU_STORAGE_S3_BUCKET is not set"
    assert info.value.variable == "BUBU_STORAGE_S3_BUCKET"


def s3_env(**values: str) -> RuntimeEnv:
    return env(BUBU_STORAGE_PROVIDER="s3", BUBU_STORAGE_S3_BUCKET="b", **values)


@pytest.mark.parametrize(
    ("values", "endpoint", "path_style"),
    [
        ({"BUBU_STORAGE_S3_ENDPOINT": "minio:9000"}, "https://minio:9000", True),
        (
            {"BUBU_STORAGE_S3_ENDPOINT": "minio:9000", "BUBU_S3_TLS": "false"},
            "http://minio:9000",
            True,
        ),
        (
            {"BUBU_STORAGE_S3_ENDPOINT": "http://m#frag", "BUBU_S3_FORCE_PATH_STYLE": "no"},
            "http://m",
            False,
        ),
        ({"BUBU_S3_FORCE_PATH_STYLE": "Y"}, "", True),
    ],
)
def test_storage_s3_endpoint_and_path_style(
    values: dict[str, str], endpoint: str, path_style: bool
) -> None:
    storage = s3_env(**values).storage
    assert storage is not None and storage.s3 is not None
    assert storage.s3.endpoint == endpoint
    assert storage.s3.force_path_style is path_style


@pytest.mark.parametrize(
    ("values", "variable", "message"),
    [
        ({"BUBU_S3_TLS": " "}, "BUBU_S3_TLS", "BUBU_S3_TLS is set but empty"),
        (
            {"BUBU_S3_TLS": "maybe"},
            "BUBU_S3_TLS",
            'invalid BUBU_S3_TLS value: invalid boolean value "maybe"',
        ),
        (
            {"BUBU_S3_FORCE_PATH_STYLE": "2"},
            "BUBU_S3_FORCE_PATH_STYLE",
            'invalid BUBU_S3_FORCE_PATH_STYLE value: invalid boolean value "2"',
        ),
        (
            {"BUBU_STORAGE_S3_ENDPOINT": "http://m", "BUBU_S3_TLS": "true"},
            "BUBU_STORAGE_S3_ENDPOINT",
            'BUBU_S3_TLS=true requires https endpoint scheme, but got "http"',
        ),
        (
            {"BUBU_STORAGE_S3_ENDPOINT": "https://"},
            "BUBU_STORAGE_S3_ENDPOINT",
            'invalid S3 endpoint "https://": expected scheme and host',
        ),
        (
            {"BUBU_S3_SECRET_ACCESS_KEY": "s"},
            "BUBU_S3_ACCESS_KEY_ID",
            "BUBU_S3_ACCESS_KEY_ID must be set when providing explicit S3 credentials",
        ),
        (
            {"BUBU_S3_SESSION_TOKEN": "t", "BUBU_S3_ACCESS_KEY_ID": "id"},
            "BUBU_S3_SECRET_ACCESS_KEY",
            "BUBU_S3_SECRET_ACCESS_KEY must be set when providing explicit S3 credentials",
        ),
        (
            {"BUBU_S3_SSE": "gpg"},
            "BUBU_S3_SSE",
            "unsupported BUBU_S3_SSE value \"gpg\" (expected 's3' or 'kms')",
        ),
    ],
)
def test_storage_s3_fatal_errors(values: dict[str, str], variable: str, message: str) -> None:
    with pytest.raises(ContractError) as info:
        s3_env(**values)
    assert str(info.value) == message
    assert info.value.variable == variable


@pytest.mark.parametrize(
    ("raw", "sse"),
    [
        ("s3", "AES256"),
        ("SSE-S3", "AES256"),
        ("aes256", "AES256"),
        ("kms", "aws:kms"),
        ("aws:kms", "aws:kms"),
    ],
)
def test_storage_s3_sse(raw: str, sse: str) -> None:
    storage = s3_env(BUBU_S3_SSE=raw, BUBU_S3_SSE_KMS_KEY=" key ").storage
    assert storage is not None and storage.s3 is not None
    assert storage.s3.sse == sse
    assert storage.s3.sse_kms_key == ("key" if sse == "aws:kms" else "")


def test_storage_s3_credentials_never_print() -> None:
    e = s3_env(
        BUBU_S3_ACCESS_KEY_ID="AKIDEXAMPLE",
        BUBU_S3_SECRET_ACCESS_KEY="wJalrXUtnFEMI",
        BUBU_S3_SESSION_TOKEN="FwoGZXIvYXdzEBYaDH",
    )
    assert e.storage is not None and e.storage.s3 is not None
    s3 = e.storage.s3
    assert s3.secret_access_key == SecretValue("wJalrXUtnFEMI")
    assert s3.secret_access_key is not None and s3.secret_access_key.reveal() == "wJalrXUtnFEMI"
    assert s3.session_token is not None and s3.session_token.reveal() == "FwoGZXIvYXdzEBYaDH"
    for text in (repr(e), str(e), repr(s3), f"{s3.secret_access_key}"):
        assert "wJalrXUtnFEMI" not in text
        assert "FwoGZXIvYXdzEBYaDH" not in text


def test_storage_s3_tuning_knobs() -> None:
    storage = s3_env(
        BUBU_S3_MAX_RETRIES="7",
        BUBU_S3_MAX_BACKOFF="2s",
        BUBU_S3_TIMEOUT="1m",
        BUBU_S3_MAX_PART_SIZE="10",
        BUBU_S3_CONCURRENCY="0",
    ).storage
    assert storage is not None and storage.s3 is not None
    s3 = storage.s3
    assert (s3.max_retries, s3.max_backoff, s3.timeout, s3.max_part_size, s3.concurrency) == (
        7,
        2.0,
        60.0,
        10,
        5,
    )


# --- Kubernetes ---


@pytest.mark.parametrize(
    ("raw", "retries", "warns"),
    [("", 5, False), ("3", 3, False), (" 0 ", 0, False), ("-2", 0, False), ("x", 5, True)],
)
def test_patch_max_retries(
    raw: str, retries: int, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env(BUBU_K8S_PATCH_MAX_RETRIES=raw).k8s_patch_max_retries == retries
    assert bool(caplog.records) is warns


def test_k8s_settings() -> None:
    e = env(
        BUBU_K8S_USER_AGENT="my-agent",
        BUBU_K8S_TIMEOUT="5s",
        BUBU_K8S_OPERATION_TIMEOUT="1m",
        KUBECONFIG="/tmp/kc",
    )
    assert (e.k8s_user_agent, e.k8s_timeout, e.k8s_operation_timeout, e.kubeconfig) == (
        "my-agent",
        5.0,
        60.0,
        "/tmp/kc",
    )
    assert env(BUBU_K8S_TIMEOUT="-1s").k8s_timeout == 30.0
    # Go's rest config tests: an invalid timeout is ignored and an empty user agent falls back to
    # the SDK's own (Go: bubu-sdk-go; docs/differences.md).
    fallback = env(BUBU_K8S_TIMEOUT="soon", BUBU_K8S_USER_AGENT="")
    assert (fallback.k8s_timeout, fallback.k8s_user_agent) == (30.0, "bubu-sdk-python")


# --- effects, signals, logs, observability ---


def test_effects_signals_logs_settings() -> None:
    e = env(
        BUBU_EFFECT_MAX_DETAILS_BYTES="100",
        BUBU_SIGNAL_MAX_PAYLOAD_BYTES="200",
        BUBU_LOG_ALLOWED_ROOTS="/a:: /b :",
        BUBU_LOG_FILE_MAX_BYTES="300",
    )
    assert (e.effect_max_details_bytes, e.signal_max_payload_bytes, e.log_file_max_bytes) == (
        100,
        200,
        300,
    )
    assert e.log_allowed_roots == ("/a", "/b")


@pytest.mark.parametrize(
    ("raw", "expected", "warns"),
    [
        ("", True, False),
        ("off", False, False),
        (" N ", False, False),
        ("t", True, False),
        ("maybe", True, True),
    ],
)
def test_observability_bools(
    raw: str, expected: bool, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        e = env(
            BUBU_SDK_METRICS_ENABLED=raw,
            BUBU_SDK_TRACING_ENABLED=raw,
            BUBU_TRACE_PROPAGATION=raw,
        )
    assert (e.metrics_enabled, e.tracing_enabled, e.trace_propagation) == (expected,) * 3
    assert len(caplog.records) == (3 if warns else 0)


# --- trigger settings ---


def trig(**values: str):  # type: ignore[no-untyped-def]
    return load_trigger_settings(MappingSource(values))


def test_trigger_settings_defaults() -> None:
    s = trig()
    assert s.dedupe_mode is None
    assert s.retry_max_attempts == 1
    assert (s.retry_base_delay, s.retry_max_delay, s.retry_backoff) == (1.0, 300.0, "exponential")
    assert (s.throttle_rate_per_second, s.throttle_burst, s.throttle_max_in_flight) == (0, 0, 0)
    assert s.throttle_key == "rate=0;burst=0;max=0"


def test_trigger_settings_parse() -> None:
    s = trig(
        BUBU_TRIGGER_DEDUPE_MODE=" KEY ",
        BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE=" {{ .inputs.id }} ",
        BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="4",
        BUBU_TRIGGER_RETRY_BASE_DELAY="250ms",
        BUBU_TRIGGER_RETRY_MAX_DELAY="1m",
        BUBU_TRIGGER_RETRY_BACKOFF="Linear",
        BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND="10",
        BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT="2",
    )
    assert s.dedupe_mode == "key"
    assert s.dedupe_key_template == "{{ .inputs.id }}"
    assert (s.retry_max_attempts, s.retry_base_delay, s.retry_max_delay) == (4, 0.25, 60.0)
    assert s.retry_backoff == "linear"
    assert (s.throttle_rate_per_second, s.effective_burst, s.throttle_max_in_flight) == (10, 10, 2)
    assert (
        trig(
            BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND="10", BUBU_TRIGGER_THROTTLE_BURST="3"
        ).effective_burst
        == 3
    )
    assert trig(BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="0").retry_max_attempts == 1


def test_trigger_settings_are_reread_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUBU_TRIGGER_DEDUPE_MODE", "token")
    assert load_trigger_settings().dedupe_mode == "token"
    monkeypatch.setenv("BUBU_TRIGGER_DEDUPE_MODE", "none")
    assert load_trigger_settings().dedupe_mode == "none"


@pytest.mark.parametrize(
    ("values", "variable", "message"),
    [
        (
            {"BUBU_TRIGGER_DEDUPE_MODE": "sometimes"},
            "BUBU_TRIGGER_DEDUPE_MODE",
            "BUBU_TRIGGER_DEDUPE_MODE must be one of none, token, key",
        ),
        (
            {"BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE": "{{ .x }}"},
            "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE",
            "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE requires BUBU_TRIGGER_DEDUPE_MODE=key",
        ),
        (
            {"BUBU_TRIGGER_RETRY_MAX_ATTEMPTS": "-1"},
            "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS",
            "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS must be a non-negative integer",
        ),
        (
            {"BUBU_TRIGGER_RETRY_MAX_ATTEMPTS": "two"},
            "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS",
            "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS must be a non-negative integer",
        ),
        (
            {"BUBU_TRIGGER_RETRY_BASE_DELAY": "soon"},
            "BUBU_TRIGGER_RETRY_BASE_DELAY",
            'BUBU_TRIGGER_RETRY_BASE_DELAY invalid: parse duration: time: invalid duration "soon"',
        ),
        (
            {"BUBU_TRIGGER_RETRY_MAX_DELAY": "0s"},
            "BUBU_TRIGGER_RETRY_MAX_DELAY",
            "BUBU_TRIGGER_RETRY_MAX_DELAY invalid: duration must be positive",
        ),
        (
            {"BUBU_TRIGGER_RETRY_BACKOFF": "fibonacci"},
            "BUBU_TRIGGER_RETRY_BACKOFF",
            "BUBU_TRIGGER_RETRY_BACKOFF must be one of exponential, linear, constant",
        ),
        (
            {"BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND": "1.5"},
            "BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND",
            "BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND must be a non-negative integer",
        ),
        (
            {"BUBU_TRIGGER_THROTTLE_BURST": "-3"},
            "BUBU_TRIGGER_THROTTLE_BURST",
            "BUBU_TRIGGER_THROTTLE_BURST must be a non-negative integer",
        ),
        (
            {"BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT": "x"},
            "BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT",
            "BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT must be a non-negative integer",
        ),
    ],
)
def test_trigger_settings_errors(values: dict[str, str], variable: str, message: str) -> None:
    with pytest.raises(ContractError) as info:
        trig(**values)
    assert str(info.value) == message
    assert info.value.variable == variable


# --- fuzz: only BubuError subclasses come out ---

_BUBU_NAMES = [v.name for v in VARIABLES] + [
    "BUBU_CONFIG_x",
    "BUBU_SECRET_A",
    "BUBU_SECRET_B",
]
_GARBAGE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "null",
            "{}",
            "[]",
            "[null]",
            "0",
            "-1",
            "1s",
            "true",
            "s3",
            "file",
            "none",
            "env:",
            "file:",
            '[{"name":"a","kind":"k"}]',
            '{"a":1}',
            "http://x",
            "9" * 30,
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(_BUBU_NAMES), st.text(max_size=20)),
        _GARBAGE,
        max_size=25,
    )
)
def test_arbitrary_environment_raises_only_bubu_errors(values: dict[str, str]) -> None:
    source = MappingSource(values)
    for loader in (load_env, load_run_context, load_trigger_settings):
        try:
            loader(source)
        except BubuError as exc:
            assert isinstance(exc, ContractError)
            assert exc.variable is not None


# A variable that is missing may be blamed when one of these, which needs it, is set
# (provider s3 without a bucket, a key id without its secret...).
_S3_CREDENTIALS = {"BUBU_S3_ACCESS_KEY_ID", "BUBU_S3_SECRET_ACCESS_KEY", "BUBU_S3_SESSION_TOKEN"}
_REQUIRED_BY: dict[str | None, set[str]] = {
    "BUBU_STORAGE_PATH": {"BUBU_STORAGE_PROVIDER"},
    "BUBU_STORAGE_S3_BUCKET": {"BUBU_STORAGE_PROVIDER"},
    "BUBU_S3_ACCESS_KEY_ID": _S3_CREDENTIALS,
    "BUBU_S3_SECRET_ACCESS_KEY": _S3_CREDENTIALS,
}


def test_a_missing_bucket_is_blamed_when_the_provider_asks_for_it() -> None:
    with mock.patch.dict(os.environ, {"BUBU_STORY_NAME": "", "BUBU_STORAGE_PROVIDER": "s3"}):
        os.environ.pop("BUBU_STORAGE_S3_BUCKET", None)
        with pytest.raises(ContractError) as info:
            load_run_context()
    assert info.value.variable == "BUBU_STORAGE_S3_BUCKET"
    assert "BUBU_STORAGE_S3_BUCKET is not set" in str(info.value)


def _environ_text(value: str) -> bool:
    # What os.environ can hold: no NUL, no lone surrogate.
    return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(_BUBU_NAMES), _GARBAGE.filter(_environ_text), min_size=1, max_size=8
    )
)
def test_fuzz_also_covers_os_environ_source(values: dict[str, str]) -> None:
    # The same property through the real os.environ source (load_run_context() reads it).
    with mock.patch.dict(os.environ, values):
        try:
            load_run_context()
        except BubuError as exc:
            assert isinstance(exc, ContractError)
            assert exc.variable in values or _REQUIRED_BY.get(exc.variable, set()) & set(values), (
                f"{exc.variable} was not set, yet it was blamed"
            )
        assert all(os.environ[k] == v for k, v in values.items())  # read, never written


def test_os_environ_source_names_the_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUBU_TRANSPORTS", "[")
    with pytest.raises(ContractError) as info:
        load_run_context()
    assert info.value.variable == "BUBU_TRANSPORTS"


def test_gen_docs_check_fails_on_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    gen_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_docs)
    page = tmp_path / "environment.md"
    monkeypatch.setattr(gen_docs, "ROOT", tmp_path)
    monkeypatch.setattr(gen_docs, "TARGET", page)
    assert gen_docs.main(["--check"]) == 1  # missing page
    assert gen_docs.main([]) == 0
    text = page.read_text()
    assert all(f"`{v.name}" in text for v in VARIABLES)
    assert gen_docs.main(["--check"]) == 0
    page.write_text(text.replace("BUBU_STEP_TIMEOUT", "BUBU_STEP_TIMEOUT_OLD"))
    assert gen_docs.main(["--check"]) == 1
