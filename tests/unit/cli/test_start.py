"""bubu.run (process owner, exit codes, two-stage signals) and bubu.start (mode dispatch)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import bubu
from bubu import _start
from bubu._aio import shutdown as _shutdown
from bubu._runtime.sources import MappingSource


def test_run_exits_with_returned_code() -> None:
    async def main() -> int:
        return 3

    with pytest.raises(SystemExit) as info:
        bubu.run(main())
    assert info.value.code == 3


def test_run_accepts_factory_and_none_is_0() -> None:
    async def main() -> None:
        assert _shutdown.current() is not None  # the entry point finds the process Shutdown

    with pytest.raises(SystemExit) as info:
        bubu.run(main)
    assert info.value.code == 0


def test_run_unhandled_exception_is_1(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        raise RuntimeError("bad")

    with pytest.raises(SystemExit) as info:
        bubu.run(main())
    assert info.value.code == 1
    assert "unhandled error" in caplog.text


@pytest.mark.parametrize("mode", ["", "batch", "JOB ", "Batch"])
async def test_start_dispatches_batch_modes(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    async def fake_batch(engram: Any, **kw: Any) -> int:
        seen.append(engram)
        return 7

    import bubu._batch

    monkeypatch.setattr(bubu._batch, "start_batch", fake_batch)
    code = await _start.start("E", source=MappingSource({"BUBU_EXECUTION_MODE": mode}))
    assert code == 7 and seen == ["E"]


@pytest.mark.parametrize("mode", ["streaming", "hybrid", "realtime"])
async def test_start_dispatches_other_modes_to_streaming(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fake_stream(engram: Any, **kw: Any) -> int:
        return 5

    import bubu._streaming

    monkeypatch.setattr(bubu._streaming, "start_streaming", fake_stream)
    code = await _start.start("E", source=MappingSource({"BUBU_EXECUTION_MODE": mode}))
    assert code == 5


def test_execution_mode_default() -> None:
    assert _start.execution_mode(MappingSource({})) == "batch"


SCRIPT = textwrap.dedent("""
    import asyncio, bubu
    from bubu._aio import shutdown

    async def main():
        sd = shutdown.current()
        print("READY", flush=True)
        reason = await sd.wait()
        print("STOP", reason, flush=True)
        await asyncio.sleep(30)   # ignores the graceful request: the 2nd signal cancels
        return 0

    bubu.run(main())
""")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_second_signal_cancels_main_task(sig: signal.Signals, code: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(sig)
    # First signal: a graceful request the entry point sees, nothing cancelled yet. The
    # process owner logs it as a JSON line on stdout (the start-up's logging, as Go).
    lines = [proc.stdout.readline().strip() for _ in range(2)]
    assert f"STOP {sig.name}" in lines
    assert any(json.loads(x)["msg"].startswith("stop requested") for x in lines if x[:1] == "{")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err


GRACEFUL = textwrap.dedent("""
    import bubu
    from bubu._aio import shutdown

    async def main():
        print("READY", flush=True)
        await shutdown.current().wait()
        return 7   # finished its clean-up: this is the exit code

    bubu.run(main())
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_lets_the_entry_point_choose_the_exit_code(sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", GRACEFUL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 7, err


async def test_shutdown_request_is_idempotent() -> None:
    sd = _shutdown.Shutdown(grace=1)
    seen: list[str] = []
    sd.add_callback(seen.append)
    assert sd.request("SIGTERM") is True
    assert sd.request("SIGINT") is False
    assert sd.reason == "SIGTERM" and seen == ["SIGTERM"]
    assert await asyncio.wait_for(sd.wait(), 1) == "SIGTERM"
    assert sd.deadline() is not None


async def test_signal_handlers_refuse_other_threads() -> None:
    sd = _shutdown.Shutdown()
    task = asyncio.current_task()
    assert task is not None

    def install() -> None:
        _shutdown.install_signal_handlers(sd, task)

    with pytest.raises(RuntimeError, match="main thread"):
        await asyncio.to_thread(install)
