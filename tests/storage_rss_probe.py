"""Measure the RSS a 64 MiB payload costs in the storage layer (run in a fresh process).

``python tests/storage_rss_probe.py`` with the ``BUBU_STORAGE_*`` environment of a file or s3
store prints JSON: for each operation, the object size and the peak RSS above the RSS just
before the operation (``/proc/self/clear_refs`` resets the peak). Used by the RSS tests.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys

SIZE = 64 * 1024 * 1024


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _reset_peak() -> int:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


async def main() -> dict[str, dict[str, int]]:
    from bubu._runtime.env import load_env
    from bubu._storage.manager import StorageManager

    m = StorageManager.from_env(load_env())
    out: dict[str, dict[str, int]] = {}
    # warm up the code paths (imports, thread pool, connection pool) before measuring
    ref = await m.dehydrate({"warm": "w" * (2 << 20)}, "ns/rss-warm")
    await m.hydrate(ref)

    text = "0123456789abcdef" * (SIZE // 16)
    base = _reset_peak()
    ref = await m.dehydrate({"big": text}, "ns/rss")
    out["dehydrate_string"] = {"size": SIZE, "cost": _status("VmHWM") - base}
    del text
    base = _reset_peak()
    hydrated = await m.hydrate(ref)
    out["hydrate_string"] = {"size": SIZE, "cost": _status("VmHWM") - base}
    assert len(hydrated["big"]) == SIZE
    del hydrated

    blob = b"\xa5" * SIZE
    base = _reset_peak()
    await m.write_blob("rss/blob.bin", blob)
    out["write_blob"] = {"size": SIZE, "cost": _status("VmHWM") - base}
    del blob
    base = _reset_peak()
    total = 0
    async for chunk in m.open_blob("rss/blob.bin"):
        total += len(chunk)
    out["open_blob"] = {"size": SIZE, "cost": _status("VmHWM") - base}
    assert total == SIZE
    await m.aclose()
    return out


if __name__ == "__main__":
    json.dump(asyncio.run(main()), sys.stdout)
    sys.stdout.flush()
    # Skip interpreter finalization: obstore (0.12.1) finishes an awaited call on a tokio thread
    # that wakes the event loop through its self-pipe, and a thread descheduled there (a loaded
    # machine) takes the GIL back only once Py_Finalize has begun; CPython 3.11 then ends it
    # with pthread_exit, which aborts through the Rust frames (SIGABRT after a complete run).
    os._exit(0)
