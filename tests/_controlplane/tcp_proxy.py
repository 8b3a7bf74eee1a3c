"""A loopback TCP relay in front of the API server: counts connections, cuts or freezes them.

TLS passes through untouched (the client still verifies the API server's certificate, which is
valid for ``127.0.0.1``), so what the relay sees is what the API server sees: one accepted
connection is one TCP connection and one TLS handshake. Runs its own event loop in a thread, so
it works the same under pytest-asyncio and around ``asyncio.run``.

    with TcpProxy("127.0.0.1", port) as proxy:
        kubeconfig = cp.write_kubeconfig(path, server=proxy.url)
        ...
        assert proxy.accepted == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self


class TcpProxy:
    """Relay ``127.0.0.1:<port>`` to ``upstream``; ``accepted`` counts client connections."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing: asyncio.Event | None = None  # created on the relay's loop
        self._lock = threading.Lock()
        self.accepted = 0
        self.port = 0

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def live(self) -> int:
        """Connections currently open through the relay."""
        with self._lock:
            return len(self._pairs)

    def start(self) -> Self:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        with self._lock:
            self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
            )
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for w in pair:
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                assert self._flowing is not None
                await self._flowing.wait()  # frozen: hold the bytes, answer nothing
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def cut(self) -> int:
        """Reset every open connection (both sides); return how many were cut."""

        async def _cut() -> int:
            with self._lock:
                pairs = list(self._pairs)
            for pair in pairs:
                for w in pair:
                    w.transport.abort()
            return len(pairs)

        return asyncio.run_coroutine_threadsafe(_cut(), self._loop).result(timeout=10)

    def _on_loop(self, fn: Callable[[], None]) -> None:
        async def call() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)

    def freeze(self) -> None:
        """Stop relaying bytes (a silent network partition); connections stay open."""
        assert self._flowing is not None
        self._on_loop(self._flowing.clear)

    def thaw(self) -> None:
        """Relay again."""
        if self._flowing is not None and self._loop.is_running():
            self._on_loop(self._flowing.set)

    def stop(self) -> None:
        """Close the listener and every connection, then the relay's loop."""
        self.thaw()

        async def _shutdown() -> None:
            if self._server is not None:
                self._server.close()
            with self._lock:
                pairs = list(self._pairs)
            for pair in pairs:
                for w in pair:
                    w.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
