"""Media blob helpers: Go's path layout, inline limit, references."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from bubu._storage import media
from bubu._storage.manager import StorageManager
from bubu._storage.store import FileStore
from bubu.errors import StorageDisabledError, StorageNotFoundError, StorageRefError


def test_segments_and_paths_follow_go() -> None:
    assert media.sanitize_segment("  Team A/..Run#1..  ") == "team-a-..run-1"  # Go keeps inner dots
    assert media.sanitize_segment("x" * 70) == "x" * 64
    assert media.sanitize_segment(" ") == ""
    when = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    path = media.blob_path(
        namespace="NS",
        story_run="run-1",
        step="",
        scope=["Audio", " "],
        now=when,
        suffix="deadbeef",
    )
    assert path == f"streams/ns/run-1/audio/2026/03/04/{int(when.timestamp())}-123456-deadbeef.bin"


async def test_offload_above_the_limit_and_read_back(tmp_path: Path) -> None:
    m = StorageManager(FileStore(str(tmp_path)))
    assert await media.maybe_offload_blob(m, b"x" * 10, inline_limit=10) is None
    ref = await media.maybe_offload_blob(
        m, b"y" * 11, namespace="ns", inline_limit=10, content_type="audio/wav"
    )
    assert ref is not None and ref.path.startswith("streams/ns/")
    assert msgspec.json.decode(msgspec.json.encode(ref)) == {
        "path": ref.path,
        "contentType": "audio/wav",
        "sizeBytes": 11,
    }
    assert await media.read_blob(m, ref) == b"y" * 11
    # the default limit is the media inline size (48 KiB unless configured)
    assert await media.maybe_offload_blob(m, b"z" * 1000) is None
    with pytest.raises(StorageNotFoundError):
        await media.read_blob(m, media.StorageReference(path="streams/none.bin"))


async def test_disabled_storage_keeps_blobs_inline_and_refuses_reads() -> None:
    off = StorageManager(None)
    assert await media.maybe_offload_blob(off, b"x" * 100_000) is None
    with pytest.raises(StorageDisabledError):
        await media.read_blob(off, media.StorageReference(path="a.bin"))
    with pytest.raises(StorageRefError, match="storage reference missing path"):
        await media.read_blob(off, media.StorageReference(path=" "))
