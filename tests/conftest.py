"""Project-wide test settings.

Every test starts with no ``BUBU_*`` or Kubernetes variables in the environment, so nothing
leaks in from the developer's shell or from another test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Under mutation testing (scripts/mutants.py) every property runs derandomized and without the
# example database, so a mutant's verdict does not depend on luck or on an earlier run.
settings.register_profile("mutants", derandomize=True, database=None, deadline=None)
# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) runs the same examples on every submission, so a
# verdict is about the change, not about which inputs the run drew; local runs keep exploring,
# and what they find becomes a pinned case (docs/development.md#properties).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("BUBU_MUTANTS"):
    settings.load_profile("mutants")
elif os.environ.get("HYPOTHESIS_PROFILE") == "ci":
    settings.load_profile("ci")

pytest_plugins = ["tests._controlplane.fixtures", "tests._goref"]

_SCRUB_PREFIXES = ("BUBU_",)
_SCRUB_NAMES = ("KUBECONFIG", "OTEL_TRACES_EXPORTER")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--transport-fast-path",
        choices=("on", "off"),
        default="on",
        help="off: the streaming transport uses grpclib's public API only (bubu/_transport/"
        "_fastpath.py); CI runs the streaming tests once this way",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--transport-fast-path") == "off":
        from bubu._transport import _fastpath

        _fastpath.disable()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
            monkeypatch.delenv(name, raising=False)
    yield


# --- honest markers ------------------------------------------------------------------------------
# ``integration`` means "needs the real control plane" and nothing else; ``interop`` means "runs
# other Go programs the test fixtures build" (Go peers, the S3 server). So ``-m "not integration
# and not interop"`` runs every test that needs no Go toolchain. A marker that lies is a test
# failure, named with what is wrong.


def _go_fixtures() -> frozenset[str]:
    from tests._controlplane.fixtures import PREBUILD_FIXTURES

    return frozenset(PREBUILD_FIXTURES) - {"controlplane", "operator"}


def _marker_problem(item: pytest.Item) -> str | None:
    used = set(getattr(item, "fixturenames", ()))
    go = sorted(used & _go_fixtures())
    needs = {"integration": "controlplane" in used, "interop": bool(go)}
    what = {"integration": "the 'controlplane' fixture", "interop": "a Go program fixture"}
    for marker, needed in needs.items():
        marked = item.get_closest_marker(marker) is not None
        if marked and not needed:
            return f"marked {marker!r} but does not use {what[marker]}"
        if needed and not marked:
            shown = f"the {go[0]!r} fixture" if marker == "interop" else what[marker]
            return f"uses {shown} but is not marked {marker!r}"
    if "/tests/integration/" in str(item.path).replace("\\", "/") and not any(
        item.get_closest_marker(m) for m in ("integration", "interop", "loopback")
    ):
        return "lives in tests/integration but is marked none of integration, interop, loopback"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail (only) the tests whose markers do not say what they need."""
    for item in items:
        problem = _marker_problem(item)
        if problem is None:
            continue

        def fail(problem: str = problem) -> None:
            pytest.fail(f"dishonest test markers: {problem} (see tests/conftest.py)", pytrace=False)

        item.runtest = fail  # type: ignore[method-assign]
