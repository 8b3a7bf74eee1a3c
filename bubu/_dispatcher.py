"""StoryDispatcher: impulse sessions by caller key (Go ``story_dispatcher``).

See docs/contract/index.md#go-surface.

An impulse maps outside events (a pull request, a chat) to StoryRuns. ``trigger(key=...)``
starts a Story and remembers the run under ``key``; ``stop(key)`` cancels it; ``has_session``,
``session`` and ``forget`` inspect and drop sessions. Sessions live in memory, as in Go.

After every ``trigger`` the impulse counters are updated
(docs/contract/story-trigger.md#impulse-counters): received +1, plus launched +1 on success or
failed +1 on a permanent error (retryable errors, pending decisions and cancellation count only as
received). Unlike Go, which patches the Impulse status after every trigger, the counts go to
``ImpulseStats``, which coalesces them into at most one patch per interval and flushes on shutdown.

Imports ``bubu._triggers``, ``bubu._k8s``, ``bubu._scope`` and ``bubu.errors``.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bubu import _scope
from bubu._k8s import identity
from bubu._triggers import (
    LABEL_STORYRUN,
    ImpulseStats,
    StoryTriggers,
    TriggerResult,
    get_target_story,
)
from bubu.errors import (
    ImpulseSessionExistsError,
    ImpulseSessionNotFoundError,
    StoryRunNotFoundError,
    TriggerError,
)

__all__ = ["DispatchResult", "StoryDispatcher", "StorySession"]


@dataclass(frozen=True, slots=True)
class StorySession:
    """A StoryRun started by the dispatcher under a session key (Go ``StorySession``).

    Attributes:
        key: the caller's session key.
        story_run: the StoryRun name.
        namespace: the StoryRun namespace.
        story_name: the Story that was started.
        started_at: when the dispatcher saw the run start (UTC).
        metadata: ``bubustack.io/storyrun=<safe label>`` plus the caller's metadata (read-only).
    """

    key: str
    story_run: str
    namespace: str
    story_name: str
    started_at: datetime
    metadata: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What ``StoryDispatcher.trigger`` returns (Go ``StoryTriggerResult``).

    Attributes:
        result: the accepted StoryRun.
        session: the session, when a key was given.
    """

    result: TriggerResult
    session: StorySession | None = None

    @property
    def story_run(self) -> str:
        """The StoryRun name."""
        return self.result.story_run


_RESERVED = object()


class StoryDispatcher:
    """Start and stop StoryRuns by session key, counting triggers for the Impulse status.

    Args:
        triggers: the StoryTrigger engine; by default the run's (from ``run_impulse``).
        stats: where counters go; by default the run's ``ImpulseStats`` (None outside an
            Impulse, then nothing is counted).
    """

    def __init__(
        self, *, triggers: StoryTriggers | None = None, stats: ImpulseStats | None = None
    ) -> None:
        self._triggers = triggers
        self._stats = stats
        self._sessions: dict[str, StorySession | object] = {}

    def _engine(self) -> StoryTriggers:
        if self._triggers is not None:
            return self._triggers
        scope = _scope.current()
        engine = scope.find(StoryTriggers) if scope is not None else None
        if engine is not None:
            return engine
        if scope is not None and scope.kube is not None:
            return scope.provide(StoryTriggers(scope.kube, scope.source))
        raise TriggerError(
            "StoryDispatcher needs a Kubernetes client: use it inside run_impulse or an "
            "ImpulseHarness, or pass triggers="
        )

    def _stats_sink(self) -> ImpulseStats | None:
        if self._stats is not None:
            return self._stats
        scope = _scope.current()
        return scope.find(ImpulseStats) if scope is not None else None

    async def trigger(
        self,
        key: str = "",
        *,
        story_name: str | None = None,
        story_namespace: str | None = None,
        inputs: Any = None,
        token: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> DispatchResult:
        """Start a Story, optionally under a session ``key``.

        Args:
            key: the session key; empty means no session is kept.
            story_name: the Story; default ``BUBU_TARGET_STORY_NAME``.
            story_namespace: its namespace; default ``BUBU_TARGET_STORY_NAMESPACE`` when the
                name also came from the environment.
            inputs: the trigger inputs (a JSON object).
            token: a delivery token (idempotent submission: a redelivery gives the same run).
            metadata: caller data stored only in the local session.

        Raises:
            ImpulseSessionExistsError: ``key`` already has an active session.
            TriggerRejectedError, TriggerPendingError, TriggerError: from ``start_story``.
        """
        engine = self._engine()
        if not story_name:
            target = get_target_story(engine.source)
            story_name = target.name
            story_namespace = story_namespace or target.namespace or None
        session_key = (key or "").strip()
        if session_key:
            if session_key in self._sessions:
                raise ImpulseSessionExistsError(f"impulse session already active: {session_key!r}")
            self._sessions[session_key] = _RESERVED  # reserve before the await (Go does too)
        error: BaseException | None = None
        try:
            result = await engine.start(story_name, inputs, story_namespace, token=token)
        except BaseException as exc:
            error = exc
            if session_key:
                self._sessions.pop(session_key, None)
            raise
        finally:
            self._record(error)
        if not session_key:
            return DispatchResult(result=result)
        meta = {LABEL_STORYRUN: identity.safe_label_value(result.story_run)}
        meta.update(metadata or {})
        session = StorySession(
            key=session_key,
            story_run=result.story_run,
            namespace=result.namespace,
            story_name=story_name,
            started_at=datetime.now(UTC),
            metadata=types.MappingProxyType(meta),
        )
        self._sessions[session_key] = session
        return DispatchResult(result=result, session=session)

    def _record(self, error: BaseException | None) -> None:
        stats = self._stats_sink()
        if stats is None:
            return
        if error is None:
            stats.record(received=1, launched=1)
        elif isinstance(error, asyncio.CancelledError) or getattr(error, "retryable", False):
            stats.record(received=1)  # not a durable failure (Go: ErrRetryable, canceled)
        else:
            stats.record(received=1, failed=1)

    async def stop(self, key: str) -> StorySession:
        """Cancel the StoryRun of session ``key`` and drop the session.

        Raises:
            ImpulseSessionNotFoundError: no session for ``key``.
            StoryRunNotFoundError: the run is gone; the session is dropped anyway and is
                available as the error's ``session`` attribute.
            KubernetesError: the stop failed; the session is kept for another try.
        """
        key = (key or "").strip()
        if not key:
            raise ImpulseSessionNotFoundError("session key is required")
        session = self._sessions.pop(key, None)
        if not isinstance(session, StorySession):
            if session is _RESERVED:
                self._sessions[key] = session  # a trigger is still starting it
            raise ImpulseSessionNotFoundError(f"impulse session not found: {key!r}")
        try:
            await self._engine().stop(session.story_run, session.namespace)
        except StoryRunNotFoundError as exc:
            exc.session = session
            raise
        except BaseException:
            self._sessions[key] = session
            raise
        return session

    def has_session(self, key: str) -> bool:
        """Return True when ``key`` has an active (or starting) session."""
        return (key or "").strip() in self._sessions

    def session(self, key: str) -> StorySession | None:
        """Return the session of ``key`` (an immutable copy), or None."""
        found = self._sessions.get((key or "").strip())
        return replace(found) if isinstance(found, StorySession) else None

    def forget(self, key: str) -> StorySession | None:
        """Drop the session of ``key`` without stopping its StoryRun; return it if it existed."""
        found = self._sessions.pop((key or "").strip(), None)
        return found if isinstance(found, StorySession) else None

    def sessions(self) -> list[StorySession]:
        """Return the active sessions."""
        return [s for s in self._sessions.values() if isinstance(s, StorySession)]
