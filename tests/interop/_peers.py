"""Helpers of the live streaming peer tests: the Go connector and Go engrams as processes.

:class:`GoConnector` runs ``tests/interop/cmd/connector`` (the connector and hub written on
tractatus's Go code), sends it commands on stdin and collects the JSON events it prints;
:func:`go_engram` runs a Go SDK engram (``echo``, ``producer``) against a binding. Both are
killed (process group) when the test ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import StreamMessage
from bubu._transport import codec

#: Binding env overrides that make both SDKs reconnect and hand-shake quickly in tests.
FAST_ENV = {
    "BUBU_GRPC_RECONNECT_BASE_BACKOFF": "20ms",
    "BUBU_GRPC_RECONNECT_MAX_BACKOFF": "200ms",
    "BUBU_GRPC_RECONNECT_MAX_RETRIES": "-1",
    "BUBU_GRPC_MESSAGE_TIMEOUT": "5s",
}


class GoConnector:
    """The Go connector process: ``await start()``, commands, events, ``kill()``, ``restart()``.

    Args:
        bin_dir: the directory of the Go peer programs.
        steps: step names; each gets its own loopback listener.
        routes: ``{from: to}``: what step ``from`` publishes is delivered to step ``to``.
        env: binding env overrides (``BindingInfo.payload.env``), merged over :data:`FAST_ENV`.
        args: further connector flags (``--window``, ``--state``, ``--quiet``...).
        launcher: argv put before the program (``["taskset", "-c", "0"]`` for a benchmark).
    """

    def __init__(
        self,
        bin_dir: Path,
        steps: list[str],
        *,
        routes: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        launcher: list[str] | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.launcher = list(launcher or [])
        self.steps = list(steps)
        self.routes = dict(routes or {})
        self.settings = {"env": {**FAST_ENV, **(env or {})}}
        self.args = list(args or [])
        self.events: list[dict[str, Any]] = []
        self.ports: dict[str, int] = {}
        self.bindings: dict[str, str] = {}
        self.generation = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._seq = 0
        self.stderr = b""

    async def start(self) -> None:
        """Start (on the ports of the previous run, if any) and wait until it listens."""
        argv = [str(self.bin_dir / "connector"), "--settings", json.dumps(self.settings)]
        for name in self.steps:
            argv += ["--step", f"{name}=127.0.0.1:{self.ports.get(name, 0)}"]
        for src, dst in self.routes.items():
            argv += ["--route", f"{src}={dst}"]
        self._proc = await asyncio.create_subprocess_exec(
            *self.launcher,
            *argv,
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=64 << 20,
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        listening = await self.wait_event(lambda e: e["ev"] == "listening", after=len(self.events))
        self.generation = listening["generation"]
        for name, info in listening["steps"].items():
            self.ports[name] = int(info["addr"].rsplit(":", 1)[1])
            self.bindings[name] = info["binding"]

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            self.events.append(json.loads(line))
            self._changed.set()
        if proc.stderr is not None:
            self.stderr += await proc.stderr.read()
        self._changed.set()

    def binding_env(self, step: str) -> dict[str, str]:
        """What the operator injects into that step's engram: the binding and the mode."""
        return {"BUBU_TRANSPORT_BINDING": self.bindings[step], "BUBU_EXECUTION_MODE": "streaming"}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], *, after: int = 0, limit: float = 20.0
    ) -> dict[str, Any]:
        """The first event from index ``after`` on that satisfies ``predicate``."""
        async with asyncio.timeout(limit):
            index = after
            while True:
                while index < len(self.events):
                    if predicate(self.events[index]):
                        return self.events[index]
                    index += 1
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"connector exited: {self.stderr.decode()[-2000:]}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(self, predicate: Callable[[], bool], *, limit: float = 20.0) -> None:
        """Wait (on events) until ``predicate()`` holds."""
        async with asyncio.timeout(limit):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def of(self, ev: str, **match: Any) -> list[dict[str, Any]]:
        """Events of type ``ev`` whose fields equal ``match``."""
        return [
            e for e in self.events if e["ev"] == ev and all(e.get(k) == v for k, v in match.items())
        ]

    async def command(self, cmd: str, limit: float = 20.0, **fields: Any) -> dict[str, Any]:
        """Send a command and return its ``done`` event (raises when it reports an error)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._seq += 1
        seq = self._seq
        mark = len(self.events)
        line = json.dumps({"cmd": cmd, "seq": seq, **fields}) + "\n"
        self._proc.stdin.write(line.encode())
        await self._proc.stdin.drain()
        if cmd == "stop":
            return {}
        done = await self.wait_event(
            lambda e: e["ev"] == "done" and e.get("seq") == seq, after=mark, limit=limit
        )
        if done.get("error"):
            raise AssertionError(f"connector {cmd}: {done['error']}")
        return done

    async def send(
        self, step: str, msg: StreamMessage | pb.DataResponse, *, raw: bool = False
    ) -> None:
        """Queue a packet for the step's engram (``raw``: outside the sequence and the log)."""
        packet = msg if isinstance(msg, pb.DataResponse) else codec.to_pb_data_response(msg)
        data = base64.b64encode(packet.SerializeToString()).decode()
        await self.command("send_raw" if raw else "send", step=step, packet=data)

    async def flood(self, step: str, msg: StreamMessage, count: int) -> None:
        """Queue ``count`` copies of one packet with one command (load without stdin per packet)."""
        data = base64.b64encode(codec.to_pb_data_response(msg).SerializeToString()).decode()
        await self.command("flood", step=step, packet=data, value=count)

    async def directive(
        self, step: str, type_: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        await self.command("control", step=step, type=type_, metadata=dict(metadata or {}))

    async def reach(self, step: str, counter: str, value: int, limit: float = 60.0) -> int:
        """Wait until the step's counter (``published``, ``receipts``...) reaches ``value``."""
        try:
            done = await self.command("await", limit=limit, step=step, counter=counter, value=value)
        except TimeoutError:
            stats = await self.stats() if self.running else "connector not running"
            raise AssertionError(
                f"{step}.{counter} did not reach {value} in {limit}s; stats: {stats}"
            ) from None
        return int(done["value"])

    async def stats(self) -> dict[str, Any]:
        return dict((await self.command("stats"))["stats"])

    async def stop(self, limit: float = 15.0) -> int:
        """Graceful stop (the real connector's SIGTERM path); returns the exit code."""
        assert self._proc is not None
        await self.command("stop")
        async with asyncio.timeout(limit):
            code = await self._proc.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def kill(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader

    async def restart(self) -> None:
        """Kill, then start again on the same ports (and the same ``--state``)."""
        await self.kill()
        await self.start()

    async def __aenter__(self) -> GoConnector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()


def decode_published(event: dict[str, Any]) -> pb.DataRequest:
    """The ``DataRequest`` of a ``published`` event (connector run with ``--record``)."""
    return pb.DataRequest.FromString(base64.b64decode(event["packet"]))


@contextlib.asynccontextmanager
async def go_engram(
    bin_dir: Path, program: str, env: Mapping[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run a Go SDK engram with exactly ``env`` (plus PATH/HOME); SIGTERM, then SIGKILL, at exit."""
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / program),
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            **env,
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    log = bytearray()
    proc.log = log  # type: ignore[attr-defined]  # what the engram wrote on stderr so far

    async def drain() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            log.extend(line[-2000:])

    reader = asyncio.create_task(drain())
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class Restarts:
    """What :func:`supervised` saw: each entry is ``(exit code, end of stderr)``."""

    def __init__(self) -> None:
        self.exits: list[tuple[int | None, str]] = []


@contextlib.asynccontextmanager
async def supervised(
    bin_dir: Path, program: str, env: Mapping[str, str]
) -> AsyncIterator[Restarts]:
    """Run a Go engram and start it again whenever it exits, as the kubelet restarts a pod."""
    restarts = Restarts()
    stop = asyncio.Event()

    async def keep() -> None:
        while not stop.is_set():
            async with go_engram(bin_dir, program, env) as proc:
                waiter = asyncio.create_task(proc.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not waiter.done():
                    waiter.cancel()
                    return
                log = bytes(getattr(proc, "log", b""))[-1500:].decode(errors="replace")
                restarts.exits.append((proc.returncode, log))

    task = asyncio.create_task(keep())
    try:
        yield restarts
    finally:
        stop.set()
        await task


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines an ``echo`` wrote with ``INTEROP_RECORD`` (bytes fields decoded)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line being written
        for key in ("payload", "inputs"):
            record[key] = base64.b64decode(record[key]) if record.get(key) else b""
        for frame in ("binary", "audio"):
            if record.get(frame) and record[frame].get("payload"):
                record[frame]["payload"] = base64.b64decode(record[frame]["payload"])
        out.append(record)
    return out
