"""The one start-up sequence of every run: batch, streaming, impulse and hybrid (dual) mode.

Every entry point (``start_batch``, ``start_streaming``, ``run_impulse``, ``start_hybrid``, and
``bubu run`` through them) starts the same way, in this order (docs/architecture.md "Start-up"):

1. **process** (only the owner of the process: ``bubu.run`` and the ``bubu`` command):
   :func:`run_process` makes the event loop, the :class:`~bubu._aio.shutdown.Shutdown`, the
   two-stage SIGTERM/SIGINT handlers and the guard below for the whole process, runs the entry
   point and turns its outcome into the exit code, without a traceback for a second signal;
2. **guard** (:func:`guard`): the secret mask; logging (JSON lines unless the application
   configured logging; the mask and the run's context fields on every handler); standard output
   and error masked; uncaught exceptions masked. Nested guards share the outer one, so the mask
   an entry point learns also covers what the process owner prints after it returns;
3. **environment** (:meth:`Startup.load`): ``BUBU_*`` loaded once into the typed
   :class:`~bubu._runtime.context.RunContext`; a :class:`~bubu.errors.ContractError` names the
   variable and the entry point reports it;
4. **telemetry**: ``BUBU_SDK_METRICS_ENABLED`` / ``BUBU_SDK_TRACING_ENABLED`` applied;
5. **context fields**: ``mode`` and the story/step identity on every log line;
6. **scope** (:meth:`Startup.activate`): the typed :class:`~bubu._scope.RunScope` active around
   the engram's code, so the helpers find the run there.

The entry point then decodes its config, expands secrets (:meth:`Startup.expand_secrets`, which
teaches the mask their values), and runs its own lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import IO, Any, Final, Literal

import msgspec

from bubu import _logging, _telemetry
from bubu._aio import shutdown as _shutdown
from bubu._aio.shutdown import Shutdown
from bubu._runtime.context import RunContext, load_run_context
from bubu._runtime.env import RuntimeEnv, debug_enabled
from bubu._runtime.redact import SecretMask
from bubu._runtime.secrets import Secrets, expand_secrets
from bubu._runtime.sources import EnvSource, OsEnviron
from bubu._scope import RunScope, activate

__all__ = ["Guard", "Kind", "Main", "Startup", "begin", "current_guard", "guard", "run_process"]

_log = logging.getLogger("bubu.start")

Kind = Literal["batch", "streaming", "impulse", "hybrid"]

SIGNAL_EXIT: Final = {"SIGTERM": 143, "SIGINT": 130}
"""Exit codes for a process stopped by a signal: 128 + the signal number, as shells report."""


# A msgspec Struct rather than a dataclass(eq=False): the same constructor, repr, identity
# equality and mutability, defined in a tenth of the time (docs/performance.md,
# spawn-to-handshake).
class Guard(msgspec.Struct, eq=False):
    """What protects a run's output: the secret mask and the context fields of its log lines.

    Attributes:
        mask: every known secret value of the run (its forms are masked, see ``SecretMask``).
        fields: the filter that adds ``mode`` and the step identity to every log record.
    """

    mask: SecretMask
    fields: _logging.ContextFilter


_guard: ContextVar[Guard | None] = ContextVar("bubu_guard", default=None)


def current_guard() -> Guard | None:
    """The guard in force for this context, if any."""
    return _guard.get()


@contextlib.contextmanager
def _capture_output(mask: SecretMask) -> Iterator[None]:
    """Mask ``sys.stdout``/``sys.stderr`` and uncaught exceptions (main and other threads)."""
    saved_hook, saved_thread_hook = sys.excepthook, threading.excepthook
    out = _logging.MaskingStream(sys.stdout, mask)
    err = _logging.MaskingStream(sys.stderr, mask)
    sys.stdout, sys.stderr = out, err
    sys.excepthook = _logging.masking_excepthook(mask)
    print_masked = _logging.masking_excepthook(mask)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or args.exc_type is SystemExit:
            return
        print_masked(args.exc_type, args.exc_value, args.exc_traceback)

    threading.excepthook = thread_hook
    try:
        yield
    finally:
        # Take our wrapper out of whatever is installed now: another run may have wrapped it
        # meanwhile (two runs in one process), or a test framework swapped the stream.
        sys.stdout = _unwrap(sys.stdout, out)
        sys.stderr = _unwrap(sys.stderr, err)
        sys.excepthook = saved_hook
        threading.excepthook = saved_thread_hook


def _unwrap(current: Any, ours: _logging.MaskingStream) -> Any:
    """``current`` without the wrapper ``ours``."""
    inner = ours.inner
    if current is ours:
        return inner
    node: Any = current
    while isinstance(node, _logging.MaskingStream):
        below: Any = node.inner
        if below is ours:
            node.replace_inner(inner)
            break
        node = below
    return current


@contextlib.contextmanager
def guard(
    *,
    debug: bool = False,
    log_stream: IO[str] | None = None,
    install_logging: bool = True,
    capture_output: bool = True,
    secret_values: Iterable[str] = (),
    log_level: int | None = None,
) -> Iterator[Guard]:
    """Install the output protections of a run (step 2 of the sequence); undo them on exit.

    Inside an outer guard (the process owner's) this only adds ``secret_values`` to its mask.

    Args:
        debug: log at DEBUG (``BUBU_DEBUG``).
        log_stream: where the JSON handler writes; standard output by default (as Go).
        install_logging: attach the JSON handler when nobody configured logging (harnesses pass
            False: a library does not configure logging). The mask and the fields go on the
            existing handlers either way.
        capture_output: mask ``sys.stdout``/``sys.stderr`` and uncaught exceptions too.
        secret_values: values to mask from the start (``bubu run --secret``).
        log_level: the ``bubu`` logger's level, instead of the one ``debug`` gives.
    """
    active = _guard.get()
    if active is not None:
        active.mask.add(secret_values)
        yield active
        return
    g = Guard(mask=SecretMask(secret_values), fields=_logging.ContextFilter())
    token = _guard.set(g)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                _logging.install(
                    debug=debug,
                    stream=log_stream,
                    mask=g.mask,
                    fields=g.fields,
                    configure=install_logging,
                    level=log_level,
                )
            )
            if capture_output:
                stack.enter_context(_capture_output(g.mask))
            yield g
    finally:
        _guard.reset(token)


def _context_fields(kind: Kind, env: RuntimeEnv) -> dict[str, str]:
    pairs = (
        ("mode", kind),
        ("story", env.story_name),
        ("storyRun", env.storyrun_id),
        ("step", env.step_name),
        ("stepRun", env.steprun_name),
        ("impulse", env.impulse_name),
    )
    return {key: value for key, value in pairs if value}


class Startup:
    """One run's start-up state, created by :func:`begin`: the source, the stop request, the
    guard, and (after :meth:`load`) the run context and the scope."""

    def __init__(
        self, kind: Kind, source: EnvSource, shutdown: Shutdown | None, guard: Guard
    ) -> None:
        self.kind: Kind = kind
        self.source = source
        self.shutdown = shutdown
        self.guard = guard
        self.scope = RunScope(source=source, shutdown=shutdown, mask=guard.mask, mode=kind)
        self._run: RunContext | None = None
        self._stack = contextlib.ExitStack()

    @property
    def mask(self) -> SecretMask:
        """The run's secret mask."""
        return self.guard.mask

    @property
    def run(self) -> RunContext:
        """The run context (after :meth:`load`)."""
        if self._run is None:
            raise RuntimeError("Startup.load() has not run")
        return self._run

    def load(self) -> RunContext:
        """Load the environment once (step 3), then telemetry (4) and the context fields (5).

        Raises:
            ContractError: a variable that cannot be used, named; nothing else ran.
        """
        run = load_run_context(self.source)
        self._run = run
        self.scope.env = run.env
        self.scope.story_info = run.story_info
        self._stack.enter_context(
            _telemetry.configured(metrics=run.env.metrics_enabled, tracing=run.env.tracing_enabled)
        )
        fields = _context_fields(self.kind, run.env)
        current = self.guard.fields.fields
        # An outer entry point (hybrid around batch) keeps its mode on the lines.
        fields["mode"] = current.get("mode", self.kind)
        current.update(fields)
        return run

    def learn(self, secrets: Secrets) -> Secrets:
        """Mask the values of ``secrets`` from now on; returns them."""
        self.guard.mask.add(secrets.get_all().values())
        return secrets

    def expand_secrets(self, override: Secrets | None = None) -> Secrets:
        """Expand ``BUBU_SECRET_*`` (or take ``override``) and teach the mask their values.

        Raises:
            SecretExpansionError: a descriptor cannot be expanded (fails closed; the message
                names the secret, never a value).
        """
        if override is not None:
            return self.learn(override)
        return self.learn(expand_secrets(self.run.secret_descriptors, self.source))

    def activate(self) -> contextlib.AbstractContextManager[RunScope]:
        """Make the run scope current (step 6) for a ``with`` block."""
        return activate(self.scope)

    def close(self) -> None:
        """Undo what :meth:`load` configured (the telemetry switches)."""
        self._stack.close()


@contextlib.contextmanager
def begin(
    kind: Kind,
    *,
    source: EnvSource | None = None,
    shutdown: Shutdown | None = None,
    log_stream: IO[str] | None = None,
    secret_values: Iterable[str] = (),
    install_logging: bool = True,
    capture_output: bool = True,
) -> Iterator[Startup]:
    """Start a run of ``kind``: resolve the source and the stop request, install the guard.

    Call :meth:`Startup.load` next (the entry point decides how to report a contract error),
    then :meth:`Startup.activate` around the engram's code.

    Args:
        kind: the entry point (its name goes on every log line).
        source: where ``BUBU_*`` values are read; ``os.environ`` by default.
        shutdown: the stop request; by default the one the process owner installed, if any.
        log_stream: where the JSON handler writes (standard output by default).
        secret_values: values to mask from the start.
        install_logging: see :func:`guard`.
        capture_output: see :func:`guard`.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    stop = shutdown if shutdown is not None else _shutdown.current()
    with guard(
        debug=debug_enabled(src),
        log_stream=log_stream,
        install_logging=install_logging,
        capture_output=capture_output,
        secret_values=secret_values,
    ) as g:
        # The outermost entry point names the mode (hybrid around batch stays "hybrid").
        g.fields.fields.setdefault("mode", kind)
        startup = Startup(kind, src, stop, g)
        try:
            yield startup
        finally:
            startup.close()


Main = Awaitable[Any] | Callable[[], Awaitable[Any]]


def _exit_code(result: Any) -> int:
    if result is None or result is True:
        return 0
    if isinstance(result, bool):
        return 1
    if isinstance(result, int):
        return result
    return 0


async def _amain(
    main: Main,
    grace: float,
    *,
    debug: bool,
    log_stream: IO[str] | None,
    secret_values: Iterable[str],
    on_shutdown: Callable[[Shutdown], None] | None,
    log_level: int | None,
) -> int:
    shutdown = Shutdown(grace=grace)
    _shutdown.set_current(shutdown)
    if on_shutdown is not None:
        on_shutdown(shutdown)
    task = asyncio.current_task()
    assert task is not None
    remove: Callable[[], None] = lambda: None  # noqa: E731 - replaced when handlers install
    awaitable: Awaitable[Any] | None = None
    with guard(
        debug=debug, log_stream=log_stream, secret_values=secret_values, log_level=log_level
    ):
        if threading.current_thread() is threading.main_thread():
            remove = _shutdown.install_signal_handlers(shutdown, task)
        try:
            awaitable = main() if callable(main) else main
            result = await awaitable
        except asyncio.CancelledError:
            # Only a second signal cancels the main task (the entry point wrote its terminal
            # status while unwinding): report it as the shell would, without a traceback.
            return SIGNAL_EXIT.get(shutdown.reason or "", 1)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            # Logged inside the guard: the traceback is JSON and its secrets are masked.
            _log.exception("unhandled error in the entry point")
            return 1
        finally:
            remove()
            if inspect.iscoroutine(main) and awaitable is None:
                main.close()
    return _exit_code(result)


def run_process(
    main: Main,
    *,
    grace: float = _shutdown.DEFAULT_GRACE,
    debug: bool | None = None,
    log_stream: IO[str] | None = None,
    secret_values: Iterable[str] = (),
    on_shutdown: Callable[[Shutdown], None] | None = None,
    log_level: int | None = None,
) -> int:
    """Own the process for one entry point (step 1): loop, stop request, signals, guard.

    Args:
        main: a coroutine, or a zero-argument function returning one. An ``int`` result is the
            exit code; ``None``/``True`` is 0, ``False`` 1.
        grace: seconds the entry point may take to finish after the first SIGTERM/SIGINT.
        debug: ``BUBU_DEBUG`` (read from the environment when None).
        log_stream: where the JSON handler writes (standard output by default).
        secret_values: values to mask from the start (the CLI's ``--secret`` values).
        on_shutdown: called with the process's ``Shutdown`` before ``main`` starts.
        log_level: the ``bubu`` logger's level, instead of the one ``debug`` gives.

    Returns:
        The exit code: the entry point's, 1 for an unhandled error, 128+N after a second
        signal N.
    """
    return asyncio.run(
        _amain(
            main,
            grace,
            debug=debug_enabled(OsEnviron()) if debug is None else debug,
            log_stream=log_stream,
            secret_values=tuple(secret_values),
            on_shutdown=on_shutdown,
            log_level=log_level,
        )
    )
