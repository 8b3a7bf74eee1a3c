"""Jittered exponential backoff (docs/contract/steprun-status.md#merge-rules).

The StepRun status patch loop starts at 100 ms, doubles, and multiplies each delay by a factor
drawn uniformly from [0.75, 1.25) (the Go SDK's +-25 % jitter).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff policy; iterate ``delays()`` for successive waits in seconds.

    Attributes:
        base: the first delay before jitter.
        factor: the growth factor per attempt.
        maximum: the cap applied before jitter.
        jitter: the relative jitter; 0.25 draws the multiplier from [0.75, 1.25).
    """

    base: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.base < 0 or self.maximum < 0:
            raise ValueError("backoff base and maximum must be >= 0")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Return the wait after failed attempt number ``attempt`` (0-based)."""
        raw = min(self.maximum, self.base * self.factor ** max(0, attempt))
        draw = (rng or random).random()
        return raw * (1 - self.jitter + 2 * self.jitter * draw)

    def delays(self, *, rng: random.Random | None = None) -> Iterator[float]:
        """Yield an endless sequence of jittered delays."""
        attempt = 0
        while True:
            yield self.delay(attempt, rng=rng)
            attempt += 1
