"""A fault-injecting HTTP proxy in front of the test API server.

``FaultProxy`` listens on plain HTTP on ``127.0.0.1`` (its own thread and
event loop, so it serves sync and async tests alike) and re-originates every
request over TLS to the real kube-apiserver:

* a request **with** an ``Authorization`` header is forwarded with that header
  (e.g. a ServiceAccount token) and no client certificate, so RBAC applies to it;
* a request **without** one is sent with the admin client certificate.

Faults are rules matched by HTTP method and a regex on the path (query string
excluded; ``query=`` matches it separately). Each rule fires ``times`` times
(``None`` = forever), optionally after letting ``skip`` matching requests
through, then stops matching. A firing rule can answer with a proper
Kubernetes ``Status`` JSON (409 Conflict, 429 with ``Retry-After``, 500, 503,
504, or any code), delay the request before forwarding it, or drop the
connection. Everything else passes through unchanged, including watch streams.

    proxy.fail("PATCH", r"/stepruns/[^/]+/status$", 409, times=2)
    proxy.fail("POST", r"/storytriggers$", 429, retry_after=1)
    proxy.delay("GET", r"/stepruns/", 0.5)
    kubeconfig = proxy.kubeconfig(token=identity.token)   # or admin: proxy.kubeconfig()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .server import write_kubeconfig

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}

_REASONS = {
    400: ("BadRequest", "Bad Request"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "Forbidden"),
    404: ("NotFound", "Not Found"),
    409: ("Conflict", "Conflict"),
    410: ("Expired", "Gone"),
    422: ("Invalid", "Unprocessable Entity"),
    429: ("TooManyRequests", "Too Many Requests"),
    500: ("InternalError", "Internal Server Error"),
    502: ("", "Bad Gateway"),
    503: ("ServiceUnavailable", "Service Unavailable"),
    504: ("Timeout", "Gateway Timeout"),
}

_PATH_RE = re.compile(
    r"^/apis?/(?:(?P<group>[^/]+)/)?(?P<version>v[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[^/?]+)(?:/(?P<name>[^/?]+))?"
)


@dataclass
class Fault:
    """One injection rule. ``hits`` counts the times it fired."""

    method: str | None
    path: str
    status: int | None = None
    times: int | None = 1
    skip: int = 0
    delay: float = 0.0
    retry_after: float | None = None
    reason: str | None = None
    message: str | None = None
    disconnect: bool = False
    query: str | None = None
    hits: int = 0
    seen: int = 0
    _path_re: re.Pattern[str] = field(init=False, repr=False)
    _query_re: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._path_re = re.compile(self.path)
        self._query_re = re.compile(self.query) if self.query else None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if not self._path_re.search(path):
            return False
        return self._query_re is None or bool(self._query_re.search(query))


@dataclass(frozen=True)
class Seen:
    """A request the proxy handled: what came in and what went back."""

    method: str
    path: str
    query: str
    status: int
    fault: Fault | None


def status_body(
    code: int,
    path: str,
    *,
    reason: str | None = None,
    message: str | None = None,
    retry_after: float | None = None,
) -> dict[str, Any]:
    """A Kubernetes ``metav1.Status`` like the API server's own errors."""
    default_reason, _ = _REASONS.get(code, ("", ""))
    m = _PATH_RE.match(path)
    details: dict[str, Any] = {}
    if m:
        details["group"] = m.group("group") or ""
        details["kind"] = m.group("resource")
        if m.group("name"):
            details["name"] = m.group("name")
    if retry_after is not None:
        details["retryAfterSeconds"] = max(1, int(round(retry_after)))
    if message is None:
        what = f'{details.get("kind", "resource")} "{details.get("name", "")}"'.strip()
        message = {
            409: f"Operation cannot be fulfilled on {what}: the object has been modified; "
            "please apply your changes to the latest version and try again",
            429: "the server has received too many requests and has asked us to try again later",
            500: "Internal error occurred: injected by the bubu fault proxy",
            503: "the server is currently unable to handle the request",
            504: "the server was unable to return a response in the time allotted, "
            "but may still be processing the request",
        }.get(code, f"injected HTTP {code}")
        message += " (injected by the bubu fault proxy)" if "injected" not in message else ""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else default_reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class FaultProxy:
    """Plain-HTTP loopback proxy to the API server with injectable faults."""

    def __init__(
        self, upstream: str, *, ca_path: Path, admin_cert: tuple[Path, Path], workdir: Path
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._ca_path = ca_path
        self._admin_cert = admin_cert
        self._workdir = workdir
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._seen: list[Seen] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self.port = 0
        self.url = ""

    # ------------------------------------------------------------------ rules

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(
        self,
        method: str | None,
        path: str,
        status: int,
        *,
        times: int | None = 1,
        skip: int = 0,
        retry_after: float | None = None,
        reason: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
        query: str | None = None,
    ) -> Fault:
        """Answer matching requests with ``status`` and a Kubernetes Status body (not forwarded)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        return self.add(
            Fault(
                method,
                path,
                status=status,
                times=times,
                skip=skip,
                retry_after=retry_after,
                reason=reason,
                message=message,
                delay=delay,
                query=query,
            )
        )

    def conflict(
        self, method: str | None, path: str, *, times: int | None = 1, skip: int = 0
    ) -> Fault:
        return self.fail(method, path, 409, times=times, skip=skip)

    def throttle(
        self, method: str | None, path: str, *, retry_after: float = 1, times: int | None = 1
    ) -> Fault:
        return self.fail(method, path, 429, times=times, retry_after=retry_after)

    def server_error(
        self, method: str | None, path: str, *, status: int = 500, times: int | None = 1
    ) -> Fault:
        return self.fail(method, path, status, times=times)

    def delay(
        self, method: str | None, path: str, seconds: float, *, times: int | None = 1
    ) -> Fault:
        """Hold matching requests for ``seconds`` and then forward them."""
        return self.add(Fault(method, path, delay=seconds, times=times))

    def disconnect(self, method: str | None, path: str, *, times: int | None = 1) -> Fault:
        """Close the client connection without answering."""
        return self.add(Fault(method, path, disconnect=True, times=times))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._seen.clear()

    @property
    def requests(self) -> list[Seen]:
        """Every request handled so far (a copy)."""
        with self._lock:
            return list(self._seen)

    def _pick(self, method: str, path: str, query: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.exhausted or not f.matches(method, path, query):
                    continue
                f.seen += 1
                if f.seen <= f.skip:
                    continue
                f.hits += 1
                return f
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    # ------------------------------------------------------------------ kubeconfig

    def kubeconfig(
        self, *, token: str | None = None, namespace: str | None = None, name: str | None = None
    ) -> Path:
        """A kubeconfig for ``http://127.0.0.1:<port>``.

        Without ``token`` it has no credentials and the proxy uses the admin client
        certificate upstream; with one, the bearer token is forwarded as is.
        """
        d = self._workdir / "proxy-kubeconfigs"
        d.mkdir(parents=True, exist_ok=True)
        who = "token" if token else "admin"
        fname = name or f"proxy-{self.port}-{who}-{namespace or 'default'}.kubeconfig"
        return write_kubeconfig(
            d / fname,
            server=self.url,
            token=token,
            namespace=namespace,
            user="bubu-proxy-token" if token else "bubu-proxy-admin",
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="bubu-fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        if self._startup_error is not None:
            raise RuntimeError("fault proxy did not start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopped.set)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # pragma: no cover - surfaced by start()
            self._startup_error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _ssl(self, admin: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self._ca_path))
        if admin:
            ctx.load_cert_chain(str(self._admin_cert[0]), str(self._admin_cert[1]))
        return ctx

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        timeout = httpx.Timeout(30.0, read=None)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        self._admin_client = httpx.AsyncClient(
            verify=self._ssl(True), timeout=timeout, limits=limits
        )
        self._token_client = httpx.AsyncClient(
            verify=self._ssl(False), timeout=timeout, limits=limits
        )
        self._conns: set[asyncio.Task[None]] = set()
        try:
            self._server = await asyncio.start_server(
                self._serve_conn, "127.0.0.1", 0, limit=1 << 20
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{self.port}"
            self._ready.set()
            await self._stopped.wait()
        finally:
            if self._server is not None:
                self._server.close()
            for t in list(self._conns):
                t.cancel()
            if self._conns:
                await asyncio.gather(*self._conns, return_exceptions=True)
            if self._server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2)
            await self._admin_client.aclose()
            await self._token_client.aclose()

    # ------------------------------------------------------------------ HTTP

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers: list[tuple[str, str]] = []
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers.append((k.strip(), v.strip()))
                hmap = {k.lower(): v for k, v in headers}
                body = await self._read_body(reader, hmap)
                keep_alive = hmap.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                if not await self._handle(method, target, headers, hmap, body, writer):
                    return
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, hmap: dict[str, str]) -> bytes:
        if "chunked" in hmap.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # trailer end (no trailers expected)
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            return b"".join(chunks)
        n = int(hmap.get("content-length", "0") or 0)
        return await reader.readexactly(n) if n else b""

    async def _handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        hmap: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Serve one request. Returns False when the connection must be closed."""
        path, _, query = target.partition("?")
        fault = self._pick(method, path, query)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.disconnect:
                self._record(Seen(method, path, query, 0, fault))
                return False
            if fault.status is not None:
                payload = json.dumps(
                    status_body(
                        fault.status,
                        path,
                        reason=fault.reason,
                        message=fault.message,
                        retry_after=fault.retry_after,
                    )
                ).encode()
                extra = []
                if fault.retry_after is not None:
                    extra.append(("Retry-After", str(max(1, int(round(fault.retry_after))))))
                # Recorded before the client can see the answer: a test that asserts on
                # ``requests`` right after its call returned must find every request in it.
                self._record(Seen(method, path, query, fault.status, fault))
                await self._write_simple(writer, fault.status, payload, extra)
                return True
        if hmap.get("upgrade"):
            payload = json.dumps(
                status_body(501, path, message="the bubu fault proxy does not support upgrades")
            ).encode()
            await self._write_simple(writer, 501, payload, [])
            return False

        fwd_headers = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        if "accept-encoding" not in hmap:  # else httpx adds its own and the client gets gzip
            fwd_headers.append(("Accept-Encoding", "identity"))
        client = self._token_client if "authorization" in hmap else self._admin_client
        req = client.build_request(
            method, self.upstream + target, headers=fwd_headers, content=body or None
        )
        try:
            resp = await client.send(req, stream=True)
        except httpx.HTTPError as exc:
            payload = json.dumps(
                status_body(502, path, message=f"fault proxy upstream error: {type(exc).__name__}")
            ).encode()
            self._record(Seen(method, path, query, 502, fault))
            await self._write_simple(writer, 502, payload, [])
            return True
        try:
            self._record(Seen(method, path, query, resp.status_code, fault))
            out = [f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}\r\n"]
            for k, v in resp.headers.multi_items():
                if k.lower() not in _HOP_BY_HOP:
                    out.append(f"{k}: {v}\r\n")
            no_body = (
                method == "HEAD" or resp.status_code in (204, 304) or 100 <= resp.status_code < 200
            )
            if no_body:
                out.append("Content-Length: 0\r\n\r\n")
                writer.write("".join(out).encode("latin-1"))
                await writer.drain()
                return True
            out.append("Transfer-Encoding: chunked\r\n\r\n")
            writer.write("".join(out).encode("latin-1"))
            async for chunk in resp.aiter_raw():
                if chunk:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        finally:
            await resp.aclose()

    @staticmethod
    async def _write_simple(
        writer: asyncio.StreamWriter, status: int, payload: bytes, extra: list[tuple[str, str]]
    ) -> None:
        phrase = _REASONS.get(status, ("", "Error"))[1]
        head = [
            f"HTTP/1.1 {status} {phrase}\r\n",
            "Content-Type: application/json\r\n",
            f"Content-Length: {len(payload)}\r\n",
            "Cache-Control: no-cache, private\r\n",
        ]
        head += [f"{k}: {v}\r\n" for k, v in extra]
        head.append("\r\n")
        writer.write("".join(head).encode("latin-1") + payload)
        await writer.drain()


def proxy_for(cp: Any) -> FaultProxy:
    """A started FaultProxy in front of the ControlPlane ``cp``."""
    assert cp.workdir is not None
    return FaultProxy(
        cp.url,
        ca_path=cp.ca_path,
        admin_cert=(cp.admin_cert.cert_path, cp.admin_cert.key_path),
        workdir=cp.workdir,
    ).start()
