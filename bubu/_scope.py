"""RunScope: what the durable helpers need to know about the current run, in a ContextVar.

The start-up sequence (``bubu._startup``) builds one ``RunScope`` per run and ``activate``\\ s it
around the engram's code (the harnesses do the same); ``emit_signal``, ``record_effect``,
``start_story`` and friends call ``current()`` to find the run's environment, Kubernetes client,
StepRun identity and shutdown request instead of reading globals. A ContextVar makes tasks the
engram spawns inherit the scope, and keeps concurrent runs (tests) apart.

Helpers above this layer keep one per-run engine each (the trigger engine, the signal sequence,
the effect ledger, the impulse counters): :meth:`RunScope.engine` creates it on first use and
keys it by its class, so the scope stays typed without importing the layers that define them.

Imports only ``bubu._runtime``, ``bubu._aio`` and ``bubu._k8s`` types (no I/O).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from bubu._runtime.env import RuntimeEnv, load_env
from bubu._runtime.redact import SecretMask
from bubu._runtime.sources import EnvSource, OsEnviron

if TYPE_CHECKING:
    from bubu._aio.shutdown import Shutdown
    from bubu._k8s.api import KubeAPI
    from bubu._k8s.status import StatusSink
    from bubu._runtime.context import StoryInfo

__all__ = ["RunScope", "activate", "current", "env_of"]

E = TypeVar("E")


class RunScope:
    """The current run, as seen by the helpers.

    Attributes:
        source: where ``BUBU_*`` values are read (``os.environ`` in a pod; a mapping in tests).
        env: the runtime environment, loaded once by the start-up (or on first use).
        story_info: the step's identity (StoryRun, StepRun names), when known.
        kube: the run's Kubernetes client; None in local mode (no cluster).
        status: where StepRun status writes go (the cluster, or memory in local mode).
        shutdown: the run's stop request, if any.
        mask: the run's secret values, for helpers that persist text (effect details...).
        mode: the entry point that runs (``batch``, ``streaming``, ``impulse``, ``hybrid``).
    """

    # A plain class with the constructor and repr a dataclass(eq=False) would generate: building
    # the dataclass took ~0.5 ms of every run's start (docs/performance.md, spawn-to-handshake).
    def __init__(  # noqa: PLR0917 - the dataclass constructor it replaces
        self,
        source: EnvSource | None = None,
        env: RuntimeEnv | None = None,
        story_info: StoryInfo | None = None,
        kube: KubeAPI | None = None,
        status: StatusSink | None = None,
        shutdown: Shutdown | None = None,
        mask: SecretMask | None = None,
        mode: str = "",
        _engines: dict[type, object] | None = None,
    ) -> None:
        self.source: EnvSource = OsEnviron() if source is None else source
        self.env = env
        self.story_info = story_info
        self.kube = kube
        self.status = status
        self.shutdown = shutdown
        self.mask = SecretMask() if mask is None else mask
        self.mode = mode
        self._engines: dict[type, object] = {} if _engines is None else _engines

    def __repr__(self) -> str:
        return (
            f"RunScope(source={self.source!r}, env={self.env!r}, story_info={self.story_info!r}, "
            f"kube={self.kube!r}, status={self.status!r}, shutdown={self.shutdown!r}, "
            f"mask={self.mask!r}, mode={self.mode!r})"
        )

    @property
    def step_run_name(self) -> str:
        """The StepRun name (``BUBU_STEPRUN_NAME``), or ``""`` outside a StepRun."""
        if self.story_info is not None:
            return self.story_info.step_run_id
        return self.runtime_env().steprun_name

    @property
    def step_run_namespace(self) -> str:
        """The StepRun namespace (``BUBU_STEPRUN_NAMESPACE``), or ``""``."""
        if self.story_info is not None:
            return self.story_info.step_run_namespace
        return self.runtime_env().steprun_namespace

    def runtime_env(self) -> RuntimeEnv:
        """The run's environment, loaded from ``source`` on first use when nobody loaded it.

        Raises:
            ContractError: a variable that cannot be used, named.
        """
        if self.env is None:
            self.env = load_env(self.source)
        return self.env

    def engine(self, kind: type[E], create: Callable[[], E]) -> E:
        """Return the run's ``kind`` engine, calling ``create()`` the first time."""
        existing = self._engines.get(kind)
        if isinstance(existing, kind):
            return existing
        made = create()
        self._engines[kind] = made
        return made

    def find(self, kind: type[E]) -> E | None:
        """Return the run's ``kind`` engine if one was made or provided, else None."""
        existing = self._engines.get(kind)
        return existing if isinstance(existing, kind) else None

    def provide(self, engine: E, kind: type[E] | None = None) -> E:
        """Make ``engine`` the run's engine of its class (or of ``kind``) and return it."""
        self._engines[kind if kind is not None else type(engine)] = engine
        return engine


_current: ContextVar[RunScope | None] = ContextVar("bubu_run_scope", default=None)


def current() -> RunScope | None:
    """Return the active RunScope, or None outside any run."""
    return _current.get()


def env_of(scope: RunScope | None, source: EnvSource | None = None) -> RuntimeEnv:
    """The runtime environment of ``scope``, or loaded from ``source`` outside any run.

    Raises:
        ContractError: a variable that cannot be used, named.
    """
    if scope is not None:
        return scope.runtime_env()
    return load_env(source)


@contextlib.contextmanager
def activate(scope: RunScope) -> Iterator[RunScope]:
    """Make ``scope`` current for the code inside the ``with`` block (and tasks it spawns)."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
