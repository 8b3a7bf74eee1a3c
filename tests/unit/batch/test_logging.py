"""JSON log formatting, secret masking and telemetry no-op switches."""

from __future__ import annotations

import io
import json
import logging
import urllib.parse

import pytest

from bubu import _logging, _telemetry
from bubu._runtime.redact import SecretMask


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
    line = _logging.JsonFormatter(SecretMask([secret])).format(rec)
    assert secret not in line and json.dumps(secret)[1:-1] not in line
    assert line.count("[REDACTED]") >= 2


def test_mask_ignores_tiny_values_and_prefers_longest() -> None:
    assert SecretMask(["abc", "abcdef"])("abc abcdef") == "abc [REDACTED]"


def test_install_only_when_root_unconfigured() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        stream = io.StringIO()
        with _logging.install(debug=True, stream=stream, mask=SecretMask(["topsecret"])) as fmt:
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


SECRET = 'tok-"quoted"\\back\tslash-ünï'


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda s: s, id="raw"),
        pytest.param(json.dumps, id="json"),
        pytest.param(lambda s: json.dumps(s, ensure_ascii=False), id="json-utf8"),
        pytest.param(lambda s: json.dumps({"body": json.dumps({"token": s})}), id="json-in-json"),
        pytest.param(repr, id="repr"),
        pytest.param(lambda s: repr({"token": s}), id="repr-in-dict"),
        pytest.param(lambda s: repr([s + "'"]), id="repr-other-quote"),
        pytest.param(lambda s: repr(s.encode()), id="bytes-repr"),
        pytest.param(lambda s: repr(RuntimeError(s)), id="exception-repr"),
        pytest.param(lambda s: "https://x/?t=" + urllib.parse.quote(s), id="url"),
    ],
)
def test_mask_covers_escaped_and_embedded_forms(render: object) -> None:
    # issue 12 item 7: a secret inside a repr or JSON-escaped was printed in clear.
    text = render(SECRET)  # type: ignore[operator]
    masked = SecretMask([SECRET])(text)
    assert "[REDACTED]" in masked
    for fragment in ("quoted", "back", "slash"):
        assert fragment not in masked, (text, masked)


def test_masking_filter_covers_a_plain_handler_the_application_installed() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        with _logging.install(mask=SecretMask(["hunter2-pass"]), configure=False):
            logging.getLogger("app").warning("login with %r", {"pw": "hunter2-pass"})
    finally:
        root.handlers[:] = saved
    assert "hunter2-pass" not in stream.getvalue() and "[REDACTED]" in stream.getvalue()
    assert handler.filters == []


def test_masking_stream_and_excepthook() -> None:
    out = io.StringIO()
    mask = SecretMask(["hunter2-pass"])
    stream = _logging.MaskingStream(out, mask)
    print("pw:", "hunter2-pass", file=stream)  # type: ignore[arg-type]
    try:
        raise ValueError("bad hunter2-pass")
    except ValueError as exc:
        err = io.StringIO()
        _logging.masking_excepthook(mask, lambda: err)(ValueError, exc, exc.__traceback__)
    assert out.getvalue() == "pw: [REDACTED]\n"
    assert "Traceback" in err.getvalue() and "hunter2-pass" not in err.getvalue()
