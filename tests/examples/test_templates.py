"""Every example that ships a template passes ``bubu check`` (the template matches the code)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.examples._load import EXAMPLES

TEMPLATED = sorted(
    p
    for p in EXAMPLES.glob("*/*.py")
    if (p.parent / "Engram.yaml").exists() or (p.parent / "Impulse.yaml").exists()
)


def test_the_examples_ship_templates() -> None:
    names = {p.parent.name for p in TEMPLATED}
    assert {"json-filter", "http-request", "text-emitter"} <= names


@pytest.mark.parametrize("module", TEMPLATED, ids=lambda p: p.parent.name)
def test_template_matches_code(module) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bubu", "check", str(module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
