"""Project-wide test settings.

Every test starts with no ``BUBU_*`` or Kubernetes variables in the environment, so nothing
leaks in from the developer's shell or from another test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests._controlplane.fixtures"]

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
