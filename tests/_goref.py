"""pytest plugin: Go as the judge of every Go-visible value.

``go_ref`` (session) talks to the ``vectors`` program of ``tests/interop`` (built and cached by
``interop_bin``), which answers by running the Go code itself: the operator's identity package,
the Go SDK, core's template evaluator, ``encoding/json``, ``fmt``, ``strconv`` and ``time``. Tests
take their expected names, hashes, canonical JSON, formatted numbers and durations and merged
StepRun statuses from it, never from the SDK's own functions.

A test that uses ``go_ref`` needs Go and is marked ``interop`` (the marker guard in
``tests/conftest.py`` checks it).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings


def go_settings(max_examples: int) -> settings:
    """Hypothesis settings for a property checked against ``go_ref`` (one Go call per example).

    Under mutation testing (``BUBU_MUTANTS=1``, set by scripts/mutants.py) the examples are
    fewer and derandomized, so each mutant's verdict is reproducible.
    """
    if os.environ.get("BUBU_MUTANTS"):
        max_examples = min(max_examples, 40)
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


class GoError(Exception):
    """The Go code returned an error; ``str()`` is Go's error text."""


class GoRef:
    """A running ``vectors`` process; ``call(op, *args)`` returns Go's answer or raises GoError."""

    def __init__(self, binary: Path) -> None:
        self._proc = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        line = json.dumps({"op": op, "args": list(args)}, ensure_ascii=True)
        with self._lock:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"Go vectors program exited (code {self._proc.poll()})")
        reply = json.loads(answer)
        if "err" in reply:
            raise GoError(reply["err"])
        return reply["ok"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    # --- typed helpers ------------------------------------------------------------------------

    def err(self, op: str, *args: Any) -> str | None:
        """Go's error text for ``op``, or None when Go accepts the input."""
        try:
            self.call(op, *args)
        except GoError as exc:
            return str(exc)
        return None

    @staticmethod
    def bits(value: float) -> str:
        """A float64 as the decimal string of its IEEE 754 bits (how floats travel to Go)."""
        return str(struct.unpack("<Q", struct.pack("<d", value))[0])

    def json_float(self, value: float) -> str:
        """``json.Marshal(float64)``."""
        return str(self.call("json_float", self.bits(value)))

    def sprint_float(self, value: float) -> str:
        """``fmt.Sprint(float64)``: how Go's templates print a number."""
        return str(self.call("sprint_float", self.bits(value)))


@pytest.fixture(scope="session")
def go_ref(interop_bin: Any) -> Iterator[GoRef]:
    """The Go reference (``tests/interop/cmd/vectors``); see ``GoRef``."""
    ref = GoRef(Path(interop_bin) / "vectors")
    try:
        yield ref
    finally:
        ref.close()
