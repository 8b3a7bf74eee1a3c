"""The least a Python engram on this design does before its handshake (``bench_spawn.py``).

No SDK: the interpreter, ``import asyncio, grpclib.client``, then the two calls the connector
counts as the handshake (Data, then Control, each with the protocol header, request headers
sent), as ``benchmarks/_echo_engram.py`` does through bubu. It exchanges no message. What bubu's
engram spends on top of this is the SDK's share of spawn-to-handshake; this program's own time
is what no Python SDK on asyncio and grpclib can avoid.

It prints ``marks <script start> <asyncio imported> <grpclib.client imported>`` (``time.time_ns``,
the clock the benchmark takes the spawn time from) once both calls are open, then waits to be
killed.
"""

import time

STARTED = time.time_ns()

import asyncio  # noqa: E402

ASYNCIO = time.time_ns()

import grpclib.client  # noqa: E402

IMPORTED = time.time_ns()

import json  # noqa: E402  (the binding is JSON: any SDK parses it)
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from grpclib.const import Cardinality  # noqa: E402
from grpclib.encoding.base import CodecBase  # noqa: E402

SERVICE = "/transport.v1.TransportConnectorService/"


class RawCodec(CodecBase):
    """Bytes in, bytes out: nothing is sent or read, so no protobuf is needed."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


async def main() -> None:
    envelope = json.loads(os.environ["BUBU_TRANSPORT_BINDING"])
    host, _, port = envelope["binding"]["endpoint"].rpartition(":")
    headers = {"bubu-transport-protocol": envelope["binding"]["protocolVersion"]}
    reference = f"{envelope['namespace']}/{envelope['name']}"
    channel = grpclib.client.Channel(host, int(port), codec=RawCodec())
    data = channel.request(
        SERVICE + "Data", Cardinality.STREAM_STREAM, bytes, bytes, metadata=headers
    )
    control = channel.request(
        SERVICE + "Control",
        Cardinality.STREAM_STREAM,
        bytes,
        bytes,
        metadata={**headers, "bubu.transport.binding": reference},
    )
    async with data, control:
        await data.send_request()
        await control.send_request()
        sys.stdout.write(f"marks {STARTED} {ASYNCIO} {IMPORTED}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()  # until the benchmark kills it


if __name__ == "__main__":
    asyncio.run(main())
