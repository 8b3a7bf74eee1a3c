"""json-filter: select one item (or one value of it) from JSON, a port of the Go sample engram.

Inputs: ``input`` (any JSON; a JSON text inside MCP-style ``{"data": [{"text": "..."}]}``
content is parsed first), ``select`` (where the items are and which one to take) and
``parseJSONText``. Output: ``{"resultSelected": {<outputKey>: <value>, ["item": {...}]}}``.

Run it locally::

    bubu run examples/json-filter/json_filter.py --inputs '{"input": [{"id": "1", "name": \
"alpha"}, {"id": "2", "name": "beta"}], "select": {"matchField": "name", "matchValue": "beta", \
"valuePath": "id", "outputKey": "id"}}'

prints ``{"resultSelected": {"id": "2"}}``. ``Engram.yaml`` beside this file is the
EngramTemplate; ``bubu check examples/json-filter/json_filter.py`` keeps it in step with the
types below. Bad input fails the step with a ``validation_error`` (terminal, not retried) whose
message is the Go sample's (``input is required``, ``itemsPath not found: a.b``...).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

import msgspec

import bubu
from bubu.errors import EngramError

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """json-filter takes no configuration."""


class Select(msgspec.Struct, rename="camel", omit_defaults=True):
    """Which items to search and what to return from the match."""

    items_path: Annotated[
        str, msgspec.Meta(description="Dot path to the list, e.g. 'a.b[0].c'; empty: the root")
    ] = ""
    match_field: Annotated[
        str, msgspec.Meta(description="Path inside an item to compare; empty: first object")
    ] = ""
    match_value: Annotated[Any, msgspec.Meta(description="Value to compare, as text")] = None
    value_path: Annotated[
        str, msgspec.Meta(description="Path inside the match to return; empty: the item")
    ] = ""
    output_key: Annotated[str, msgspec.Meta(description="Key of the result")] = "value"
    include_item: Annotated[bool, msgspec.Meta(description="Also return the whole item")] = False
    require_match: Annotated[bool, msgspec.Meta(description="Fail when nothing matches")] = True


class Inputs(msgspec.Struct, rename="camel"):
    """Step inputs."""

    input: Annotated[Any, msgspec.Meta(description="JSON to search (inline)")] = None
    select: Select | None = None
    parse_json_text: Annotated[
        bool, msgspec.Meta(description="Parse JSON text found in MCP-style content")
    ] = msgspec.field(default=True, name="parseJSONText")


class Output(msgspec.Struct, rename="camel"):
    """Step output."""

    result_selected: Annotated[
        dict[str, Any], msgspec.Meta(description="{outputKey: value} and optionally the item")
    ]


def _invalid(message: str) -> EngramError:
    return EngramError(message, type="validation_error", retryable=False, exit_class="terminal")


def go_text(value: Any) -> str:
    """Format a decoded JSON value as Go's ``fmt.Sprint`` would (``true``, ``1``, ``1.5``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        # Go decodes every JSON number to float64; %v prints the shortest form, with an
        # exponent from 1e21 on (strconv 'g' with the shortest precision).
        if value == int(value) and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        return text.replace("e+0", "e+").replace("e-0", "e-")
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _parse_text(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except ValueError:
            return None
    return None


def _texts(items: Any) -> list[str] | None:
    if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
        texts = [i["text"] for i in items if isinstance(i.get("text"), str)]
        return texts or None
    return None


def normalise(value: Any) -> Any:
    """Turn JSON text carried in MCP-style content into JSON (first rule that applies)."""
    texts: list[str] | None = None
    if isinstance(value, dict):
        content = value.get("content")
        nested = content.get("data") if isinstance(content, dict) else None
        for candidate in (value.get("data"), content, nested):
            if (texts := _texts(candidate)) is not None:
                break
        if texts is None and isinstance(value.get("text"), str):
            texts = [value["text"]]
    elif isinstance(value, str):
        texts = [value]
    else:
        texts = _texts(value)
    if texts is None:
        return value
    parsed = [p for p in (_parse_text(t) for t in texts) if p is not None]
    if not parsed:
        return value
    return parsed[0] if len(parsed) == 1 else parsed


_MISSING = object()


def lookup(root: Any, path: str) -> Any:
    """Read ``a.b[0].c`` from ``root``; ``_MISSING`` when a step does not exist."""
    current = root
    for key, index in _SEGMENT.findall(path):
        if key:
            if not isinstance(current, dict) or key not in current:
                return _MISSING
            current = current[key]
        else:
            i = int(index)
            if not isinstance(current, list) or i >= len(current):
                return _MISSING
            current = current[i]
    return current


def select(root: Any, sel: Select) -> dict[str, Any]:
    """Apply ``sel`` to ``root`` and return ``resultSelected``."""
    items = root
    if sel.items_path:
        items = lookup(root, sel.items_path)
        if items is _MISSING:
            raise _invalid(f"itemsPath not found: {sel.items_path}")
        if not isinstance(items, list):
            raise _invalid(f"itemsPath is not a list: {sel.items_path}")
    elif not isinstance(items, list):
        raise _invalid("input is not a list; set select.itemsPath")
    wanted = go_text(sel.match_value) if sel.match_value is not None else ""
    match: dict[str, Any] | None = None
    for item in items:
        if not isinstance(item, dict):
            continue
        if not sel.match_field:
            match = item
            break
        found = lookup(item, sel.match_field)
        if found is not _MISSING and go_text(found) == wanted:
            match = item
            break
    if match is None:
        if sel.require_match:
            raise _invalid(f"no match for {sel.match_field}={json.dumps(wanted)}")
        return {}
    value: Any = match
    if sel.value_path:
        value = lookup(match, sel.value_path)
        if value is _MISSING:
            raise _invalid(f"valuePath not found: {sel.value_path}")
    result: dict[str, Any] = {sel.output_key or "value": value}
    if sel.include_item:
        result["item"] = match
    return result


class JSONFilter(bubu.BatchEngram[Config, Inputs]):
    """Select one item, or one value of it, from a JSON document."""

    output_type = Output

    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        if inputs.input is None:
            raise _invalid("input is required")
        if inputs.select is None:
            raise _invalid("select is required")
        root = normalise(inputs.input) if inputs.parse_json_text else inputs.input
        return bubu.Result(Output(result_selected=select(root, inputs.select)))


if __name__ == "__main__":
    bubu.run(bubu.start_batch(JSONFilter()))
