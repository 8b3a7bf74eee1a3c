"""Graceful shutdown: the mechanism, not the policy.

See docs/contract/design.md#cancellation-and-shutdown.

``Shutdown`` records that a stop was requested, why, and how long the entry point may take
to finish (the grace). ``install_signal_handlers`` makes SIGTERM/SIGINT two-stage, as grpclib
does: the first signal requests a graceful stop, the second cancels the main task. Only the
owner of the process (``bubu._start.run`` and the CLI) installs handlers, and only from the
main thread (as kopf does); entry points and harnesses take a ``Shutdown`` and watch it.

The Go SDK installs no signal handler for batch (docs/contract/batch-lifecycle.md#signals); see
docs/differences.md.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar

__all__ = ["DEFAULT_GRACE", "Shutdown", "current", "install_signal_handlers", "set_current"]

DEFAULT_GRACE = 25.0
"""Seconds an entry point may spend finishing after a stop request.

Kubernetes waits ``terminationGracePeriodSeconds`` (30 s by default) between SIGTERM and
SIGKILL; 25 s leaves room for the final status write and process exit.
"""

_log = logging.getLogger("bubu.shutdown")


class Shutdown:
    """A stop request shared by the process owner and the entry point.

    Args:
        grace: seconds the entry point may take to finish once a stop is requested.
    """

    def __init__(self, grace: float = DEFAULT_GRACE) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace}")
        self.grace = grace
        self._event = asyncio.Event()
        self._reason: str | None = None
        self._requested_at: float | None = None
        self._callbacks: list[Callable[[str], None]] = []

    @property
    def requested(self) -> bool:
        """True once ``request()`` was called."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why the stop was requested (``"SIGTERM"``), or None."""
        return self._reason

    def deadline(self) -> float | None:
        """Return the ``time.monotonic()`` instant the grace ends, or None before a request."""
        if self._requested_at is None:
            return None
        return self._requested_at + self.grace

    def request(self, reason: str) -> bool:
        """Request a graceful stop; only the first call counts.

        Returns:
            True for the first request, False when one was already made.
        """
        if self._reason is not None:
            return False
        self._reason = reason
        self._requested_at = time.monotonic()
        self._event.set()
        for callback in list(self._callbacks):
            try:
                callback(reason)
            except Exception:
                _log.exception("shutdown callback failed")
        return True

    def add_callback(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` on the first request (at once if already requested)."""
        if self._reason is not None:
            callback(self._reason)
            return
        self._callbacks.append(callback)

    def remove_callback(self, callback: Callable[[str], None]) -> None:
        """Forget a callback registered with ``add_callback``; unknown callbacks are ignored."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    async def wait(self) -> str:
        """Wait for a stop request and return its reason."""
        await self._event.wait()
        assert self._reason is not None
        return self._reason


def install_signal_handlers(
    shutdown: Shutdown,
    main_task: asyncio.Task[object],
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Callable[[], None]:
    """Make SIGTERM/SIGINT two-stage for ``main_task`` on the running loop.

    The first signal calls ``shutdown.request(<signal name>)``; any later one cancels
    ``main_task`` (the impatient second Ctrl-C).

    Args:
        shutdown: the request to set on the first signal.
        main_task: the task to cancel on the second signal.
        signals: the signals to handle.

    Returns:
        A function that removes the handlers again.

    Raises:
        RuntimeError: not called from the main thread (signal handlers live there only).
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers must run in the main thread")
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if shutdown.request(sig.name):
            _log.info("stop requested by %s; finishing within %.0fs", sig.name, shutdown.grace)
        else:
            _log.warning("second %s: cancelling now", sig.name)
            main_task.cancel(f"second {sig.name}")

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)

    def remove() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return remove


_current: ContextVar[Shutdown | None] = ContextVar("bubu_process_shutdown", default=None)


def current() -> Shutdown | None:
    """Return the process's ``Shutdown`` set by the owner of the process, if any.

    ``bubu.run(bubu.start_batch(engram))`` creates the coroutine before ``run`` exists, so the
    entry point cannot receive the ``Shutdown`` as an argument; it finds it here instead.
    """
    return _current.get()


def set_current(shutdown: Shutdown | None) -> None:
    """Make ``shutdown`` the current one for this context (and tasks created from it)."""
    _current.set(shutdown)
