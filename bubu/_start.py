"""``bubu.run`` owns the process; ``bubu.start`` picks the entry point for the execution mode.

``run`` is the one place that turns an outcome into a process exit code (style.md 6.6): it makes
a new event loop, installs the two-stage SIGTERM/SIGINT handlers (first signal: graceful stop
through ``Shutdown``; second: cancel), runs the entry point and calls ``sys.exit``.

``start`` dispatches on ``BUBU_EXECUTION_MODE`` exactly as Go's ``sdk.Start``: ``""``, ``batch``
and ``job`` run batch; anything else (``streaming``, ``hybrid``...) runs streaming
(go-sdk-core.md (a) Mode dispatch). Streaming is imported lazily from ``bubu._streaming``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from bubu._aio import shutdown as _shutdown
from bubu._runtime.sources import EnvSource, OsEnviron

__all__ = ["BATCH_MODES", "execution_mode", "run", "start"]

_log = logging.getLogger("bubu.start")

BATCH_MODES = frozenset({"", "batch", "job"})

_SIGNAL_CODES = {"SIGTERM": 143, "SIGINT": 130}


def execution_mode(source: EnvSource | None = None) -> str:
    """Return ``BUBU_EXECUTION_MODE`` trimmed and lower-cased (``batch`` when empty)."""
    src = source if source is not None else OsEnviron()
    return (src.get("BUBU_EXECUTION_MODE") or "").strip().lower() or "batch"


async def start(engram: Any, *, source: EnvSource | None = None, **kwargs: Any) -> int:
    """Run ``engram`` in the mode the platform chose (``bubu.start``; Go ``sdk.Start``).

    Args:
        engram: a ``BatchEngram`` for batch modes; a ``StreamingEngram`` (or an engram that is
            both) for streaming modes.
        source: where ``BUBU_*`` values are read.
        **kwargs: passed to the entry point (``shutdown=``, ``client=``...).

    Returns:
        The exit code.
    """
    mode = execution_mode(source)
    if mode in BATCH_MODES:
        from bubu._batch import start_batch

        return await start_batch(engram, source=source, **kwargs)
    if mode == "hybrid":
        from bubu.engram import BatchEngram

        if isinstance(engram, BatchEngram):
            # Go runs streaming for hybrid (Appendix B #8, a bug the spec names); a hybrid Job
            # is a batch step with downstream streaming targets: batch, then the bridge
            # (bubu._hybrid; docs/differences.md).
            from bubu._hybrid import start_hybrid

            return await start_hybrid(engram, source=source, **kwargs)
    # Every other mode is streaming, as in Go.
    from bubu._streaming import start_streaming

    code = await start_streaming(engram, source=source, **kwargs)
    return int(code or 0)


Main = Awaitable[Any] | Callable[[], Awaitable[Any]]


async def _amain(main: Main, grace: float) -> int:
    shutdown = _shutdown.Shutdown(grace=grace)
    _shutdown.set_current(shutdown)
    task = asyncio.current_task()
    assert task is not None
    remove: Callable[[], None] = lambda: None  # noqa: E731 - replaced when handlers install
    if threading.current_thread() is threading.main_thread():
        remove = _shutdown.install_signal_handlers(shutdown, task)
    awaitable: Awaitable[Any] | None = None
    try:
        awaitable = main() if callable(main) else main
        result = await awaitable
    except asyncio.CancelledError:
        # Only a second signal cancels the main task; report it like the shell would.
        return _SIGNAL_CODES.get(shutdown.reason or "", 1)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        _log.exception("unhandled error in the entry point")
        return 1
    finally:
        remove()
        if inspect.iscoroutine(main) and awaitable is None:
            main.close()
    if result is None or result is True:
        return 0
    if isinstance(result, bool):
        return 1
    if isinstance(result, int):
        return result
    return 0


def run(main: Main, *, grace: float = _shutdown.DEFAULT_GRACE) -> NoReturn:
    """Run an entry point on a new event loop and exit the process with its code.

    Example::

        if __name__ == "__main__":
            bubu.run(bubu.start_batch(HelloEngram()))

    Args:
        main: a coroutine (``bubu.start_batch(engram)``) or a zero-argument function that
            returns one. An ``int`` result is the exit code; ``None`` is 0.
        grace: seconds the entry point may take to finish after SIGTERM.
    """
    code = asyncio.run(_amain(main, grace))
    sys.exit(code)
