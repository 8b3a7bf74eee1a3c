"""Log publishing: paths, schema, redaction, allowed files, capture, and the status value."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bubu import _logs, _scope
from bubu._k8s.status import MemoryStatusSink
from bubu._runtime.env import load_env
from bubu._runtime.redact import SecretMask
from bubu._runtime.sources import MappingSource
from bubu._storage import shared
from bubu._storage.manager import StorageManager
from bubu._storage.store import FileStore
from bubu.errors import LogFileError, LogsUnavailableError


def test_log_path_is_gos() -> None:
    assert (
        _logs.log_storage_path("ns", "run 1", "step/a", "sr-1", 1700000000123456789)
        == "ns/logs/run-1/step-a/sr-1/1700000000123456789.log"
    )
    assert _logs.log_storage_path("ns", "", " ..x.. ", "sr", 5) == "ns/logs/x/sr/5.log"
    assert _logs.log_storage_path("", "r", "s", "sr", 5) == ""
    assert _logs.log_storage_path("ns", "r", "s", "", 5) == ""


def test_log_schema_variants() -> None:
    def schema(ns: str, eng: str, story: str, step: str, ev: str, sv: str) -> tuple[str, str]:
        return _logs.log_schema(
            ns, engram=eng, story=story, step=step, engram_version=ev, story_version=sv
        )

    assert schema("ns", "eng", "st", "s", "1.0", "2.0") == ("bubu://engram/ns/eng/logs", "1.0")
    assert schema("ns", "", "st", "s", "", "2.0") == ("bubu://story/ns/st/steps/s/logs", "2.0")
    assert schema("", "", "st", "s", "", "") == ("bubu://story/st/steps/s/logs", "")
    assert schema("ns", "", "", "s", "1", "") == ("", "")


def test_redaction_masks_known_values_and_credential_patterns() -> None:
    payload = (
        b'user=ada password=hunter2 token: abc "api_key": "k-9" Authorization: Bearer xyz '
        b"s3cr3tvalue \xff"
    )
    out = _logs.redact_log_payload(payload, ["s3cr3tvalue"])
    for leaked in (b"hunter2", b"abc", b"k-9", b"xyz", b"s3cr3tvalue"):
        assert leaked not in out
    assert out.endswith(b"\xff")  # non-UTF-8 bytes survive
    assert b"user=ada" in out


def make_publisher(tmp_path: Path, **kw: object) -> tuple[_logs.LogPublisher, MemoryStatusSink]:
    sink = MemoryStatusSink()
    pub = _logs.LogPublisher(
        manager=StorageManager(FileStore(str(tmp_path / "store"))),
        sink=sink,
        step_run="sr-1",
        namespace="ns",
        story_run="run-1",
        step="fetch",
        engram="fetcher",
        engram_version="0.3.0",
        secret_values=("hunter2",),
        clock=lambda: 42,
        **kw,  # type: ignore[arg-type]
    )
    return pub, sink


async def test_publish_writes_the_blob_then_the_status(tmp_path: Path) -> None:
    pub, sink = make_publisher(tmp_path)
    ref = await pub.publish("starting\npassword=hunter2\n")
    assert ref == {
        "$bubuStorageRef": "ns/logs/run-1/fetch/sr-1/42.log",
        "$bubuStorageContentType": "text/plain; charset=utf-8",
        "$bubuStorageSchema": "bubu://engram/ns/fetcher/logs",
        "$bubuStorageSchemaVersion": "0.3.0",
    }
    assert sink.status["logs"] == ref
    stored = (tmp_path / "store" / "ns/logs/run-1/fetch/sr-1/42.log").read_bytes()
    assert stored == b"starting\npassword=[REDACTED]\n"
    assert await pub.publish(b"") is None  # empty is a no-op


async def test_logs_unavailable_without_steprun_or_storage(tmp_path: Path) -> None:
    pub, _ = make_publisher(tmp_path)
    pub.step_run = ""
    with pytest.raises(LogsUnavailableError):
        await pub.publish("x")
    pub.step_run = "sr"
    pub.manager = StorageManager(None)
    with pytest.raises(LogsUnavailableError):
        await pub.publish("x")


async def test_log_files_must_be_regular_inside_a_root_and_small(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    ok = root / "app.log"
    ok.write_text("line\n")
    pub, sink = make_publisher(tmp_path, allowed_roots=(str(root),), file_max_bytes=10)
    ref = await pub.publish_file(str(ok), "text/x-log")
    assert ref is not None and ref["$bubuStorageContentType"] == "text/x-log"
    outside = tmp_path / "outside.log"
    outside.write_text("x")
    with pytest.raises(
        LogFileError, match=r'log file path ".*outside.log" is outside allowed roots'
    ):
        await pub.publish_file(str(outside))
    link = root / "link.log"
    link.symlink_to(outside)
    with pytest.raises(LogFileError, match="outside allowed roots"):
        await pub.publish_file(str(link))
    with pytest.raises(LogFileError, match="must reference a regular file"):
        await pub.publish_file(str(root))
    big = root / "big.log"
    big.write_text("x" * 11)
    with pytest.raises(LogFileError, match=r"log file exceeds max bytes \(11 > 10\)"):
        await pub.publish_file(str(big))
    with pytest.raises(LogFileError, match="log file path is required"):
        await pub.publish_file("  ")


def test_default_roots_include_tmp_and_cwd() -> None:
    roots = _logs.allowed_log_roots(None)
    assert os.path.realpath("/tmp") in roots
    assert os.path.realpath(os.getcwd()) in roots


def test_capture_keeps_the_last_bytes() -> None:
    cap = _logs.LogCapture(limit=10)
    cap.write(b"0123456789")
    cap.write(b"abc")
    assert cap.drain() == b"3456789abc"
    cap.write(b"x" * 25)
    assert cap.drain() == b"x" * 10
    assert cap.drain() == b""


async def test_capture_tees_stdio_and_log_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    cap = _logs.LogCapture()
    handler = cap.handler(["hunter2"])
    log = logging.getLogger("bubu.test.capture")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with cap.tee_stdio():
            print("to stdout")
            print("to stderr", file=sys.stderr)
            log.info("secret is hunter2")
    finally:
        log.removeHandler(handler)
    assert "to stdout" in capsys.readouterr().out
    pub, sink = make_publisher(tmp_path)
    ref = await cap.publish_captured(pub)
    assert ref is not None and ref["$bubuStorageContentType"] == "application/x-ndjson"
    stored = (tmp_path / "store" / ref["$bubuStorageRef"]).read_text()
    assert "to stdout" in stored and "to stderr" in stored
    record = json.loads(stored.splitlines()[-1])
    assert record["msg"] == "secret is [REDACTED]"
    assert await cap.publish_captured(pub) is None  # drained


async def test_helpers_use_the_run_scope(tmp_path: Path) -> None:
    shared.reset()
    env = load_env(
        MappingSource(
            {
                "BUBU_STORAGE_PROVIDER": "file",
                "BUBU_STORAGE_PATH": str(tmp_path),
                "BUBU_STEPRUN_NAME": "sr-9",
                "BUBU_STEPRUN_NAMESPACE": "team",
                "BUBU_STORYRUN_ID": "run",
                "BUBU_STEP_NAME": "s",
            }
        )
    )
    sink = MemoryStatusSink()
    scope = _scope.RunScope(env=env, status=sink, mask=SecretMask(["pw-123456"]))
    with pytest.raises(LogsUnavailableError):
        await _logs.publish_logs("outside a run")
    with _scope.activate(scope):
        ref = await _logs.publish_logs("pw-123456 leaked?")
        assert ref is not None and ref["$bubuStorageRef"].startswith("team/logs/run/s/sr-9/")
        assert sink.status["logs"] == ref
        assert (tmp_path / ref["$bubuStorageRef"]).read_text() == "[REDACTED] leaked?"
        log_file = tmp_path / "f.log"
        log_file.write_text("from a file")
        ref2 = await _logs.publish_log_file(str(log_file))  # tmp is a default root
        assert ref2 is not None and sink.status["logs"] == ref2
    shared.reset()
