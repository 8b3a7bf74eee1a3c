"""``import bubu`` (and the pytest plugin every bubu user loads) stay light (style.md 6.3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("kr8s", "grpclib", "h2", "google.protobuf", "opentelemetry", "httpx")


def loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys, json\n{statement}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if any(m == h or m.startswith(h + '.') for h in heavy))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import bubu",
        "import bubu.testkit.pytest_plugin",
        "import bubu; bubu.BatchEngram; bubu.Result; bubu.ExecutionContext",
        "import bubu._cli",
    ],
)
def test_import_does_not_load_heavy_modules(statement: str) -> None:
    assert loaded_after(statement) == []


def test_entry_point_attribute_loads_lazily() -> None:
    # bubu.start_batch resolves through PEP 562 without pulling in the Kubernetes client.
    assert loaded_after("import bubu; bubu.start_batch; bubu.run; bubu.start") == []


def test_local_batch_run_loads_no_platform_client() -> None:
    # `bubu run` of a batch engram (no StepRun) needs neither the Kubernetes client nor gRPC
    # nor OpenTelemetry: loading them would cost the hello benchmark most of its budget.
    hello = Path(__file__).resolve().parents[1] / "examples" / "hello.py"
    statement = (
        "import contextlib, io\n"
        "from bubu._cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['run', {str(hello)!r}, '--inputs', '{{\"name\": \"Ada\"}}'])\n"
        'assert code == 0 and out.getvalue().strip() == \'{"greeting": "Hello, Ada!"}\', code'
    )
    assert loaded_after(statement) == []
