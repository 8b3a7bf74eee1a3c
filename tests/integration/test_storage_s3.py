"""The s3 provider against a real S3 server (SeaweedFS on loopback) and against Go.

Round trips, interop with the operator's Go storage package on the same bucket, metadata
(content type, SSE), refused credentials, a store that stops answering, a store killed
mid-upload, and no multipart upload left behind after a failure or a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._storage.manager import StorageManager, namespaced_key
from bubu._storage.s3 import S3Store
from bubu._storage.store import WriteMeta
from bubu.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from tests._controlplane.s3 import READER_ACCESS_KEY, READER_SECRET_KEY, S3Server

pytestmark = pytest.mark.interop

obstore = pytest.importorskip("obstore", reason="the s3 provider needs the bubu[s3] extra")


def manager_for(server: S3Server, **env: str) -> StorageManager:
    return StorageManager.from_env(load_env(MappingSource(server.env(**env))))


async def list_uploads(server: S3Server, bucket: str | None = None) -> list[str]:
    """Incomplete multipart uploads, through the S3 API (signed with botocore-free SigV4)."""
    return await asyncio.to_thread(_list_uploads_sync, server, bucket or server.bucket)


def _list_uploads_sync(server: S3Server, bucket: str) -> list[str]:
    # `weed shell s3.clean.uploads` lists them without a client library.
    out = subprocess.run(
        [server.weed, "shell", f"-master={server.master_address}"],
        input=f"fs.ls /buckets/{bucket}/.uploads\n".encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    text = out.stdout.decode(errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(">")]


async def test_round_trip_and_metadata(s3_server: S3Server) -> None:
    m = manager_for(s3_server, BUBU_MAX_INLINE_SIZE="64")
    data = {"doc": "é" * 500 + "<&>", "rows": [{"i": i, "v": "x" * 70} for i in range(5)], "n": 1.5}
    out = await m.dehydrate(data, namespaced_key("ns", "s3-rt"), schema="bubu://engram/ns/e/output")
    assert out["doc"]["$bubuStorageRef"] == "outputs/ns/s3-rt/doc.json"
    assert out["doc"]["$bubuStorageSchema"] == "bubu://engram/ns/e/output"
    assert await m.hydrate({"in": out}) == {"in": data}
    store = m.store
    assert isinstance(store, S3Store)
    head = await obstore.head_async(store._store, "outputs/ns/s3-rt/doc.json")
    got = await obstore.get_async(store._store, "outputs/ns/s3-rt/doc.json")
    assert got.attributes.get("Content-Type") == "application/json"
    assert head["size"] == len(await got.bytes_async())
    await m.write_blob("blobs/a.bin", b"\x00" * 10, "application/x-test")
    assert await m.list("blobs") == ["blobs/a.bin"]
    assert await m.read_blob("blobs/a.bin") == b"\x00" * 10
    await m.delete("blobs/a.bin")
    with pytest.raises(StorageNotFoundError) as info:
        await m.read_blob("blobs/a.bin")
    assert info.value.ref == "blobs/a.bin"


async def test_large_object_goes_multipart_and_back(s3_server: S3Server) -> None:
    m = manager_for(s3_server, BUBU_MAX_INLINE_SIZE="1024", BUBU_S3_MAX_PART_SIZE=str(5 << 20))
    before = await list_uploads(s3_server)
    text = "0123456789abcdef\n" * ((12 << 20) // 17)
    out = await m.dehydrate({"big": text}, "ns/multipart")
    assert (await m.hydrate(out))["big"] == text
    assert await list_uploads(s3_server) == before


def test_64_mib_costs_at_most_twice_its_size_on_s3(s3_server: S3Server) -> None:
    from tests.unit.storage.test_rss import run_probe

    result = run_probe(s3_server.env(BUBU_S3_MAX_PART_SIZE=str(8 << 20)))
    for op, m in result.items():
        assert m["cost"] <= 2 * m["size"], (op, m)


def _go(interop_bin: Path, op: str, env: dict[str, str], body: dict[str, Any]) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "AWS_"))}
    proc = subprocess.run(
        [str(interop_bin / "storage"), op],
        input=json.dumps(body).encode(),
        capture_output=True,
        timeout=120,
        check=False,
        env={**clean, **env},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


async def test_python_and_go_read_each_others_objects(
    s3_server: S3Server, interop_bin: Path
) -> None:
    env = s3_server.env(BUBU_MAX_INLINE_SIZE="100")
    data = {"text": "t" * 300, "list": list(range(80)), "nested": {"k": "v" * 150}}
    go_refs = _go(interop_bin, "dehydrate", env, {"data": data, "id": "ns/from-go"})
    m = manager_for(s3_server, BUBU_MAX_INLINE_SIZE="100")
    py_refs = await m.dehydrate(data, "ns/from-py")
    # the same decisions and paths (modulo the id), read across languages
    assert json.dumps(go_refs, sort_keys=True).replace("from-go", "X") == json.dumps(
        py_refs, sort_keys=True
    ).replace("from-py", "X")
    assert await m.hydrate(go_refs) == data
    assert _go(interop_bin, "hydrate", env, {"data": py_refs}) == data
    # stored bytes identical
    store = m.store
    assert isinstance(store, S3Store)
    for name in ("text", "list", "nested.k"):
        a = await (
            await obstore.get_async(store._store, f"outputs/ns/from-go/{name}.json")
        ).bytes_async()
        b = await (
            await obstore.get_async(store._store, f"outputs/ns/from-py/{name}.json")
        ).bytes_async()
        assert bytes(a) == bytes(b)


async def test_refused_credentials_are_typed_and_keep_the_secret_out(s3_server: S3Server) -> None:
    m = manager_for(
        s3_server, BUBU_S3_SECRET_ACCESS_KEY="not-the-secret-xyz", BUBU_S3_MAX_RETRIES="1"
    )
    with pytest.raises(StorageAccessError) as info:
        await m.write_blob("x/denied.bin", b"data")
    assert "not-the-secret-xyz" not in str(info.value)
    assert s3_server.secret_key not in str(info.value)
    reader = manager_for(
        s3_server,
        BUBU_S3_ACCESS_KEY_ID=READER_ACCESS_KEY,
        BUBU_S3_SECRET_ACCESS_KEY=READER_SECRET_KEY,
        BUBU_S3_MAX_RETRIES="1",
    )
    with pytest.raises(StorageAccessError):
        await reader.dehydrate({"a": "x" * 2000}, "ns/reader")
    assert READER_SECRET_KEY not in repr(reader.store)


async def test_anonymous_requests_are_refused(s3_server: S3Server) -> None:
    env = {k: v for k, v in s3_server.env().items() if not k.startswith("BUBU_S3_")}
    env["BUBU_S3_MAX_RETRIES"] = "1"
    config = load_env(MappingSource(env))
    assert config.storage is not None and config.storage.s3 is not None
    assert config.storage.s3.anonymous
    with pytest.raises(StorageAccessError):
        await StorageManager.from_env(config).read_blob("anything.bin")


async def test_aws_chain_credentials_are_used_with_a_custom_endpoint(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator injects AWS_* from the storage secret; Go would sign nothing here.
    env = {k: v for k, v in s3_server.env().items() if not k.startswith("BUBU_S3_")}
    env["AWS_ACCESS_KEY_ID"] = s3_server.access_key
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    config = load_env(MappingSource(env))
    assert config.storage is not None and config.storage.s3 is not None
    assert not config.storage.s3.anonymous
    m = StorageManager.from_env(config)
    await m.write_blob("chain/ok.bin", b"signed by the default chain")
    assert await m.read_blob("chain/ok.bin") == b"signed by the default chain"


async def test_sse_header_is_sent(s3_server: S3Server) -> None:
    m = manager_for(s3_server, BUBU_S3_SSE="aes256")
    await m.write_blob("sse/a.bin", b"encrypted at rest")
    assert await m.read_blob("sse/a.bin") == b"encrypted at rest"


async def test_a_store_that_stops_answering_times_out(s3_server_factory: Any) -> None:
    server: S3Server = s3_server_factory()
    m = manager_for(server, BUBU_STORAGE_TIMEOUT="1500ms", BUBU_S3_MAX_RETRIES="1")
    await m.write_blob("t/a.bin", b"x")
    os.killpg(server.proc.pid, signal.SIGSTOP)  # the socket accepts, nothing answers
    # Delivery is asynchronous: wait until every thread of the server is stopped.
    status = Path(f"/proc/{server.proc.pid}/status")
    async with asyncio.timeout(30):
        while "T (stopped)" not in status.read_text():  # noqa: ASYNC240, ASYNC110 - /proc
            await asyncio.sleep(0.01)
    try:
        with pytest.raises(StorageTimeoutError) as info:
            await m.read_blob("t/a.bin")
        assert info.value.retryable
    finally:
        os.killpg(server.proc.pid, signal.SIGCONT)


async def test_store_killed_mid_upload(s3_server_factory: Any) -> None:
    server: S3Server = s3_server_factory()
    m = manager_for(server, BUBU_S3_MAX_RETRIES="1", BUBU_STORAGE_TIMEOUT="20s")
    sent = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for i in range(40):
            if i == 3:
                sent.set()
                await asyncio.sleep(0.5)
            yield b"z" * (1 << 20)

    task = asyncio.create_task(m.write_blob("kill/big.bin", body()))
    await sent.wait()
    server.kill()
    with pytest.raises(StorageError) as info:
        await task
    assert isinstance(info.value, StorageUnavailableError | StorageTimeoutError)


async def test_failed_and_cancelled_uploads_are_aborted(s3_server: S3Server) -> None:
    m = manager_for(s3_server, BUBU_S3_MAX_PART_SIZE=str(5 << 20))
    store = m.store
    assert isinstance(store, S3Store)
    before = await list_uploads(s3_server)

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"f" * (4 << 20)
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        await store.write("abort/failed.bin", failing(), WriteMeta("x", -1))

    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"c" * (4 << 20)
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.write("abort/cancelled.bin", stalled(), WriteMeta("x", -1)))
    await started.wait()
    await asyncio.sleep(0.5)  # parts are uploading
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for name in ("failed", "cancelled"):
        with pytest.raises(StorageNotFoundError):
            await m.read_blob(f"abort/{name}.bin")
    assert await list_uploads(s3_server) == before

    # Control: the probe does see an upload left behind (obstore alone, cancelled).
    started.clear()
    raw = asyncio.ensure_future(
        obstore.put_async(store._store, "abort/orphan.bin", stalled(), chunk_size=5 << 20)
    )
    await started.wait()
    await asyncio.sleep(0.5)
    raw.cancel()
    with pytest.raises(asyncio.CancelledError):
        await raw
    assert len(await list_uploads(s3_server)) == len(before) + 1
