"""Stand-in controllers for the absent BubuStack operator (crds.md 9).

* ``TriggerResolverStandIn``: resolves StoryTriggers (crds.md 9.2, with the controller's
  validation), sharing the decision code of ``bubu.testkit``'s in-memory resolver.
* ``EffectClaimStandIn``: derives ``EffectClaim.status.phase`` (9.5) and records every claim
  write the webhook would have rejected (9.4).
* ``StopStoryStandIn``: finishes StoryRuns whose ``spec.cancelRequested`` is set (9.3).

Each is an async context manager that runs a background task against a real API server with
admin credentials; ``python -m tests._standins`` runs them as a process (benchmarks).
"""

from tests._standins.controllers import (
    EffectClaimStandIn,
    StandIns,
    StopStoryStandIn,
    TriggerResolverStandIn,
)

__all__ = ["EffectClaimStandIn", "StandIns", "StopStoryStandIn", "TriggerResolverStandIn"]
