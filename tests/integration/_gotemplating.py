"""A line-protocol client for the Go oracle ``tests/interop/cmd/templating``.

One Go process per test session answers every request (``{"id", "op", ...}`` in, one JSON
line out), so hypothesis can feed it thousands of generated cases cheaply.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import msgspec

from bubu._templating import Evaluator, TemplateConfig
from bubu._templating._gojson import go_json
from bubu.errors import OffloadedDataError, TemplateBlockedError, TemplateError


class GoTemplating:
    def __init__(self, binary: Path) -> None:
        env = {**os.environ, "TZ": "UTC"}
        self._proc = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self._ids = itertools.count()
        self._lock = threading.Lock()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in = self._proc.stdin
        self._out = self._proc.stdout

    def run(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            request["id"] = str(next(self._ids))
            self._in.write(json.dumps(request).encode() + b"\n")
            line = self._out.readline()
        if not line:
            raise RuntimeError("the Go templating oracle exited")
        response: dict[str, Any] = json.loads(line, parse_int=_go_int)
        assert response["id"] == request["id"], response
        return response

    def close(self) -> None:
        self._in.close()
        self._proc.wait(timeout=10)
        self._out.close()


def _go_int(text: str) -> int | float:
    # Go writes float64 -0 as `-0`, which Python would read as the int 0 and so lose the sign
    # (a Go int is never -0): keep it the float it is.
    return -0.0 if text == "-0" else int(text)


def ours(op: str, **request: Any) -> dict[str, Any]:
    """Run the same request through bubu's evaluator, shaped like the Go response."""
    config = TemplateConfig(
        evaluation_timeout=request.get("timeoutMs", 0) / 1000,
        max_output_bytes=request.get("maxOutputBytes", 0),
        deterministic=request.get("deterministic", False),
    )
    evaluator = Evaluator(config)
    variables = request.get("vars")
    try:
        if op == "value":
            value = evaluator.resolve_value(request.get("value"), variables)
        else:
            value = evaluator.resolve_template_string(request["template"], variables)
    except TemplateBlockedError as exc:
        return {"ok": False, "error": str(exc), "errorKind": "blocked"}
    except OffloadedDataError as exc:
        return {"ok": False, "error": str(exc), "errorKind": "offloaded"}
    except TemplateError as exc:
        return {"ok": False, "error": str(exc), "errorKind": ""}
    return {"ok": True, "value": value}


def canonical(value: Any) -> str:
    """Go-JSON text of a result (numbers as float64), for comparing both sides."""
    return go_json(value)


def same_value(go_value: Any, our_value: Any) -> bool:
    decoded = msgspec.json.decode(msgspec.json.encode(go_value))
    return canonical(decoded) == canonical(our_value)
