"""``bubu run --stream``: run a streaming engram locally on JSON lines.

Each line on stdin is a JSON object, sent to the engram as a JSON message; each message the
engram publishes is printed on stdout as one JSON line (its payload when that is JSON, else a
small description with the bytes in base64). The engram runs through the production runtime
(``start_streaming``: binding, handshake, validation, receipts) against an in-process
:class:`~bubu.testkit._connector.LocalConnector` over loopback gRPC, inside the same start-up as
a pod (``bubu._startup.run_process``: JSON logs on stderr, secrets masked everywhere).

Local runs tell the truth fast (docs/architecture.md "Local runs"):

* an engram that raises is reported at once, with the input line and the error, and the next
  lines are processed (in a pod the connector redelivers instead; see
  ``bubu._streaming.supervise``);
* a bad line (not UTF-8, not JSON, over the message size limit) is reported with its real line
  number and skipped; exit code 1 at the end;
* stdin is read by a daemon thread from the file descriptor, so Ctrl-C stops the run at once
  (exit 130) even while it waits for input, and a second Ctrl-C ends it without a traceback.

At end of input the CLI waits until every input was ``done()``, then drains the engram like a
SIGTERM would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import threading
from typing import Any

__all__ = ["describe_output", "run_stream"]


def describe_output(message: Any) -> str:
    """Render a published ``StreamMessage`` as one JSON line."""
    if message.payload:
        try:
            data = json.loads(message.payload)
        except ValueError:
            data = None
        else:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    doc: dict[str, Any] = {}
    if message.kind:
        doc["kind"] = message.kind
    if message.metadata:
        doc["metadata"] = dict(message.metadata)
    frame = message.binary or message.audio or message.video
    if message.binary is not None:
        doc["mime_type"] = message.binary.mime_type
    if message.audio is not None:
        doc["audio"] = {
            "sample_rate_hz": message.audio.sample_rate_hz,
            "channels": message.audio.channels,
            "codec": message.audio.codec,
        }
    if message.video is not None:
        doc["video"] = {"codec": message.video.codec, "raw": message.video.raw}
    if frame is not None:
        raw: Any = getattr(frame, "payload", None) or getattr(frame, "pcm", b"")
        doc["base64"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class _LineReader:
    """Lines of a file descriptor, read by a daemon thread, handed to the event loop.

    Reading the descriptor (not ``sys.stdin``) matters twice: a thread blocked in
    ``sys.stdin.readline`` holds the buffer's lock, which can abort the interpreter's exit, and
    an executor thread blocked on input keeps ``asyncio.run`` from returning until stdin closes.
    Lines are bytes: each is decoded by the caller, so one bad line is reported on its own.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(64)
        self._thread = threading.Thread(target=self._run, name="bubu-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _put(self, item: bytes | None) -> bool:
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
            future.result()
        except Exception:  # the loop is gone: the run is over
            return False
        return True

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    self._put(pending)
                self._put(None)
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not self._put(line):
                    return

    async def get(self) -> bytes | None:
        """The next line (without its newline), or None at end of input."""
        return await self._queue.get()


def run_stream(args: argparse.Namespace, values: dict[str, str], engram: Any) -> int:
    """Run ``engram`` over stdin lines; return the exit code.

    Args:
        args: the parsed ``bubu run`` arguments (``--verbose``/``--debug`` are honoured).
        values: the engram's environment (config, secrets) built by the CLI.
        engram: the streaming engram instance.
    """
    from bubu._cli import keep_engram_logs
    from bubu._startup import run_process

    keep_engram_logs(args)
    quiet = not args.verbose and not args.debug
    secret_values = [v for k, v in values.items() if k.startswith("BUBU_SECRET_")]
    return run_process(
        lambda: _main(values, engram),
        debug=bool(args.debug),
        log_stream=sys.stderr,
        secret_values=secret_values,
        log_level=logging.ERROR if quiet else None,
    )


_ENVELOPE_ROOM = 64


def _say(message: str) -> None:
    # sys.stderr is the masked stream while the run is active.
    print(f"bubu: {message}", file=sys.stderr, flush=True)


def _lines_of(held: list[Any], lines_by_sequence: dict[int, int]) -> list[int]:
    lines = set()
    for message in held:
        envelope = message.envelope
        line = lines_by_sequence.get(envelope.sequence) if envelope is not None else None
        if line is not None:
            lines.add(line)
    return sorted(lines)


async def _first(*aws: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    done, _ = await asyncio.wait(set(aws), return_when=asyncio.FIRST_COMPLETED)
    return done


async def _main(values: dict[str, str], engram: Any) -> int:
    from bubu._aio import shutdown as _shutdown
    from bubu._runtime.binding import EnvResolver
    from bubu._runtime.messages import StreamMessage
    from bubu._runtime.sources import MappingSource
    from bubu._runtime.transport import CLIENT_MAX_RECV_BYTES, resolve_settings
    from bubu._startup import SIGNAL_EXIT
    from bubu._streaming import start_streaming
    from bubu._transport import codec
    from bubu.errors import BubuError
    from bubu.testkit._connector import LocalConnector

    shutdown = _shutdown.current() or _shutdown.Shutdown()
    loop = asyncio.get_running_loop()
    limit = resolve_settings(EnvResolver({}, MappingSource(values))).max_recv_bytes
    lines_by_sequence: dict[int, int] = {}
    failed = False

    def on_engram_error(exc: BaseException, held: list[Any]) -> None:
        nonlocal failed
        failed = True
        lines = _lines_of(held, lines_by_sequence)
        where = "input line" + ("s " if len(lines) > 1 else " ") + ", ".join(map(str, lines))
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        _say(f"{where if lines else 'stream'}: engram failed: {text}")

    stop_wait = asyncio.ensure_future(shutdown.wait())
    try:
        async with LocalConnector() as conn:
            env = {**values, **conn.binding_env()}
            runner = asyncio.ensure_future(
                start_streaming(
                    engram,
                    source=MappingSource(env),
                    shutdown=shutdown,
                    on_engram_error=on_engram_error,
                )
            )

            async def printer() -> None:
                while True:
                    message = await conn.outputs.get()
                    print(describe_output(message), flush=True)

            printing = asyncio.ensure_future(printer())
            reader = _LineReader(sys.stdin.fileno() if sys.stdin is not None else -1, loop)
            reader.start()
            sent = 0
            lineno = 0
            while not runner.done() and not shutdown.requested:
                get = asyncio.ensure_future(reader.get())
                if get not in await _first(get, stop_wait, runner):
                    get.cancel()
                    break
                raw = get.result()
                if raw is None:
                    break
                lineno += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    failed = True
                    _say(
                        f"input line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                        f"column {exc.start + 1}); skipped"
                    )
                    continue
                if not text.strip():
                    continue
                try:
                    message = StreamMessage.json(json.loads(text))
                except json.JSONDecodeError as exc:
                    failed = True
                    _say(f"input line {lineno}: invalid JSON at column {exc.colno}: {exc.msg}")
                    continue
                except (ValueError, BubuError) as exc:
                    failed = True
                    _say(f"input line {lineno}: {exc}")
                    continue
                size = codec.to_pb_data_response(message).ByteSize()
                # The connector adds the envelope's stream id and sequence (< 64 bytes).
                if size + _ENVELOPE_ROOM > limit:
                    failed = True
                    _say(
                        f"input line {lineno}: message of {size} bytes is over the {limit}-byte "
                        f"limit ({CLIENT_MAX_RECV_BYTES}); skipped"
                    )
                    continue
                send = asyncio.ensure_future(conn.send(message))
                if send not in await _first(send, stop_wait, runner):
                    send.cancel()
                    break
                sent += 1
                lines_by_sequence[sent] = lineno
            if not shutdown.requested and not runner.done():
                # End of input: let every input be processed (receipted), then drain.
                waiting = asyncio.ensure_future(
                    conn.wait_until(
                        lambda: conn.stats.sent >= sent and not conn.unacked, timeout=3600
                    )
                )
                await _first(waiting, runner, stop_wait)
                waiting.cancel()
                shutdown.request("end of input")
            try:
                await runner
            except BubuError as exc:
                _say(f"stream failed: {exc}")
                return 1
            await asyncio.sleep(0)  # let the last outputs reach the queue
            while not conn.outputs.empty():
                print(describe_output(conn.outputs.get_nowait()), flush=True)
            printing.cancel()
    finally:
        stop_wait.cancel()
    if shutdown.reason in SIGNAL_EXIT:
        return SIGNAL_EXIT[shutdown.reason or ""]
    return 1 if failed else 0
