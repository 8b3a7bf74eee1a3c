"""``bubu.run`` owns the process; ``bubu.start`` picks the entry point for the execution mode.

``run`` is the one place that turns an outcome into a process exit code
(docs/contract/design.md#cancellation-and-shutdown): it hands the entry point to
``bubu._startup.run_process`` (new event loop, two-stage SIGTERM/SIGINT handlers - first signal:
graceful stop through ``Shutdown``; second: cancel, still without a traceback - and the output guard
that masks secrets for the whole process) and calls ``sys.exit``.

``start`` dispatches on ``BUBU_EXECUTION_MODE`` exactly as Go's ``sdk.Start``: ``""``, ``batch``
and ``job`` run batch; anything else (``streaming``, ``hybrid``...) runs streaming
(docs/contract/runtime-environment.md#mode). Streaming is imported lazily from ``bubu._streaming``.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from bubu._aio import shutdown as _shutdown
from bubu._runtime.env import execution_mode as _execution_mode
from bubu._runtime.sources import EnvSource
from bubu._startup import Main, run_process

__all__ = ["BATCH_MODES", "execution_mode", "run", "start"]

BATCH_MODES = frozenset({"", "batch", "job"})


def execution_mode(source: EnvSource | None = None) -> str:
    """Return ``BUBU_EXECUTION_MODE`` trimmed and lower-cased (``batch`` when empty)."""
    return _execution_mode(source)


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
            # Go runs streaming for hybrid (a Go bug, docs/differences.md); a hybrid Job
            # is a batch step with downstream streaming targets: batch, then the bridge
            # (bubu._hybrid; docs/differences.md).
            from bubu._hybrid import start_hybrid

            return await start_hybrid(engram, source=source, **kwargs)
    # Every other mode is streaming, as in Go.
    from bubu._streaming import start_streaming

    code = await start_streaming(engram, source=source, **kwargs)
    return int(code or 0)


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
    sys.exit(run_process(main, grace=grace))
