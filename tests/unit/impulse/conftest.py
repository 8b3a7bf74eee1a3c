"""Fixtures for the impulse/trigger/effect/signal unit tests: an in-memory cluster in a RunScope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bubu import _scope
from bubu._runtime.sources import MappingSource
from bubu.testkit._fakes import EffectClaimPhases, FakeCluster, StopStoryController, TriggerResolver

NS = "team-a"
STEP_RUN = "run-1-step-a"


class World:
    """The fake cluster, its controllers and the env of one test."""

    def __init__(self) -> None:
        self.cluster = FakeCluster(NS)
        self.resolver = TriggerResolver(self.cluster)
        EffectClaimPhases(self.cluster)
        StopStoryController(self.cluster)
        self.cluster.seed_story("story", NS)
        self.cluster.seed_step_run(STEP_RUN, NS, story_run="run-1", step_id="step-a")
        self.env: dict[str, str] = {
            "BUBU_STEPRUN_NAME": STEP_RUN,
            "BUBU_STEPRUN_NAMESPACE": NS,
            "BUBU_K8S_OPERATION_TIMEOUT": "2s",
        }
        self.scope: _scope.RunScope | None = None

    def activate(self, **env: str) -> _scope.RunScope:
        self.env.update(env)
        self.scope = _scope.RunScope(source=MappingSource(self.env), kube=self.cluster)
        return self.scope


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    scope = w.activate()
    with _scope.activate(scope):
        yield w


@pytest.fixture
def scoped():
    """Re-activate a World with extra env: ``with scoped(world, BUBU_X="1"): ...``."""

    def make(w: World, **env: str):
        return _scope.activate(w.activate(**env))

    return make
