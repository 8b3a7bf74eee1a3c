"""``bubu run`` picks the runner from the component and refuses what a mode cannot honour;
impulses run locally against the in-memory cluster with each StoryTrigger and decision printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ECHO = ROOT / "examples" / "echo_stream.py"
HELLO = ROOT / "examples" / "hello.py"

IMPULSES = textwrap.dedent("""
    import asyncio
    import bubu

    class Twice(bubu.Impulse[dict]):
        async def run(self, client):
            story = bubu.get_target_story().name
            await bubu.start_story_with_token(story, token="evt-1", inputs={"n": 1})
            await bubu.start_story_with_token(story, token="evt-1", inputs={"n": 1})
            await bubu.start_story(story, inputs={"n": 2})

    class Forever(bubu.Impulse[dict]):
        async def run(self, client):
            await asyncio.Event().wait()

    class Broken(bubu.Impulse[dict]):
        async def init(self, config, secrets):
            raise RuntimeError("no upstream configured")

        async def run(self, client):
            pass
""")


def bubu(*args: str, stdin: str = "", env: dict[str, str] | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    full.pop("FORCE_COLOR", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bubu", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture(scope="module")
def impulses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("impulses") / "impulses.py"
    path.write_text(IMPULSES)
    return path


def test_a_streaming_engram_without_stream_is_told_to_add_it() -> None:
    proc = bubu("run", str(ECHO))
    assert proc.returncode == 2
    assert "EchoStream (a streaming engram)" in proc.stderr
    assert "run it with --stream" in proc.stderr
    assert f"bubu run --stream {ECHO}" in proc.stderr


def test_a_batch_engram_with_stream_is_told_to_drop_it() -> None:
    proc = bubu("run", "--stream", str(HELLO))
    assert proc.returncode == 2
    assert "HelloEngram (a batch engram); drop --stream" in proc.stderr


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--inputs", "{}"], "--inputs is for batch engrams"),
        (["--timeout", "5s"], "--timeout is the batch step timeout"),
    ],
)
def test_options_a_stream_run_cannot_honour_are_refused(option: list[str], says: str) -> None:
    proc = bubu("run", "--stream", str(ECHO), *option, stdin='{"text": "hi"}\n')
    assert proc.returncode == 2
    assert says in proc.stderr
    assert proc.stdout == ""


def test_verbose_works_with_stream() -> None:
    proc = bubu("run", "--stream", "--verbose", str(ECHO), stdin='{"text": "hi"}\n')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == "hi"
    assert proc.stderr.strip(), "the SDK's lifecycle logs are shown"


def test_impulse_run_prints_each_trigger_and_decision(impulses: Path) -> None:
    proc = bubu("run", f"{impulses}:Twice", env={"BUBU_TARGET_STORY_NAME": "deploy"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    triggers = [line for line in lines if line.startswith("trigger")]
    decisions = [line for line in lines if line.startswith("decision")]
    # The repeated token is one StoryTrigger; the tokenless call is another.
    assert len(triggers) == 2, proc.stdout
    assert "story=deploy" in triggers[0] and 'inputs={"n": 1}' in triggers[0]
    assert len(decisions) == 2 and all(" Created storyRun=" in d for d in decisions), proc.stdout
    assert "\x1b[" not in proc.stdout
    assert "2 trigger(s), 2 StoryRun(s) created" in proc.stderr


def test_impulse_run_stops_at_timeout(impulses: Path) -> None:
    proc = bubu("run", f"{impulses}:Forever", "--timeout", "0.5s")
    assert proc.returncode == 0, proc.stderr
    assert "impulse ended: 0 trigger(s)" in proc.stderr


def test_impulse_run_reports_a_failing_init(impulses: Path) -> None:
    proc = bubu("run", f"{impulses}:Broken")
    assert proc.returncode == 1
    assert "ended before run started" in proc.stderr


@pytest.mark.parametrize(
    ("option", "says"),
    [(["--inputs", "{}"], "an impulse has no inputs"), (["--stream"], "drop --stream")],
)
def test_impulse_run_refuses_what_it_cannot_honour(
    impulses: Path, option: list[str], says: str
) -> None:
    proc = bubu("run", f"{impulses}:Twice", *option)
    assert proc.returncode == 2
    assert says in proc.stderr


def test_impulse_run_is_coloured_on_request(impulses: Path) -> None:
    proc = bubu("run", f"{impulses}:Twice", env={"FORCE_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[1;34mtrigger\x1b[0m" in proc.stdout
