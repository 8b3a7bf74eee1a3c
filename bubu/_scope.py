"""RunScope: what the durable helpers need to know about the current run, in a ContextVar.

Entry points (``start_batch``, streaming, impulse, the harnesses) build one ``RunScope`` per run
and ``activate`` it around the engram's code; ``emit_signal``, ``record_effect``,
``start_story`` and friends call ``current()`` to find the run's environment source, Kubernetes
client, StepRun identity and shutdown request instead of reading globals. A ContextVar makes
tasks the engram spawns inherit the scope, and keeps concurrent runs (tests) apart.

Imports only ``bubu._runtime``, ``bubu._aio`` and ``bubu._k8s`` types (no I/O).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bubu._runtime.sources import EnvSource, OsEnviron

if TYPE_CHECKING:
    from bubu._aio.shutdown import Shutdown
    from bubu._k8s.api import KubeAPI
    from bubu._k8s.status import StatusSink
    from bubu._runtime.context import StoryInfo
    from bubu._runtime.env import RuntimeEnv

__all__ = ["RunScope", "activate", "current"]


@dataclass(eq=False)
class RunScope:
    """The current run, as seen by the helpers.

    Attributes:
        source: where ``BUBU_*`` values are read (``os.environ`` in a pod; a mapping in tests).
        env: the loaded runtime environment, when the entry point loaded it.
        story_info: the step's identity (StoryRun, StepRun names), when known.
        kube: the run's Kubernetes client; None in local mode (no cluster).
        status: where StepRun status writes go (the cluster, or memory in local mode).
        shutdown: the run's stop request, if any.
        triggers: a per-run StoryTriggers engine, cached by ``bubu._triggers``.
        extras: per-run state other helpers cache (signal sequence, effect ledger...).
    """

    source: EnvSource = field(default_factory=OsEnviron)
    env: RuntimeEnv | None = None
    story_info: StoryInfo | None = None
    kube: KubeAPI | None = None
    status: StatusSink | None = None
    shutdown: Shutdown | None = None
    triggers: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def step_run_name(self) -> str:
        """The StepRun name (``BUBU_STEPRUN_NAME``), or ``""`` outside a StepRun."""
        return self.story_info.step_run_id if self.story_info is not None else ""

    @property
    def step_run_namespace(self) -> str:
        """The StepRun namespace (``BUBU_STEPRUN_NAMESPACE``), or ``""``."""
        return self.story_info.step_run_namespace if self.story_info is not None else ""


_current: ContextVar[RunScope | None] = ContextVar("bubu_run_scope", default=None)


def current() -> RunScope | None:
    """Return the active RunScope, or None outside any run."""
    return _current.get()


@contextlib.contextmanager
def activate(scope: RunScope) -> Iterator[RunScope]:
    """Make ``scope`` current for the code inside the ``with`` block (and tasks it spawns)."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
