"""pytest plugin for engram authors (``pytest11`` entry point ``bubu``).

pytest loads this module in every project that installs bubu, so it imports nothing heavy at
module level: the fixtures import what they need inside their bodies (style.md 6.3, 6.7).
Fixtures are prefixed ``bubu_`` and never autouse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bubu.testkit._batch import BatchHarness


@pytest.fixture
def bubu_batch_harness() -> Callable[..., BatchHarness]:
    """Return a factory for ``bubu.testkit.BatchHarness`` (same keyword arguments).

    Example::

        async def test_hello(bubu_batch_harness):
            result = await bubu_batch_harness(engram=Hello(), inputs={"name": "Ada"}).run()
    """
    from bubu.testkit._batch import BatchHarness

    def factory(**kwargs: Any) -> BatchHarness:
        return BatchHarness(**kwargs)

    return factory


@pytest.fixture
def bubu_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Return ``set(**values)`` that sets ``BUBU_<NAME>`` variables for this test only.

    Keys are upper-cased and prefixed: ``bubu_env(step_timeout="5s")`` sets
    ``BUBU_STEP_TIMEOUT=5s``; a key already starting with ``BUBU_`` is used as is. ``None``
    removes the variable. Everything is restored after the test.
    """

    def set_env(**values: object) -> None:
        for key, value in values.items():
            name = key.upper()
            if not name.startswith("BUBU_"):
                name = f"BUBU_{name}"
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))

    yield set_env
