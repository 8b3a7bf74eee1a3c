"""Helpers of the twin tests: run a Go peer, generate the input corpus, compare two objects.

A twin run does one thing twice against the same kube-apiserver: once with the Go SDK (a
program of this module's Go side, run as a process with the environment the operator would
inject) and once with bubu, each in its own namespace. :func:`assert_same` then compares the
two resulting objects field by field, ignoring only uids, resource versions and timestamps (and
the server's ``managedFields`` bookkeeping, whose manager names differ by design: the user agent,
docs/differences.md). Names that embed a namespace-derived hash are compared through
``names=``: each side's name must be the one its own namespace derives, then both are replaced
by the same placeholder.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

#: Environment every Go peer gets besides the test's: no proxy, nothing from the host shell.
_BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_IGNORED_META = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation")


class GoError(AssertionError):
    """A Go peer exited with an unexpected code; the message carries its stderr."""


async def run_go(
    bin_dir: Path,
    program: str,
    *args: str,
    env: Mapping[str, str],
    limit: float = 60.0,
    expect: int | None = 0,
) -> tuple[int, str, str]:
    """Run ``bin_dir/program args`` with ``env`` (plus PATH/HOME); return (code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / program),
        *args,
        env={**_BASE_ENV, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GoError(f"{program} {args!r} did not finish in {limit}s") from None
    code = proc.returncode
    assert code is not None
    if expect is not None and code != expect:
        raise GoError(f"{program} exited {code} (expected {expect}):\n{err.decode()[-4000:]}")
    return code, out.decode(), err.decode()


async def go_twin(
    bin_dir: Path, ops: list[dict[str, Any]], env: Mapping[str, str], limit: float = 60.0
) -> list[dict[str, Any]]:
    """Run the ``twin`` program on ``ops`` and return its per-operation results."""
    _, out, _ = await run_go(bin_dir, "twin", json.dumps(ops), env=env, limit=limit)
    results: list[dict[str, Any]] = json.loads(out)
    assert len(results) == len(ops), out
    return results


# --- comparison --------------------------------------------------------------------------------


def normalize(obj: Any, names: Mapping[str, str] | None = None) -> Any:
    """The object as the twin comparison sees it.

    Drops uids, resource versions, ``creationTimestamp``, ``generation`` and ``managedFields``;
    replaces every RFC 3339 timestamp by ``"<time>"``, every ``duration`` by ``"<duration>"``
    (wall time), and every string in ``names`` by its
    placeholder (also inside longer strings, so a namespace in a message matches).
    """
    names = dict(names or {})
    order = sorted(names, key=len, reverse=True)

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if key == "metadata" and k in _IGNORED_META:
                    continue
                if k == "uid":
                    continue
                if k.lower().endswith("uid") and isinstance(v, str):
                    out[k] = "<uid>"  # a uid under another name (an annotation, a ref)
                    continue
                if k == "duration" and isinstance(v, str):
                    out[k] = "<duration>"  # wall time between two timestamps
                    continue
                out[k] = walk(v, k)
            return out
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if _TIME.match(value):
                return "<time>"
            for name in order:
                value = value.replace(name, names[name])
            return value
        return value

    return walk(obj)


def differences(a: Any, b: Any, path: str = "$") -> list[str]:
    """Every path where ``a`` and ``b`` differ (types, keys, values, list lengths)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}.{k}: only in python: {b[k]!r}"[:400])
            elif k not in b:
                out.append(f"{path}.{k}: only in go: {a[k]!r}"[:400])
            else:
                out.extend(differences(a[k], b[k], f"{path}.{k}"))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: go has {len(a)} items, python {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out.extend(differences(x, y, f"{path}[{i}]"))
        return out
    if type(a) is not type(b) or a != b:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return []
        return [f"{path}: go {a!r} != python {b!r}"[:400]]
    return []


def assert_same(
    go_obj: Any,
    py_obj: Any,
    *,
    go_names: Mapping[str, str] | None = None,
    py_names: Mapping[str, str] | None = None,
    what: str = "object",
    allow: Collection[str] = (),
) -> None:
    """Assert the Go and Python objects are equal after :func:`normalize`.

    ``allow`` lists JSON paths (``$.spec.inputs.a11``) where a documented difference is expected.
    """
    diff = differences(normalize(go_obj, go_names), normalize(py_obj, py_names))
    diff = [d for d in diff if d.split(":", 1)[0] not in allow]
    assert not diff, f"{what}: Go and Python twins differ:\n" + "\n".join(diff)


# --- the input corpus -----------------------------------------------------------------------

#: Values the issue names, each a trap for some JSON encoder.
ATOMS: list[Any] = [
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀 and 𝄞",
    "combining e\u0301 and zero\u200bwidth",
    "line\u2028separator and paragraph\u2029separator",
    "<script>alert('x')</script> & \"quotes\"",
    "tab\tnewline\ncontrol\x01\x1f",
    "",
    -0.0,
    1e21,
    1e-7,
    2**53 + 1,
    1.0,
    1_000_000,
    1e6,
    123_456_789_012,
    12.5,
    -17,
    0,
    True,
    False,
    None,
    [],
    {},
]


def deep(depth: int, leaf: Any = "bottom") -> Any:
    """A document nested ``depth`` levels (alternating objects and arrays)."""
    value = leaf
    for i in range(depth):
        value = {f"l{i}": value} if i % 2 else [value]
    return value


def corpus(count: int = 12, seed: int = 11) -> list[dict[str, Any]]:
    """``count`` JSON objects that mix :data:`ATOMS` at random depths (deterministic).

    The first documents hold each atom once, the last one a 24-level nesting; the rest are
    random mixes. Every document is an object, as trigger inputs must be.
    """
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = [
        {"id": "atoms", **{f"a{i:02d}": atom for i, atom in enumerate(ATOMS)}},
        {"id": "deep", "tree": deep(24)},
    ]

    def mix(level: int) -> Any:
        roll = rng.random()
        if level > 3 or roll < 0.5:
            return rng.choice(ATOMS)
        if roll < 0.75:
            return [mix(level + 1) for _ in range(rng.randint(0, 3))]
        return {
            rng.choice(["k", "ключ", "<k>", "a&b", "x\u2028y", "n"]) + str(j): mix(level + 1)
            for j in range(rng.randint(0, 3))
        }

    while len(docs) < count:
        fields = {f"f{j}": mix(0) for j in range(rng.randint(1, 5))}
        docs.append({"id": f"mix{len(docs)}", **fields})
    return docs
