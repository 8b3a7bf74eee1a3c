"""HTTP/2 flow control with a Go peer: large messages, 64 in flight, nothing stalls.

64 packets of 512 KiB in flight are 32 MiB: more than bubu's connection window (12 MiB) and
its stream window (4 MiB), so the Go connector keeps running out of window and waits for the
WINDOW_UPDATEs bubu sends as it reads; the echoes the other way wait for the connector's. The
fast path (``_fastpath.fast_frames``) returns window in batches instead of per frame; a batch
held back too long would stall the run, and a wrong count would break the receipts' sizes.
CI runs this once more with ``--transport-fast-path=off``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bubu._runtime.messages import StreamMessage
from bubu._transport import codec
from tests.interop._peers import GoConnector
from tests.interop.test_peer_go_connector import Echo, serving

pytestmark = pytest.mark.interop

BIG = 512 * 1024
COUNT = 96


@pytest.mark.parametrize("static_window", [False, True], ids=["bdp-window", "static-64k"])
async def test_window_64_of_large_messages_echo_without_a_stall(
    go_bin: Path, static_window: bool
) -> None:
    body = bytes((i * 131) % 251 for i in range(BIG))
    message = StreamMessage.from_bytes(body, "application/octet-stream")
    packet = base64.b64encode(codec.to_pb_data_response(message).SerializeToString()).decode()
    args = ["--quiet", "--window", "64", *(["--static-window"] if static_window else [])]
    conn = GoConnector(go_bin, ["e"], args=args)
    async with conn:
        async with serving(Echo(), conn.binding_env("e")):
            done = await conn.command("bench", step="e", packet=packet, value=COUNT, limit=120)
            stats = await conn.stats()
    assert done["messages"] == COUNT
    counters = stats["e"]["counters"]
    # Every packet receipted with Go's proto.Size of what it sent: each arrived whole.
    assert counters["receipts"] == counters["acked"] == COUNT
    assert counters["receiptSizeErrors"] == counters["receiptsUnmatched"] == 0
    assert stats["e"]["pending"] == 0
