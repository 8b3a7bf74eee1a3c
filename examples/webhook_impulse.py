"""A GitHub webhook Impulse: signed deliveries start Stories, redeliveries are deduplicated.

A port of the public ``github-webhook-impulse`` (docs/examples/webhook-impulse.md) that closes its
gaps:

* the signature is **required**: without a ``WEBHOOK_SECRET`` secret the impulse refuses to
  start (the Go sample fails open and accepts unsigned events);
* the delivery id (``X-GitHub-Delivery``) is the trigger token, so a redelivered event maps to
  the same StoryTrigger and StoryRun instead of starting a duplicate run;
* a second event for the same pull request replaces the session instead of failing with
  "session exists" (HTTP 500, then GitHub redelivers).

It serves plain HTTP/1.1 with ``asyncio.start_server`` (no web framework): ``POST <path>`` for
deliveries, ``GET /health`` and ``GET /ready``.

Run it in a pod with ``python webhook_impulse.py`` (the operator injects ``BUBU_*``), or locally
against the in-memory cluster with ``bubu.testkit.ImpulseHarness`` (see
``tests/unit/impulse/test_webhook_example.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

import bubu
from bubu.errors import (
    EngramError,
    ImpulseSessionNotFoundError,
    StoryRunNotFoundError,
    TriggerError,
    TriggerPendingError,
)

log = logging.getLogger("webhook_impulse")

MAX_BODY = 1 << 20  # GitHub caps payloads at 25 MB; 1 MiB is plenty for the fields we map
MAX_HEAD = 64 << 10


# --- a minimal HTTP/1.1 server ---------------------------------------------------------------


@dataclass
class Request:
    """One parsed HTTP request (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    """An HTTP response; ``json_body`` wins over ``text``."""

    status: int
    text: str = ""
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.json_body is not None:
            body = json.dumps(self.json_body).encode()
            ctype = "application/json"
        else:
            body = self.text.encode()
            ctype = "text/plain; charset=utf-8"
        reason = _REASONS.get(self.status, "Unknown")
        head = [f"HTTP/1.1 {self.status} {reason}", f"Content-Type: {ctype}"]
        head += [f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Handler = Callable[[Request], Awaitable[Response]]


async def _read_request(reader: asyncio.StreamReader) -> Request | Response:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return Response(413, "Request header too large")
    except asyncio.IncompleteReadError:
        return Response(400, "Incomplete request")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        return Response(400, "Malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding"):
        return Response(411, "Chunked bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return Response(400, "Invalid Content-Length")
    if length < 0 or length > MAX_BODY:
        return Response(413, "Payload too large")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return Response(400, "Incomplete body")
    return Request(method.upper(), target.split("?", 1)[0], headers, body)


async def serve_http(
    handler: Handler, host: str, port: int, *, on_bound: Callable[[int], None] | None = None
) -> None:
    """Serve ``handler`` until cancelled; in-flight requests finish before it returns."""
    inflight: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        inflight.add(task)
        try:
            parsed = await _read_request(reader)
            if isinstance(parsed, Response):
                response = parsed
            else:
                try:
                    response = await handler(parsed)
                except Exception:
                    log.exception("handler failed")
                    response = Response(500, "Internal error")
            writer.write(response.encode())
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            inflight.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(connection, host, port, limit=MAX_HEAD)
    if on_bound is not None:
        on_bound(server.sockets[0].getsockname()[1])
    try:
        await server.serve_forever()
    finally:
        # Stop accepting first, then let requests in flight (idempotent triggers) finish.
        server.close()
        if inflight:
            await asyncio.wait(set(inflight), timeout=10)


# --- the impulse -----------------------------------------------------------------------------


class Config(msgspec.Struct, kw_only=True):
    """``Impulse.spec.with``.

    Attributes:
        host: the listen address.
        port: the listen port (8080 in the ImpulseTemplate; 0 picks a free one).
        path: where GitHub posts deliveries.
        events_allowlist: GitHub event names to accept (empty: all).
        end_events: ``event`` or ``event:action`` values that stop the session's run.
        story_name: the Story to start (default: the Impulse's target Story).
    """

    host: str = "0.0.0.0"
    port: int = 8080
    path: str = "/webhook"
    events_allowlist: list[str] = msgspec.field(default_factory=list)
    end_events: list[str] = msgspec.field(default_factory=list)
    story_name: str = ""


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Check ``X-Hub-Signature-256: sha256=<hex>`` in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def session_key(event: str, payload: dict[str, Any], delivery: str) -> str:
    """The ``auto`` strategy of the Go sample: one session per PR / issue / ref."""
    repo = (payload.get("repository") or {}).get("full_name") or ""
    if not repo:
        return delivery
    if event in ("pull_request", "pull_request_review", "pull_request_review_comment"):
        number = (payload.get("pull_request") or {}).get("number")
        return f"{repo}-pr-{number}" if number is not None else delivery
    if event in ("issues", "issue_comment"):
        number = (payload.get("issue") or {}).get("number")
        return f"{repo}-issue-{number}" if number is not None else delivery
    if event == "push" and payload.get("ref"):
        return f"{repo}-{payload['ref']}"
    return delivery


def build_inputs(event: str, payload: dict[str, Any], delivery: str) -> dict[str, Any]:
    """The Story inputs: a stable mapping of the payload (no clocks, so redeliveries match)."""
    inputs: dict[str, Any] = {
        "event": event,
        "action": payload.get("action") or "",
        "deliveryId": delivery,
        "repository": (payload.get("repository") or {}).get("full_name") or "",
        "sender": (payload.get("sender") or {}).get("login") or "",
    }
    pr = payload.get("pull_request")
    if isinstance(pr, dict):
        inputs["pullRequest"] = {
            "number": pr.get("number"),
            "title": pr.get("title"),
            "state": pr.get("state"),
            "htmlUrl": pr.get("html_url"),
            "head": {
                "ref": (pr.get("head") or {}).get("ref"),
                "sha": (pr.get("head") or {}).get("sha"),
            },
            "base": {
                "ref": (pr.get("base") or {}).get("ref"),
                "sha": (pr.get("base") or {}).get("sha"),
            },
            "draft": bool(pr.get("draft")),
            "merged": bool(pr.get("merged")),
        }
    if event == "push":
        inputs["push"] = {
            "ref": payload.get("ref"),
            "before": payload.get("before"),
            "after": payload.get("after"),
            "commits": len(payload.get("commits") or []),
        }
    return inputs


class GitHubWebhook(bubu.Impulse[Config]):
    """Turns signed GitHub deliveries into StoryRuns."""

    def __init__(self) -> None:
        self.config = Config()
        self._secret = b""
        self.port: int | None = None
        self.ready = asyncio.Event()

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        secret = secrets.get("WEBHOOK_SECRET")
        if not secret:
            # Fail closed: an impulse that accepts unsigned deliveries lets anyone start runs.
            raise EngramError(
                "WEBHOOK_SECRET is not configured: refusing to start without signature "
                "verification (set the webhookSecret secret on the Impulse)",
                type="initialization_error",
            )
        self._secret = secret.encode()
        self.config = config

    async def run(self, client: Any) -> None:
        self._client = client

        def bound(port: int) -> None:
            self.port = port
            self.ready.set()
            log.info("listening on %s:%d%s", self.config.host, port, self.config.path)

        await serve_http(self.handle, self.config.host, self.config.port, on_bound=bound)

    async def handle(self, request: Request) -> Response:
        if request.path in ("/health", "/ready"):
            return Response(200, "ok")
        if request.path != self.config.path:
            return Response(404, "Not found")
        if request.method != "POST":
            return Response(405, "Method not allowed", headers={"Allow": "POST"})
        if not verify_signature(
            self._secret, request.body, request.headers.get("x-hub-signature-256")
        ):
            return Response(401, "Invalid signature")
        try:
            payload = json.loads(request.body)
        except ValueError:
            return Response(400, "Failed to parse webhook request")
        if not isinstance(payload, dict):
            return Response(400, "Failed to parse webhook request")
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        if not event or not delivery:
            return Response(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        allow = self.config.events_allowlist
        if allow and event not in allow:
            return Response(200, "Event filtered")
        key = session_key(event, payload, delivery)
        dispatcher = self._client.dispatcher
        action = payload.get("action") or ""
        if event in self.config.end_events or f"{event}:{action}" in self.config.end_events:
            with contextlib.suppress(ImpulseSessionNotFoundError, StoryRunNotFoundError):
                await dispatcher.stop(key)
            return Response(200, "Session stopped")
        # A newer event of the same PR/issue takes over the session (Go answers 500 here).
        dispatcher.forget(key)
        try:
            out = await dispatcher.trigger(
                key,
                story_name=self.config.story_name or None,
                inputs=build_inputs(event, payload, delivery),
                token=delivery,  # a redelivery maps to the same StoryTrigger and StoryRun
            )
        except TriggerPendingError:
            return Response(503, "Story start is pending; retry the delivery")
        except TriggerError as exc:
            log.warning("trigger for delivery %s failed: %s", delivery, exc)
            return Response(500, "Failed to trigger story")
        body = {
            "status": "duplicate" if out.result.deduplicated else "accepted",
            "storyRun": out.story_run,
            "sessionKey": key,
        }
        return Response(200 if out.result.deduplicated else 202, json_body=body)


if __name__ == "__main__":
    bubu.run(bubu.run_impulse(GitHubWebhook()))
