"""pytest plugin for engram and impulse authors (``pytest11`` entry point ``bubu``).

pytest loads this module in every project that installs bubu, so it imports nothing heavy at
module level: the fixtures import what they need inside their bodies (docs/contract/design.md,
"Cheap import"). Fixtures are prefixed ``bubu_`` and never autouse.

Async tests work without configuration: when pytest-asyncio is installed (``pip install
"bubu[testing]"``), this plugin changes two of its *defaults*, never an explicit setting:

* ``asyncio_mode`` defaults to ``auto``, so ``async def test_...`` runs without a marker and a
  plain ``@pytest.fixture`` may be ``async def``;
* ``asyncio_default_fixture_loop_scope`` defaults to ``function`` (pytest-asyncio's own future
  default), which also silences its "option is unset" deprecation warning.

A project that sets either option (in ``pyproject.toml``, ``pytest.ini``, ``setup.cfg`` or on
the command line) keeps its value; a project that mixes asyncio with trio or anyio tests should
set ``asyncio_mode = "strict"`` as pytest-asyncio recommends. Without pytest-asyncio, an
``async def`` test fails with a message that says which extra to install.

Fixtures (each documented on its function):

========================== =====================================================================
``bubu_batch_harness``      factory for :class:`bubu.testkit.BatchHarness`
``bubu_stream_harness``     factory for :class:`bubu.testkit.StreamHarness`
``bubu_impulse_harness``    factory for :class:`bubu.testkit.ImpulseHarness` (stopped at teardown)
``bubu_fake_cluster``       a :class:`bubu.testkit.FakeCluster` with the operator stand-ins
``bubu_local_connector``    a started :class:`bubu.testkit.LocalConnector` on loopback
``bubu_env``                set ``BUBU_*`` variables for one test
========================== =====================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bubu.testkit._batch import BatchHarness
    from bubu.testkit._connector import LocalConnector
    from bubu.testkit._fakes import FakeCluster
    from bubu.testkit._impulse import ImpulseHarness
    from bubu.testkit._stream import StreamHarness

_ASYNCIO_DEFAULTS = {
    "asyncio_mode": "auto",
    "asyncio_default_fixture_loop_scope": "function",
}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Give pytest-asyncio's ini options bubu's defaults (an explicit setting still wins).

    This hook runs once every ``pytest11`` plugin is registered (so pytest-asyncio's options
    exist, whatever the load order) and before any plugin reads them in ``pytest_configure``.
    Registering an ini name again replaces only its help text, type and default
    (``Parser.addini``); a value from a config file or ``-o`` is still read first.
    """
    if not early_config.pluginmanager.has_plugin("asyncio"):
        return
    parser.addini(
        "asyncio_mode",
        help="default value for --asyncio-mode (bubu's default: auto)",
        default=_ASYNCIO_DEFAULTS["asyncio_mode"],
    )
    parser.addini(
        "asyncio_default_fixture_loop_scope",
        type="string",
        help="default event loop scope of async fixtures (bubu's default: function)",
        default=_ASYNCIO_DEFAULTS["asyncio_default_fixture_loop_scope"],
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Without pytest-asyncio, fail an ``async def`` test with the fix instead of pytest's
    generic "async def functions are not natively supported"."""
    if pyfuncitem.config.pluginmanager.has_plugin("asyncio"):
        return None
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        pytest.fail(
            f"{pyfuncitem.name} is an async test, and async tests need pytest-asyncio: "
            'pip install "bubu[testing]" (bubu then runs async tests without configuration)',
            pytrace=False,
        )
    return None


@pytest.fixture
def bubu_batch_harness() -> Callable[..., BatchHarness]:
    """Return a factory for :class:`bubu.testkit.BatchHarness` (same keyword arguments).

    Example::

        async def test_hello(bubu_batch_harness):
            result = await bubu_batch_harness(engram=Hello(), inputs={"name": "Ada"}).run()
            assert result.data.greeting == "Hello, Ada!"
    """
    from bubu.testkit._batch import BatchHarness

    def factory(**kwargs: Any) -> BatchHarness:
        return BatchHarness(**kwargs)

    return factory


@pytest.fixture
def bubu_stream_harness() -> Callable[..., StreamHarness[Any]]:
    """Return a factory for :class:`bubu.testkit.StreamHarness` (same keyword arguments).

    Example::

        async def test_echo(bubu_stream_harness):
            harness = bubu_stream_harness(
                engram=Echo(), inputs=[bubu.StreamMessage.json({"text": "hi"})]
            )
            outputs = await harness.run()
            assert harness.done_count == 1
    """
    from bubu.testkit._stream import StreamHarness

    def factory(**kwargs: Any) -> StreamHarness[Any]:
        return StreamHarness(**kwargs)

    return factory


@pytest.fixture
def bubu_fake_cluster() -> FakeCluster:
    """Return an empty in-memory cluster (namespace ``default``).

    The :class:`~bubu.testkit.FakeCluster` answers the Kubernetes calls the SDK makes, with
    resourceVersions, 409 conflicts, the status subresource and the webhooks' checks. Seed it
    (``seed_story``, ``seed_impulse``, ``put``) and pass it to
    ``bubu_impulse_harness(cluster=...)``, which attaches the operator stand-ins
    (:class:`~bubu.testkit.TriggerResolver` deciding StoryTriggers,
    :class:`~bubu.testkit.EffectClaimPhases`, :class:`~bubu.testkit.StopStoryController`).
    Used without a harness, attach a ``TriggerResolver(cluster)`` yourself.
    """
    from bubu.testkit._fakes import FakeCluster

    return FakeCluster()


def _async_fixture(func: Callable[..., Any]) -> Any:
    """Declare an async fixture that works in pytest-asyncio's strict mode too."""
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(func)
    return pytest_asyncio.fixture(func)


@_async_fixture
async def bubu_impulse_harness() -> AsyncIterator[Callable[..., ImpulseHarness]]:
    """Return a factory for :class:`bubu.testkit.ImpulseHarness` (same keyword arguments).

    Start a harness with ``async with`` (or ``await harness.start()``); a harness still running
    when the test ends is stopped as SIGTERM would stop it, so a failing test leaves no impulse
    task behind.

    Example::

        async def test_webhook(bubu_impulse_harness):
            async with bubu_impulse_harness(impulse=Webhook(), config={"port": 0}) as h:
                ...  # send an event
            assert h.decisions[0][1] == "Created"
    """
    from bubu.testkit._impulse import ImpulseHarness

    made: list[ImpulseHarness] = []

    def factory(**kwargs: Any) -> ImpulseHarness:
        harness = ImpulseHarness(**kwargs)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        if harness.running:
            await harness.stop("test teardown")


@_async_fixture
async def bubu_local_connector() -> AsyncIterator[LocalConnector]:
    """Yield a started :class:`bubu.testkit.LocalConnector` (a connector sidecar on loopback).

    Run a streaming engram against it with its ``binding_env()``; ``send()`` delivers inbound
    messages and ``outputs`` receives what the engram publishes. Stopped after the test.
    """
    from bubu.testkit._connector import LocalConnector

    async with LocalConnector() as connector:
        yield connector


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
