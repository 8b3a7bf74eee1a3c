"""The one start-up sequence (bubu/_startup.py): what every entry point gets, in every mode."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest

from bubu import _scope, _startup, _telemetry
from bubu._runtime.sources import MappingSource
from bubu.errors import ContractError

IDENTITY = {
    "BUBU_STORY_NAME": "story",
    "BUBU_STORYRUN_ID": "run-1",
    "BUBU_STEP_NAME": "step-a",
    "BUBU_STEPRUN_NAME": "s1",
    "BUBU_SECRET_api": "tok-abcdef-123",
}


@pytest.mark.parametrize("kind", ["batch", "streaming", "impulse", "hybrid"])
def test_every_kind_gets_telemetry_switches_fields_scope_and_mask(kind: Any) -> None:
    source = MappingSource(
        {**IDENTITY, "BUBU_SDK_TRACING_ENABLED": "false", "BUBU_SDK_METRICS_ENABLED": "0"}
    )
    with _startup.begin(kind, source=source, install_logging=False, capture_output=False) as st:
        run = st.load()
        assert (_telemetry._state["tracing"], _telemetry._state["metrics"]) == (False, False)
        assert st.guard.fields.fields == {
            "mode": kind,
            "story": "story",
            "storyRun": "run-1",
            "step": "step-a",
            "stepRun": "s1",
        }
        secrets = st.expand_secrets()
        assert st.mask("x tok-abcdef-123 y") == "x [REDACTED] y"
        with st.activate() as scope:
            assert _scope.current() is scope and scope.env is run.env and scope.mode == kind
            assert scope.step_run_name == "s1" and scope.mask is st.mask
        assert secrets.get("api") == "tok-abcdef-123"
    assert (_telemetry._state["tracing"], _telemetry._state["metrics"]) == (True, True)
    assert _startup.current_guard() is None


def test_a_contract_error_is_left_to_the_entry_point_inside_the_guard() -> None:
    with _startup.begin("batch", source=MappingSource({"BUBU_TRIGGER_DATA": "[1]"})) as st:
        with pytest.raises(ContractError, match="BUBU_TRIGGER_DATA"):
            st.load()
        assert _startup.current_guard() is st.guard


def test_nested_start_up_shares_the_guard_and_keeps_the_outer_mode() -> None:
    with _startup.begin("hybrid", source=MappingSource(IDENTITY), capture_output=False) as outer:
        with _startup.begin(
            "batch", source=MappingSource(IDENTITY), secret_values=["inner-secret"]
        ) as inner:
            inner.load()
            assert inner.guard is outer.guard
            assert outer.guard.fields.fields["mode"] == "hybrid"
        assert outer.mask("inner-secret") == "[REDACTED]"


def test_the_guard_masks_stdout_stderr_and_uncaught_exceptions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _startup.guard(secret_values=["hunter2-pass"], install_logging=False) as g:
        print("pw hunter2-pass")
        print("pw", repr("hunter2-pass"), file=sys.stderr)
        try:
            raise RuntimeError("bad hunter2-pass")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        assert g.mask("hunter2-pass") == "[REDACTED]"
    out, err = capsys.readouterr()
    assert out == "pw [REDACTED]\n"
    assert "hunter2-pass" not in err and "RuntimeError: bad [REDACTED]" in err
    from bubu._logging import MaskingStream

    assert not isinstance(sys.stdout, MaskingStream) and not isinstance(sys.stderr, MaskingStream)


def test_json_lines_with_context_fields_when_nobody_configured_logging() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    stream = io.StringIO()
    try:
        with _startup.begin(
            "impulse", source=MappingSource(IDENTITY), log_stream=stream, capture_output=False
        ) as st:
            st.load()
            st.expand_secrets()
            logging.getLogger("app").warning("token %r", "tok-abcdef-123")
    finally:
        root.handlers[:] = saved
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["msg"] == "token '[REDACTED]'" and entry["mode"] == "impulse"
    assert entry["stepRun"] == "s1" and entry["level"] == "WARNING"


def test_two_runs_ending_out_of_order_leave_no_wrapper_behind() -> None:
    original = sys.stdout
    a = _startup.guard(secret_values=["aaaa-secret"], install_logging=False)
    b_cm: Any = None
    a.__enter__()
    try:
        # A second run in another context (its own guard), entered after and left before A.
        import contextvars

        def enter_b() -> None:
            nonlocal b_cm
            _startup._guard.set(None)
            b_cm = _startup.guard(secret_values=["bbbb-secret"], install_logging=False)
            b_cm.__enter__()

        ctx = contextvars.copy_context()
        ctx.run(enter_b)
    finally:
        a.__exit__(None, None, None)
    ctx.run(lambda: b_cm.__exit__(None, None, None))
    assert sys.stdout is original
