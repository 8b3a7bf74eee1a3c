"""JSON log formatting, secret masking and telemetry no-op switches."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bubu import _logging, _telemetry


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    rec = logging.LogRecord(
        "bubu.batch",
        logging.ERROR,
        __file__,
        1,
        msg,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
    )
    rec.stepRun = "s1"
    return rec


def test_json_formatter_one_object_per_line_with_extras() -> None:
    line = _logging.JsonFormatter().format(record("hello %s", "world"))
    entry = json.loads(line)
    assert entry["msg"] == "hello world" and entry["level"] == "ERROR"
    assert entry["logger"] == "bubu.batch" and entry["stepRun"] == "s1"
    assert "\n" not in line


def test_formatter_masks_secret_values_in_message_and_traceback() -> None:
    secret = 'p@ss"word-123'
    try:
        raise RuntimeError(f"bad {secret}")
    except RuntimeError as exc:
        rec = record("using %s", secret, exc=exc)
    line = _logging.JsonFormatter([secret]).format(rec)
    assert secret not in line and json.dumps(secret)[1:-1] not in line
    assert line.count("[REDACTED]") >= 2


def test_mask_values_ignores_tiny_values_and_prefers_longest() -> None:
    assert _logging.mask_values("abc abcdef", ["abc", "abcdef"]) == "abc [REDACTED]"


def test_install_only_when_root_unconfigured() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        stream = io.StringIO()
        with _logging.install(debug=True, stream=stream, secret_values=["topsecret"]) as fmt:
            assert fmt is not None
            logging.getLogger("bubu.batch").debug("value topsecret")
        assert json.loads(stream.getvalue())["msg"] == "value [REDACTED]"
        assert root.handlers == []
    finally:
        root.handlers[:] = saved
    with _logging.install(stream=io.StringIO()) as fmt:
        assert fmt is None  # pytest configured logging: left alone


def test_telemetry_switches_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _telemetry.configure(metrics=False, tracing=False)
    try:
        _telemetry.record_k8s_operation("PatchStepRunStatus", 0.1, success=True)
        carrier: dict[str, str] = {}
        _telemetry.inject(carrier)
        assert carrier == {}
        assert type(_telemetry.tracer()).__name__ == "NoOpTracer"
    finally:
        _telemetry.configure(metrics=True, tracing=True)
    _telemetry.record_k8s_operation("PatchStepRunStatus", 0.1, success=False)
    assert "k8s_histogram" in _telemetry._state
