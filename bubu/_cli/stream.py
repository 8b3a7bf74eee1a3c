"""``bubu run --stream``: run a streaming engram locally on JSON lines.

Each line on stdin is a JSON object, sent to the engram as a JSON message; each message the
engram publishes is printed on stdout as one JSON line (its payload when that is JSON, else a
small description with the bytes in base64). The engram runs through the production runtime
(``start_streaming``: binding, handshake, validation, receipts, reconnects) against an
in-process :class:`~bubu.testkit._connector.LocalConnector` over loopback gRPC. At end of input
the CLI waits until every input was ``done()``, then drains the engram like a SIGTERM would.
Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
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


def run_stream(args: argparse.Namespace, values: dict[str, str], engram: Any) -> int:
    """Run ``engram`` over stdin lines; return the exit code.

    Args:
        args: the parsed ``bubu run`` arguments (``--verbose``/``--debug`` are honoured).
        values: the engram's environment (config, secrets) built by the CLI.
        engram: the streaming engram instance.
    """
    if not args.verbose and not args.debug:
        logging.getLogger("bubu").setLevel(logging.ERROR)
    return asyncio.run(_main(values, engram))


async def _main(values: dict[str, str], engram: Any) -> int:
    from bubu._aio.shutdown import Shutdown, install_signal_handlers
    from bubu._runtime.messages import StreamMessage
    from bubu._runtime.sources import MappingSource
    from bubu._streaming import start_streaming
    from bubu.errors import BubuError
    from bubu.testkit._connector import LocalConnector

    shutdown = Shutdown()
    task = asyncio.current_task()
    assert task is not None
    remove = install_signal_handlers(shutdown, task)
    loop = asyncio.get_running_loop()
    try:
        async with LocalConnector() as conn:
            env = {**values, **conn.binding_env()}
            runner = asyncio.create_task(
                start_streaming(engram, source=MappingSource(env), shutdown=shutdown),
                name="bubu.cli.stream",
            )

            async def printer() -> None:
                while True:
                    message = await conn.outputs.get()
                    print(describe_output(message), flush=True)

            printing = asyncio.create_task(printer(), name="bubu.cli.print")
            sent = 0
            code = 0
            while not runner.done() and not shutdown.requested:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    message = StreamMessage.json(data)
                except (ValueError, BubuError) as exc:  # reported, then skipped
                    print(f"bubu: input line {sent + 1}: {exc}", file=sys.stderr)
                    code = 1
                    continue
                await conn.send(message)
                sent += 1
            # End of input: let every input be processed (receipted), then drain.
            waiting = asyncio.create_task(
                conn.wait_until(lambda: conn.stats.sent >= sent and not conn.unacked, timeout=3600)
            )
            await asyncio.wait({waiting, runner}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            shutdown.request("end of input")
            result = await runner
            await asyncio.sleep(0)  # let the last outputs reach the queue
            while not conn.outputs.empty():
                print(describe_output(conn.outputs.get_nowait()), flush=True)
            printing.cancel()
            return code or int(result or 0)
    except Exception as exc:
        print(f"bubu: stream failed: {exc}", file=sys.stderr)
        return 1
    finally:
        remove()
