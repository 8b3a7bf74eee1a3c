"""The pytest plugin in a user's project: a fresh directory with no pytest configuration, run by
pytest in a subprocess, as an engram author would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

COMPONENTS = textwrap.dedent("""
    from collections.abc import AsyncIterator

    import msgspec

    import bubu


    class Inputs(msgspec.Struct):
        name: str


    class Hello(bubu.BatchEngram[dict, Inputs]):
        async def process(self, ctx, inputs):
            return bubu.Result({"greeting": f"Hello, {inputs.name}!"})


    class Echo(bubu.StreamingEngram[dict]):
        async def stream(self, inbound) -> AsyncIterator[bubu.StreamMessage]:
            async for msg in inbound:
                async with msg:
                    yield bubu.StreamMessage.json({"echo": msg.json_data()})


    class Once(bubu.Impulse[dict]):
        async def run(self, client):
            await bubu.start_story_with_token("story", token="evt-1", inputs={"n": 1})
""")

TESTS = textwrap.dedent("""
    import asyncio
    import os

    import pytest

    import bubu
    from components import Echo, Hello, Once


    @pytest.fixture
    async def loop_name():
        # a plain async fixture, no pytest_asyncio import and no marker
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__name__


    async def test_async_fixture_and_test_without_marker(loop_name):
        assert "EventLoop" in loop_name


    async def test_batch(bubu_batch_harness):
        result = await bubu_batch_harness(engram=Hello(), inputs={"name": "Ada"}).run()
        assert result.data == {"greeting": "Hello, Ada!"}


    async def test_stream(bubu_stream_harness):
        harness = bubu_stream_harness(engram=Echo(), inputs=[bubu.StreamMessage.json({"a": 1})])
        outputs = await harness.run()
        assert [m.json_data() for m in outputs] == [{"echo": {"a": 1}}]
        assert harness.done_count == 1


    async def test_impulse(bubu_impulse_harness, bubu_fake_cluster):
        harness = bubu_impulse_harness(impulse=Once(), cluster=bubu_fake_cluster)
        assert await harness.run() == 0
        assert [d[1] for d in harness.decisions] == ["Created"]
        assert len(harness.story_runs) == 1


    async def test_impulse_left_running_is_stopped(bubu_impulse_harness):
        class Forever(bubu.Impulse[dict]):
            async def run(self, client):
                await asyncio.Event().wait()

        harness = bubu_impulse_harness(impulse=Forever())
        await harness.start()
        assert harness.running  # the fixture stops it at teardown


    async def test_local_connector(bubu_local_connector):
        env = bubu_local_connector.binding_env()
        assert "BUBU_TRANSPORT_BINDING" in env


    def test_env(bubu_env):
        bubu_env(step_timeout="5s")
        assert os.environ["BUBU_STEP_TIMEOUT"] == "5s"
""")


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BUBU_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "components.py").write_text(COMPONENTS)
    (tmp_path / "test_components.py").write_text(TESTS)
    return tmp_path


def test_fixtures_and_async_tests_work_without_configuration(project: Path) -> None:
    # -W error: any warning (pytest-asyncio's "loop scope is unset" deprecation included) fails.
    proc = run_pytest(project, "-W", "error", "-rA")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "7 passed" in out, out
    assert "warning" not in out.lower(), out
    assert "mode=Mode.AUTO" in out and "asyncio_default_fixture_loop_scope=function" in out, out


def test_an_explicit_asyncio_setting_wins(project: Path) -> None:
    (project / "pytest.ini").write_text("[pytest]\nasyncio_mode = strict\n")
    proc = run_pytest(project, "test_components.py::test_env")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "mode=Mode.STRICT" in out, out


def test_without_pytest_asyncio_an_async_test_names_the_extra(project: Path) -> None:
    proc = run_pytest(project, "-p", "no:asyncio", "test_components.py::test_batch")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert 'pip install "bubu[testing]"' in out, out
