"""One pass over a payload: does it hold references or templates, and how deep is it.

Every run calls ``scan`` on its inputs, config and output (``bubu._payloads``), so this module
is kept light (msgspec and ``re``, nothing else from bubu): a payload without references or
templates must cost next to nothing (docs/architecture.md "Batch stages"). The key names are
those of docs/contract/storage.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

__all__ = ["TEMPLATE_KEY", "Scan", "scan"]

STORAGE_REF_KEY: Final = "$bubuStorageRef"
CONFIG_MAP_REF_KEY: Final = "$bubuConfigMapRef"
SECRET_REF_KEY: Final = "$bubuSecretRef"
TEMPLATE_KEY: Final = "$bubuTemplate"

_SCAN_ENCODER: Final = msgspec.json.Encoder()
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"{}[]")
_INNER_PAIR: Final = re.compile(rb"\{\}|\[\]")


class Scan:
    """What one pass over a decoded JSON value found (``scan``).

    Attributes:
        depth: the deepest level of any value (the root is 0; each map or list adds 1, scalars
            included), as the storage package and the config guard count it; a walk stops
            descending below ``limit + 1``.
        nodes: the values visited (the config guard's node count).
        refs: a map with a ``$bubuStorageRef``, ``$bubuConfigMapRef`` or ``$bubuSecretRef`` key.
        kube_refs: a map with a ``$bubuConfigMapRef`` or ``$bubuSecretRef`` key.
        templates: a string holding ``{{`` or a map with a ``$bubuTemplate`` key.
    """

    __slots__ = ("depth", "kube_refs", "nodes", "refs", "templates")

    def __init__(
        self, depth: int, nodes: int, refs: bool, kube_refs: bool, templates: bool
    ) -> None:
        self.depth = depth
        self.nodes = nodes
        self.refs = refs
        self.kube_refs = kube_refs
        self.templates = templates

    def __repr__(self) -> str:
        return (
            f"Scan(depth={self.depth}, nodes={self.nodes}, refs={self.refs}, "
            f"kube_refs={self.kube_refs}, templates={self.templates})"
        )


def _nesting(data: bytes, bound: int) -> int:
    """How deeply the containers of a JSON text nest, counted up to ``bound + 1``.

    Strings removed, only brackets kept; each pass removes the innermost pairs (one regex pass
    never removes a pair it created), so the passes count the nesting, all in C.
    """
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    nesting = 0
    while brackets and nesting <= bound:
        brackets = _INNER_PAIR.sub(b"", brackets)
        nesting += 1
    return nesting if not brackets else bound + 1


def scan(value: Any, *, limit: int, quick_limit: int | None = None, node_limit: int = 0) -> Scan:
    """Walk ``value`` once: how deep and large it is, and whether hydration or the template
    pass would change anything.

    The lifecycles use it to skip both passes (and the imports behind them) for payloads that
    hold neither references nor templates, while still enforcing the depth limits Go enforces
    on every payload (docs/architecture.md "Batch stages").

    The walk descends at most ``limit + 1`` levels. Fast path: the value's JSON (encoded in
    C) holds no ``$bubu`` and no ``{{``, its containers nest at most ``quick_limit`` (default
    ``limit``) deep, and it has at most ``node_limit`` bytes (when given): then no walk is
    needed, and ``depth``/``nodes`` are those upper bounds rather than exact counts.
    """
    try:
        data = _SCAN_ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, UnicodeEncodeError):
        data = None
    if data is not None and b"$bubu" not in data and b"{{" not in data:
        bound = limit if quick_limit is None else quick_limit
        if node_limit <= 0 or len(data) <= node_limit:
            nesting = _nesting(data, bound)
            if nesting <= bound:
                return Scan(
                    depth=nesting, nodes=len(data), refs=False, kube_refs=False, templates=False
                )
    # Level by level (no per-node tuples): the walk is on every step's hot path.
    depth = nodes = 0
    found_refs = found_kube = found_templates = False
    level: list[Any] = [value]
    while True:
        nodes += len(level)
        if depth > limit:
            break
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is str:
                if not found_templates and "{{" in item:
                    found_templates = True
            elif kind is dict or (kind is not list and isinstance(item, Mapping)):
                if CONFIG_MAP_REF_KEY in item or SECRET_REF_KEY in item:
                    found_kube = found_refs = True
                elif STORAGE_REF_KEY in item:
                    found_refs = True
                if TEMPLATE_KEY in item:
                    found_templates = True
                below.extend(item.values())
            elif kind is list or isinstance(item, list | tuple):
                below.extend(item)
        if not below:
            break
        depth += 1
        level = below
    return Scan(
        depth=depth, nodes=nodes, refs=found_refs, kube_refs=found_kube, templates=found_templates
    )
