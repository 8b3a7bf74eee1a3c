"""examples/http-request against a real HTTP server on loopback, through the StreamHarness."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import bubu
from bubu.errors import EngramError
from bubu.testkit import StreamHarness
from tests.examples._load import load_example

hr = load_example("http-request/http_request.py")
TOKEN = "tok-5e3c9a1b7d"


class Server:
    """Records requests and the peak number in flight."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.handle_any()

            def do_POST(self) -> None:
                self.handle_any()

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                with server.lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": parts.path,
                            "query": parse_qsl(parts.query),
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    self.route(parts.path)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def reply(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def route(self, path: str) -> None:
                if path == "/json":
                    self.reply(200, b'{"ok": true}', "application/json")
                elif path == "/text":
                    self.reply(200, b"plain words", "text/plain")
                elif path == "/slow":
                    time.sleep(0.2)
                    self.reply(200, b"{}", "application/json")
                elif path == "/fail":
                    self.reply(500, b"kaput", "text/plain")
                elif path == "/away":
                    target = f"http://localhost:{server.port}/json"
                    self.reply(302, b"", "text/plain", Location=target)
                elif path == "/here":
                    self.reply(302, b"", "text/plain", Location="/json")
                else:
                    self.reply(404, b"no", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def by_path(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    thread.join(5)


def message(i: int = 0, **request: Any) -> bubu.StreamMessage:
    return bubu.StreamMessage.json(request, metadata={"n": str(i)})


async def run(config: dict[str, Any], inputs: list[bubu.StreamMessage], **kw: Any) -> StreamHarness:
    harness = StreamHarness(engram=hr.HTTPRequest(), config=config, inputs=inputs, **kw)
    await harness.run()
    return harness


async def test_each_message_gets_its_response_in_the_json_mirror_shape(server: Server) -> None:
    harness = await run({}, [message(i, url=f"{server.url}/json") for i in range(5)])
    assert harness.done_count == 5
    assert sorted(m.metadata["n"] for m in harness.outputs) == ["0", "1", "2", "3", "4"]
    for out in harness.outputs:
        assert out.binary is not None and out.binary.mime_type == "application/json"
        assert out.binary.payload == out.payload
        doc = out.json_data()
        assert doc["statusCode"] == 200 and doc["status"] == "200 OK"
        assert doc["body"] == {"ok": True}
        assert doc["headers"]["Content-Type"] == "application/json"
    assert all(r["headers"]["User-Agent"] == hr.USER_AGENT for r in server.requests)


async def test_in_flight_requests_are_bounded_by_items_per_batch(server: Server) -> None:
    config = {"batching": {"itemsPerBatch": 2}, "defaultURL": f"{server.url}/slow"}
    harness = await run(config, [message(i) for i in range(6)])
    assert harness.done_count == 6 and len(harness.outputs) == 6
    assert 1 <= server.peak <= 2


async def test_an_error_status_is_an_error_message_and_the_input_is_done(server: Server) -> None:
    harness = await run({}, [message(url=f"{server.url}/fail")])
    assert harness.done_count == 1
    (out,) = harness.outputs
    assert out.is_error
    info = out.error_info()
    assert info is not None
    assert info["message"] == "http request failed with status 500: kaput"
    assert info["retryable"] is True and info["details"] == {"statusCode": 500}


async def test_never_error_reports_the_status_as_data(server: Server) -> None:
    harness = await run({"neverError": True}, [message(url=f"{server.url}/fail")])
    doc = harness.outputs[0].json_data()
    assert doc["error"] == {
        "statusCode": 500,
        "status": "500 Internal Server Error",
        "message": "kaput",
    }
    assert doc["body"] == "kaput"


async def test_bad_requests_are_validation_errors(server: Server) -> None:
    harness = await run({}, [message(), message(url=f"{server.url}/json", body={"a": 1})])
    assert harness.done_count == 2
    texts = sorted(m.error_info()["message"] for m in harness.outputs)  # type: ignore[index]
    assert texts == [
        "input 'body' must be a string or []byte, got dict",
        "input 'url' is a required string",
    ]
    assert server.requests == []


async def test_bearer_auth_is_sent_and_never_printed(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engram = hr.HTTPRequest()
    harness = StreamHarness(
        engram=engram,
        config={"auth": {"type": "bearer"}},
        secrets={"bearer_token": TOKEN},
        inputs=[message(url=f"{server.url}/json", method="post", body="hi")],
    )
    await harness.run()
    (request,) = server.requests
    assert request["method"] == "POST" and request["body"] == "hi"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(engram.secrets) and TOKEN not in str(engram.secrets)
    assert all(TOKEN not in out.payload.decode() for out in harness.outputs)


async def test_a_redirect_to_another_host_drops_authorization(server: Server) -> None:
    config = {"auth": {"type": "bearer"}}
    inputs = [message(0, url=f"{server.url}/away"), message(1, url=f"{server.url}/here")]
    harness = StreamHarness(
        engram=hr.HTTPRequest(),
        config=config,
        secrets={"bearer_token": TOKEN},
        inputs=inputs,
        timeout=30,
    )
    await harness.run()
    finals = server.by_path("/json")
    assert len(finals) == 2
    hosts = {r["headers"]["Host"].split(":")[0]: r["headers"].get("Authorization") for r in finals}
    assert hosts == {"localhost": None, "127.0.0.1": f"Bearer {TOKEN}"}


async def test_query_lists_follow_array_format(server: Server) -> None:
    config = {"queryParams": {"arrayFormat": "indices"}}
    await run(config, [message(url=f"{server.url}/json", params={"id": [1, 2], "q": "x"})])
    assert server.requests[0]["query"] == [("id[0]", "1"), ("id[1]", "2"), ("q", "x")]


async def test_text_and_file_formats(server: Server) -> None:
    text = await run({"response": {"format": "text"}}, [message(url=f"{server.url}/json")])
    assert text.outputs[0].json_data()["body"] == '{"ok": true}'
    shaped = {"response": {"format": "file", "outputFieldName": "file", "includeHeaders": False}}
    file = await run(shaped, [message(url=f"{server.url}/text")])
    doc = file.outputs[0].json_data()
    assert "headers" not in doc
    assert doc["file"] == {
        "encoding": "base64",
        "data": "cGxhaW4gd29yZHM=",
        "sizeBytes": 11,
        "contentType": "text/plain",
    }


async def test_a_transport_failure_is_not_acknowledged_so_it_is_redelivered() -> None:
    harness = StreamHarness(
        engram=hr.HTTPRequest(),
        config={"timeout": 2},
        inputs=[message(url="http://127.0.0.1:9/json")],  # discard port: connection refused
    )
    with pytest.raises(EngramError) as failure:
        await harness.run()
    assert failure.value.retryable is True
    assert harness.done_count == 0


def test_custom_header_auth_needs_a_header_name() -> None:
    import asyncio

    engram = hr.HTTPRequest()
    config = hr.Config(auth=hr.Auth(type="customHeader"))
    with pytest.raises(EngramError, match="requires 'headerName'"):
        asyncio.run(engram.init(config, bubu.Secrets({})))
