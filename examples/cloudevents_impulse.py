"""A CloudEvents Impulse: HTTP binding, structured and binary content modes (CloudEvents 1.0).

Each event starts the Impulse's target Story exactly once: the trigger token is derived from
the event's identity (``source`` + ``id``, which CloudEvents requires to be unique), so a
producer retrying a POST maps to the same StoryTrigger and StoryRun
(docs/examples/cloudevents-impulse.md).

* **structured** mode: ``Content-Type: application/cloudevents+json`` and the whole event
  (``specversion``, ``id``, ``source``, ``type``, ``data``...) is the JSON body;
* **binary** mode: the attributes are ``ce-*`` headers and the body is ``data`` (JSON when the
  content type is JSON, else kept as text).

Producers authenticate with ``Authorization: Bearer <INGEST_TOKEN>``; without the secret the
impulse refuses to start. The HTTP server is the one of ``webhook_impulse.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from typing import Any

import msgspec

import bubu
from bubu.errors import EngramError, TriggerError, TriggerPendingError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webhook_impulse import Request, Response, serve_http

REQUIRED = ("specversion", "id", "source", "type")
_JSON_TYPES = ("application/json", "text/json")


class Config(msgspec.Struct, kw_only=True):
    """``Impulse.spec.with``: where to listen and which event types to accept (empty: all)."""

    host: str = "0.0.0.0"
    port: int = 8080
    path: str = "/events"
    types_allowlist: list[str] = msgspec.field(default_factory=list)


def parse_cloudevent(request: Request) -> dict[str, Any] | Response:
    """Return the event's attributes and ``data``, or the 4xx response explaining why not."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/cloudevents+json":
        try:
            event = json.loads(request.body)
        except ValueError:
            return Response(400, "structured CloudEvent body is not JSON")
        if not isinstance(event, dict):
            return Response(400, "structured CloudEvent body must be a JSON object")
        if "data_base64" in event:
            event["data"] = event.pop("data_base64")
            event["dataEncoding"] = "base64"
    elif ctype == "application/cloudevents-batch+json":
        return Response(400, "batched CloudEvents are not supported; send one event per request")
    else:
        event = {
            name[3:]: value for name, value in request.headers.items() if name.startswith("ce-")
        }
        if ctype:
            event["datacontenttype"] = ctype
        if request.body:
            if ctype in _JSON_TYPES or ctype.endswith("+json"):
                try:
                    event["data"] = json.loads(request.body)
                except ValueError:
                    return Response(400, "binary CloudEvent data is not valid JSON")
            else:
                event["data"] = request.body.decode("utf-8", "replace")
    missing = [a for a in REQUIRED if not str(event.get(a) or "").strip()]
    if missing:
        return Response(400, f"missing required CloudEvents attributes: {', '.join(missing)}")
    if event["specversion"] != "1.0":
        return Response(400, f"unsupported specversion {event['specversion']!r} (want 1.0)")
    return event


def event_token(event: dict[str, Any]) -> str:
    """A deterministic trigger token for ``(source, id)``, within the 253-character limit."""
    seed = f"{event['source']}\x00{event['id']}".encode()
    return "ce-" + hashlib.sha256(seed).hexdigest()[:40]


class CloudEventsIngest(bubu.Impulse[Config]):
    """Starts the target Story once per CloudEvent."""

    def __init__(self) -> None:
        self.config = Config()
        self._token = b""
        self.port: int | None = None

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        token = secrets.get("INGEST_TOKEN")
        if not token:
            raise EngramError(
                "INGEST_TOKEN is not configured: refusing to accept unauthenticated events",
                type="initialization_error",
            )
        self._token = token.encode()
        self.config = config

    async def run(self, client: Any) -> None:
        self._client = client

        def bound(port: int) -> None:
            self.port = port

        await serve_http(self.handle, self.config.host, self.config.port, on_bound=bound)

    async def handle(self, request: Request) -> Response:
        if request.path in ("/health", "/ready"):
            return Response(200, "ok")
        if request.path != self.config.path:
            return Response(404, "Not found")
        if request.method != "POST":
            return Response(405, "Method not allowed", headers={"Allow": "POST"})
        auth = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(auth, b"Bearer " + self._token):
            return Response(401, "Unauthorized")
        parsed = parse_cloudevent(request)
        if isinstance(parsed, Response):
            return parsed
        allow = self.config.types_allowlist
        if allow and parsed["type"] not in allow:
            return Response(200, "Event filtered")
        inputs = {k: v for k, v in parsed.items() if k != "specversion"}
        try:
            result = await self._client.start_story(inputs=inputs, token=event_token(parsed))
        except TriggerPendingError:
            return Response(503, "Story start is pending; retry")
        except TriggerError:
            return Response(500, "Failed to trigger story")
        status = "duplicate" if result.deduplicated else "accepted"
        return Response(
            200 if result.deduplicated else 202,
            json_body={"status": status, "storyRun": result.story_run},
        )


if __name__ == "__main__":
    bubu.run(bubu.run_impulse(CloudEventsIngest()))
