"""The marker guard of tests/conftest.py: a test whose markers lie fails, naming the lie."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import _marker_problem


class _Item:
    def __init__(self, path: str, fixtures: tuple[str, ...], markers: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.fixturenames = list(fixtures)
        self._markers = markers

    def get_closest_marker(self, name: str) -> object | None:
        return pytest.mark.__getattr__(name) if name in self._markers else None


@pytest.mark.parametrize(
    ("path", "fixtures", "markers", "problem"),
    [
        ("/r/tests/unit/t.py", (), (), None),
        ("/r/tests/integration/t.py", ("controlplane",), ("integration",), None),
        ("/r/tests/integration/t.py", ("interop_bin", "go_ref"), ("interop",), None),
        ("/r/tests/integration/t.py", (), ("loopback",), None),
        ("/r/tests/integration/t.py", (), ("integration",), "does not use the 'controlplane'"),
        (
            "/r/tests/integration/t.py",
            ("controlplane", "go_ref", "interop_bin"),
            ("integration",),
            "'interop_bin' fixture but is not marked 'interop'",
        ),
        ("/r/tests/unit/t.py", ("k8s_namespace", "controlplane"), (), "not marked 'integration'"),
        ("/r/tests/unit/t.py", ("interop_bin",), (), "not marked 'interop'"),
        ("/r/tests/unit/t.py", (), ("interop",), "does not use a Go program fixture"),
        (
            "/r/tests/unit/t.py",
            ("s3_server",),
            (),
            "'s3_server' fixture but is not marked 'interop'",
        ),
        ("/r/tests/integration/t.py", ("s3_server",), ("interop",), None),
        ("/r/tests/integration/t.py", (), (), "marked none of integration, interop, loopback"),
    ],
)
def test_marker_guard_names_each_lie(path, fixtures, markers, problem):
    found = _marker_problem(_Item(path, fixtures, markers))  # type: ignore[arg-type]
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
