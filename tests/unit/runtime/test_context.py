"""ExecutionContext, StoryInfo, idempotency keys and Result.

See docs/contract/batch-lifecycle.md#execution-context.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from bubu._runtime.context import ExecutionContext, StoryInfo, idempotency_key
from bubu._runtime.result import Result
from bubu.errors import IdempotencyUnavailableError

ROOT = Path(__file__).resolve().parents[3]


def test_getters() -> None:
    info = StoryInfo(
        story_name="s", story_run_id="r", step_name="st", step_run_id="sr", step_run_namespace="ns"
    )
    logger = logging.getLogger("custom")
    started = datetime(2024, 1, 1, tzinfo=UTC)
    ctx = ExecutionContext(info, logger=logger, started_at=started)
    assert ctx.story_info is info
    assert ctx.logger is logger
    assert ctx.started_at == started
    assert ctx.template_context == {}


def test_defaults() -> None:
    ctx = ExecutionContext()
    assert ctx.story_info == StoryInfo()
    assert ctx.logger.name == "bubu.engram"
    assert ctx.started_at.tzinfo is not None


def test_template_context_cloned_on_construction_and_read() -> None:
    source = {"inputs": {"a": [1]}, "steps": {}}
    ctx = ExecutionContext(template_context=source)
    source["inputs"]["a"].append(2)
    assert ctx.template_context == {"inputs": {"a": [1]}, "steps": {}}
    view = ctx.template_context
    view["inputs"]["a"].append(3)
    assert ctx.template_context == {"inputs": {"a": [1]}, "steps": {}}


@pytest.mark.parametrize(
    ("info", "key"),
    [
        (
            StoryInfo(story_run_id="run", step_run_id="sr", step_run_namespace="ns"),
            "ns/ns/storyrun/run/steprun/sr",
        ),
        (StoryInfo(story_run_id=" run ", step_run_id=" sr "), "storyrun/run/steprun/sr"),
        (
            StoryInfo(story_run_id="run", step_run_id="sr", step_run_namespace="  "),
            "storyrun/run/steprun/sr",
        ),
    ],
)
def test_idempotency_key_formats(info: StoryInfo, key: str) -> None:
    assert idempotency_key(info) == key
    assert ExecutionContext(info).idempotency_key() == key


@pytest.mark.parametrize(
    "info",
    [
        StoryInfo(),
        StoryInfo(story_run_id="run"),
        StoryInfo(step_run_id="sr"),
        StoryInfo(story_run_id=" ", step_run_id="sr", step_run_namespace="ns"),
    ],
)
def test_idempotency_key_unavailable(info: StoryInfo) -> None:
    with pytest.raises(IdempotencyUnavailableError) as exc:
        ExecutionContext(info).idempotency_key()
    assert str(exc.value) == "idempotency unavailable: missing storyrun or steprun identity"


def test_story_info_is_frozen() -> None:
    info = StoryInfo(story_name="a")
    with pytest.raises(AttributeError):
        info.story_name = "b"  # type: ignore[misc]


def test_tracer_is_lazy_and_honours_disable() -> None:
    code = (
        "import sys\n"
        "from bubu._runtime.context import ExecutionContext\n"
        "ctx = ExecutionContext(tracing_enabled=False)\n"
        "assert 'opentelemetry' not in sys.modules\n"
        "t = ctx.tracer\n"
        "from opentelemetry import trace\n"
        "assert isinstance(t, trace.NoOpTracer), type(t)\n"
        "assert ctx.tracer is t\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_injected_tracer_is_returned() -> None:
    marker = object()
    assert ExecutionContext(tracer=marker).tracer is marker


def test_repr_shows_identity_only() -> None:
    ctx = ExecutionContext(StoryInfo(story_name="s"), template_context={"inputs": {"pw": "x"}})
    assert "pw" not in repr(ctx)
    assert "story_name='s'" in repr(ctx)


# --- Result ---


class Out(msgspec.Struct, rename="camel"):
    total_count: int
    when: datetime


def test_result_wraps_any_value() -> None:
    assert Result({"a": 1}).data == {"a": 1}
    assert Result([1, 2]).data == [1, 2]
    assert Result().data is None
    assert Result("x") == Result("x")


def test_result_to_builtins() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert Result(Out(total_count=2, when=when)).to_builtins() == {
        "totalCount": 2,
        "when": "2024-01-02T03:04:05Z",
    }
    assert Result({"k": [1, "x", None]}).to_builtins() == {"k": [1, "x", None]}
    with pytest.raises(TypeError):
        Result(object()).to_builtins()
