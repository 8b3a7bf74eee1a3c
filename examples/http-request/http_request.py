"""http-request: an HTTP client engram, a port of the Go sample in its streaming (Deployment) mode.

Every inbound JSON message describes one request (``url``, ``method``, ``params``,
``headers``, ``body``); the engram sends it and publishes the response as JSON
(``statusCode``, ``status``, ``headers`` and the body under ``response.outputFieldName``), with
the input's metadata carried over. Up to ``batching.itemsPerBatch`` requests are in flight at
once (``bubu.streaming.concurrently``), and each input is acknowledged (``done()``) once its
response is queued for the wire.

Failures are split by who can fix them:

* a request that cannot be built (no URL, a body that is not text) and an HTTP error status
  (unless ``neverError``) are answered with a stream error message (StructuredError v1,
  ``kind="error"``) and the input is acknowledged: retrying would give the same answer;
* a transport failure (connection refused, timeout) raises, so the input is *not* acknowledged
  and the connector redelivers it (at-least-once), where the Go sample drops it.

Auth comes from secrets (``bearer_token``, ``basic_username``/``basic_password``,
``custom_header_value``) and never reaches logs or outputs; a redirect to another host drops
the ``Authorization`` header. Each response is also published as the signal ``http.response``
when the engram runs in a StepRun (signals are best-effort here, as in Go).

Run it locally against any URL::

    echo '{"url": "https://example.com"}' | bubu run --stream examples/http-request/http_request.py
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
import msgspec

import bubu
import bubu.streaming
from bubu.errors import EngramError, SignalsUnavailableError

USER_AGENT = "bubu-http-request-engram/v0.2"


class Auth(msgspec.Struct, rename="camel"):
    """Where credentials come from (the values are secrets)."""

    type: Literal["none", "bearer", "basic", "customHeader"] = "none"
    header_name: Annotated[str, msgspec.Meta(description="Header for customHeader auth")] = ""


class Response(msgspec.Struct, rename="camel"):
    """How the response is shaped."""

    include_headers: bool = True
    include_status: bool = True
    format: Literal["auto", "json", "text", "file"] = "auto"
    output_field_name: str = "body"


class Redirects(msgspec.Struct, rename="camel"):
    """Redirect policy."""

    follow: bool = True
    max_redirects: Annotated[int, msgspec.Meta(ge=0)] = 10


class Batching(msgspec.Struct, rename="camel"):
    """How many requests may be in flight at once."""

    items_per_batch: Annotated[int, msgspec.Meta(ge=1)] = 50


class QueryParams(msgspec.Struct, rename="camel"):
    """How list-valued query parameters are written."""

    array_format: Literal["noBrackets", "brackets", "indices"] = "noBrackets"


class Config(msgspec.Struct, rename="camel"):
    """The engram's configuration (``Engram.spec.with``)."""

    default_url: str = msgspec.field(default="", name="defaultURL")
    default_method: str = "GET"
    default_headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout: Annotated[float, msgspec.Meta(gt=0, description="Seconds per request")] = 10.0
    never_error: Annotated[bool, msgspec.Meta(description="Report HTTP errors as data")] = False
    auth: Auth = msgspec.field(default_factory=Auth)
    response: Response = msgspec.field(default_factory=Response)
    redirects: Redirects = msgspec.field(default_factory=Redirects)
    batching: Batching = msgspec.field(default_factory=Batching)
    query_params: QueryParams = msgspec.field(default_factory=QueryParams)


class Request(msgspec.Struct):
    """One inbound request (every field optional; ``url`` falls back to ``defaultURL``)."""

    url: str = ""
    method: str = ""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    headers: dict[str, Any] = msgspec.field(default_factory=dict)
    body: Any = None


class Output(msgspec.Struct, rename="camel", omit_defaults=True):
    """One published response (the body is under ``response.outputFieldName``)."""

    status_code: int | None = None
    status: str | None = None
    headers: dict[str, str] | None = None


class BearerSecret(msgspec.Struct):
    """Token for bearer auth."""

    bearer_token: str


class BasicSecret(msgspec.Struct):
    """User name and password for basic auth."""

    basic_username: str
    basic_password: str


class HeaderSecret(msgspec.Struct):
    """Value of the custom auth header."""

    custom_header_value: str


class SecretSchema(msgspec.Struct, rename="camel"):
    """The secrets this engram reads (each optional; the auth type picks one)."""

    bearer: BearerSecret | None = None
    basic: BasicSecret | None = None
    custom_header: HeaderSecret | None = None


class BadRequest(Exception):
    """A request that cannot be built from the message."""


def query_pairs(params: dict[str, Any], array_format: str) -> list[tuple[str, str]]:
    """Flatten ``params`` into query pairs, lists written as ``arrayFormat`` says."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                name = {"brackets": f"{key}[]", "indices": f"{key}[{i}]"}.get(array_format, key)
                pairs.append((name, _text(item)))
        else:
            pairs.append((key, _text(value)))
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value)


class HTTPRequest(bubu.StreamingEngram[Config]):
    """Sends one HTTP request per inbound message and publishes the response."""

    inputs_type = Request
    output_type = Output
    secret_schema = SecretSchema

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config
        self.secrets = secrets
        if config.auth.type == "customHeader" and not config.auth.header_name:
            raise EngramError(
                "auth type 'customHeader' requires 'headerName' in config",
                type="initialization_error",
                retryable=False,
            )

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.config.timeout,
            follow_redirects=False,  # redirects are followed by hand, to drop auth across hosts
            headers={"User-Agent": USER_AGENT},
        )

    def build(self, request: Request) -> httpx.Request:
        """Turn one inbound message into an HTTP request (auth included)."""
        url = request.url or self.config.default_url
        if not url:
            raise BadRequest("input 'url' is a required string")
        body = request.body
        if body is not None and not isinstance(body, str):
            raise BadRequest(f"input 'body' must be a string or []byte, got {type(body).__name__}")
        headers = dict(self.config.default_headers)
        headers.update({k: v for k, v in request.headers.items() if isinstance(v, str)})
        headers.setdefault("User-Agent", USER_AGENT)
        lowered = {k.lower() for k in headers}
        auth = self.config.auth
        if auth.type == "bearer" and "authorization" not in lowered:
            if token := self.secrets.get("bearer_token"):
                headers["Authorization"] = f"Bearer {token}"
        elif auth.type == "basic" and "authorization" not in lowered:
            user = self.secrets.get("basic_username") or ""
            password = self.secrets.get("basic_password") or ""
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        elif auth.type == "customHeader" and auth.header_name.lower() not in lowered:
            value = self.secrets.get("custom_header_value")
            if value:
                headers[auth.header_name] = value
        method = (request.method or self.config.default_method or "GET").upper()
        params = query_pairs(request.params, self.config.query_params.array_format)
        return httpx.Request(
            method, url, params=params, headers=headers, content=body.encode() if body else None
        )

    async def send(self, client: httpx.AsyncClient, req: httpx.Request) -> httpx.Response:
        """Send ``req``, following redirects up to the limit; cross-host hops lose auth."""
        hops = 0
        while True:
            response = await client.send(req)
            if not (response.is_redirect and self.config.redirects.follow):
                return response
            hops += 1
            if hops > self.config.redirects.max_redirects:
                return response
            target = response.next_request
            if target is None:
                return response
            if urlsplit(str(target.url)).netloc != urlsplit(str(req.url)).netloc:
                target.headers.pop("Authorization", None)
            await response.aclose()
            req = target

    def shape(self, response: httpx.Response) -> dict[str, Any]:
        """The published JSON for a response."""
        shape = self.config.response
        out: dict[str, Any] = {}
        if shape.include_status:
            out["statusCode"] = response.status_code
            out["status"] = f"{response.status_code} {response.reason_phrase}".strip()
        if shape.include_headers:
            # Go's http.Header keys are canonical (Content-Type); multi-values joined by ", ".
            out["headers"] = {
                "-".join(p.capitalize() for p in k.split("-")): ", ".join(
                    response.headers.get_list(k)
                )
                for k in response.headers
            }
        out[shape.output_field_name] = self._body(response)
        if self.config.never_error and response.status_code >= 400:
            out["error"] = {
                "statusCode": response.status_code,
                "status": out.get("status") or str(response.status_code),
                "message": response.text[:1024],
            }
        return out

    def _body(self, response: httpx.Response) -> Any:
        fmt = self.config.response.format
        if fmt == "file":
            data = response.content
            doc: dict[str, Any] = {
                "encoding": "base64",
                "data": base64.b64encode(data).decode(),
                "sizeBytes": len(data),
            }
            if ctype := response.headers.get("content-type"):
                doc["contentType"] = ctype
            return doc
        if fmt == "text":
            return response.text
        try:
            return json.loads(response.content) if response.content else None
        except ValueError:
            if fmt == "json":
                raise BadRequest("response body is not valid JSON") from None
            return response.text

    async def handle(self, client: httpx.AsyncClient, msg: bubu.InboundMessage) -> Any:
        """Process one message: its response, or a stream error message."""
        started = time.monotonic()
        try:
            data = msg.inputs_data() if msg.inputs else msg.json_data()
            request = msgspec.convert(data or {}, Request)
            req = self.build(request)
        except (BadRequest, msgspec.ValidationError, bubu.errors.ProtocolViolationError) as exc:
            return bubu.StreamMessage.error(
                str(exc), type="validation_error", retryable=False, metadata=msg.metadata
            )
        try:
            response = await self.send(client, req)
        except httpx.TransportError as exc:
            # Not acknowledged: the connector redelivers the message (at-least-once).
            where = f"{req.method} {req.url.host}"
            raise EngramError(f"{where}: {type(exc).__name__}", retryable=True) from exc
        await _signal(req, response, started)
        if response.status_code >= 400 and not self.config.never_error:
            return bubu.StreamMessage.error(
                f"http request failed with status {response.status_code}: {response.text[:512]}",
                retryable=response.status_code >= 500,
                details={"statusCode": response.status_code},
                metadata=msg.metadata,
            )
        try:
            shaped = self.shape(response)
        except BadRequest as exc:
            return bubu.StreamMessage.error(str(exc), metadata=msg.metadata)
        return bubu.StreamMessage.json(shaped, metadata=msg.metadata)

    async def stream(
        self, inbound: AsyncIterator[bubu.InboundMessage]
    ) -> AsyncIterator[bubu.StreamMessage]:
        async with self._client() as client:

            async def one(msg: bubu.InboundMessage) -> Any:
                return await self.handle(client, msg)

            limit = self.config.batching.items_per_batch
            async for out in bubu.streaming.concurrently(inbound, one, limit=limit):
                yield out


async def _signal(req: httpx.Request, response: httpx.Response, started: float) -> None:
    payload = {
        "method": req.method,
        "url": str(req.url.copy_with(query=None)),
        "statusCode": response.status_code,
        "status": f"{response.status_code} {response.reason_phrase}".strip(),
        "durationMs": int((time.monotonic() - started) * 1000),
        "bodyBytes": len(response.content),
    }
    if ctype := response.headers.get("content-type"):
        payload["contentType"] = ctype
    # Not in a StepRun (a local run or a test): the signal is best-effort, as in Go.
    with contextlib.suppress(SignalsUnavailableError):
        await bubu.emit_signal("http.response", payload)


if __name__ == "__main__":
    bubu.run(bubu.start_streaming(HTTPRequest()))
