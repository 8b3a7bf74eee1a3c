"""The webhook and CloudEvents examples, driven over loopback HTTP through ImpulseHarness.

These tests open loopback sockets (the examples are HTTP servers); nothing leaves the host.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest

from bubu._k8s.resources import STORY_RUN
from bubu.testkit import ImpulseHarness

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SECRET = "It's a Secret to Everybody"


def load(name: str):
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


webhook = load("webhook_impulse")
cloudevents = load("cloudevents_impulse")


async def request(port: int, method: str, path: str, body: bytes = b"", headers=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {path} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload.decode()


def pr_payload(number: int = 123, action: str = "opened") -> bytes:
    return json.dumps(
        {
            "action": action,
            "repository": {"full_name": "owner/repo"},
            "sender": {"login": "octocat"},
            "pull_request": {
                "number": number,
                "title": "Fix it",
                "state": "open",
                "html_url": "https://github.com/owner/repo/pull/123",
                "head": {"ref": "fix", "sha": "abc"},
                "base": {"ref": "main", "sha": "def"},
            },
        }
    ).encode()


def signed(body: bytes, delivery: str, event: str = "pull_request", secret: str = SECRET):
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": sig,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


@pytest.fixture
async def hook():
    imp = webhook.GitHubWebhook()
    h = ImpulseHarness(
        impulse=imp,
        config={"host": "127.0.0.1", "port": 0, "endEvents": ["pull_request:closed"]},
        secrets={"WEBHOOK_SECRET": SECRET},
    )
    await h.start()
    await asyncio.wait_for(imp.ready.wait(), 5)
    yield h, imp.port
    if h.exit_code is None:
        assert await h.stop() == 0


async def test_signed_pull_request_starts_a_story(hook):
    h, port = hook
    body = pr_payload()
    status, text = await request(port, "POST", "/webhook", body, signed(body, "d-1"))
    assert status == 202
    answer = json.loads(text)
    assert answer["status"] == "accepted" and answer["sessionKey"] == "owner/repo-pr-123"
    (trigger,) = h.triggers
    inputs = trigger["spec"]["inputs"]
    assert inputs["event"] == "pull_request" and inputs["deliveryId"] == "d-1"
    assert inputs["pullRequest"]["number"] == 123 and inputs["pullRequest"]["head"]["ref"] == "fix"
    assert trigger["spec"]["deliveryIdentity"]["key"] == "d-1"  # the delivery id is the token
    assert answer["storyRun"] == h.story_runs[0]["metadata"]["name"]


async def test_redelivery_is_deduplicated_not_a_failure(hook):
    h, port = hook
    body = pr_payload()
    first = await request(port, "POST", "/webhook", body, signed(body, "d-1"))
    again = await request(port, "POST", "/webhook", body, signed(body, "d-1"))
    assert first[0] == 202 and again[0] == 200
    assert json.loads(again[1])["status"] == "duplicate"
    assert json.loads(again[1])["storyRun"] == json.loads(first[1])["storyRun"]
    assert len(h.triggers) == 1 and len(h.story_runs) == 1


async def test_bad_or_missing_signature_is_401_and_starts_nothing(hook):
    h, port = hook
    body = pr_payload()
    bad = signed(body, "d-2", secret="wrong")
    assert (await request(port, "POST", "/webhook", body, bad))[0] == 401
    unsigned = {k: v for k, v in signed(body, "d-3").items() if k != "X-Hub-Signature-256"}
    assert (await request(port, "POST", "/webhook", body, unsigned))[0] == 401
    assert h.triggers == []


async def test_filters_health_and_methods(hook):
    h, port = hook
    h.impulse.config.events_allowlist.append("push")
    body = pr_payload()
    assert await request(port, "POST", "/webhook", body, signed(body, "d-4")) == (
        200,
        "Event filtered",
    )
    assert await request(port, "GET", "/health") == (200, "ok")
    assert (await request(port, "GET", "/webhook"))[0] == 405
    assert (await request(port, "POST", "/elsewhere"))[0] == 404
    bad_json = b"{nope"
    assert (await request(port, "POST", "/webhook", bad_json, signed(bad_json, "d-5")))[0] == 400


async def test_end_event_stops_the_session_run(hook):
    h, port = hook
    opened = pr_payload()
    status, text = await request(port, "POST", "/webhook", opened, signed(opened, "d-6"))
    run = json.loads(text)["storyRun"]
    closed = pr_payload(action="closed")
    assert await request(port, "POST", "/webhook", closed, signed(closed, "d-7")) == (
        200,
        "Session stopped",
    )
    assert h.cluster.peek(STORY_RUN, run, "default")["spec"]["cancelRequested"] is True


async def test_next_event_of_the_same_pr_replaces_the_session(hook):
    h, port = hook
    for delivery in ("d-8", "d-9"):
        body = pr_payload(action="synchronize")
        assert (await request(port, "POST", "/webhook", body, signed(body, delivery)))[0] == 202
    assert len(h.story_runs) == 2
    assert h.client.dispatcher.session("owner/repo-pr-123").story_run in {
        r["metadata"]["name"] for r in h.story_runs
    }


async def test_refuses_to_start_without_a_secret(caplog):
    caplog.set_level(logging.ERROR, logger="bubu.impulse")
    h = ImpulseHarness(impulse=webhook.GitHubWebhook(), config={"port": 0})
    with pytest.raises(RuntimeError):
        await h.start()
    assert h.exit_code == 1
    assert "WEBHOOK_SECRET is not configured" in caplog.text


@pytest.fixture
async def ingest():
    imp = cloudevents.CloudEventsIngest()
    h = ImpulseHarness(
        impulse=imp, config={"host": "127.0.0.1", "port": 0}, secrets={"INGEST_TOKEN": "t0k"}
    )
    await h.start()
    async with asyncio.timeout(30):  # the server binds in the impulse's own task
        while not imp.port:  # noqa: ASYNC110 - the example offers no event to wait on
            await asyncio.sleep(0.01)
    yield h, imp.port
    assert await h.stop() == 0


AUTH = {"Authorization": "Bearer t0k"}


async def test_cloudevent_structured_mode(ingest):
    h, port = ingest
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/orders",
        "type": "order.created",
        "data": {"orderId": 42},
    }
    headers = {**AUTH, "Content-Type": "application/cloudevents+json"}
    status, text = await request(port, "POST", "/events", json.dumps(event).encode(), headers)
    assert status == 202
    (trigger,) = h.triggers
    assert trigger["spec"]["inputs"]["data"] == {"orderId": 42}
    assert trigger["spec"]["inputs"]["type"] == "order.created"
    again = await request(port, "POST", "/events", json.dumps(event).encode(), headers)
    assert again[0] == 200 and json.loads(again[1])["storyRun"] == json.loads(text)["storyRun"]


async def test_cloudevent_binary_mode(ingest):
    h, port = ingest
    headers = {
        **AUTH,
        "ce-specversion": "1.0",
        "ce-id": "e-2",
        "ce-source": "/orders",
        "ce-type": "order.paid",
        "Content-Type": "application/json",
    }
    assert (await request(port, "POST", "/events", b'{"orderId": 7}', headers))[0] == 202
    inputs = h.triggers[0]["spec"]["inputs"]
    assert inputs["id"] == "e-2" and inputs["data"] == {"orderId": 7}
    assert inputs["datacontenttype"] == "application/json"


async def test_cloudevent_rejections(ingest):
    h, port = ingest
    headers = {**AUTH, "ce-specversion": "1.0", "ce-id": "e-3"}
    status, text = await request(port, "POST", "/events", b"", headers)
    assert status == 400 and "source" in text and "type" in text
    full = {**headers, "ce-source": "/x", "ce-type": "t"}
    assert (await request(port, "POST", "/events", b"", {**full, "Authorization": "Bearer no"}))[
        0
    ] == 401
    assert (await request(port, "POST", "/events", b"", {**full, "ce-specversion": "0.3"}))[
        0
    ] == 400
    assert h.triggers == []
