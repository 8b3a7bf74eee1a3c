"""examples/json-filter: the Go sample's test vectors through the real batch lifecycle."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bubu.errors import EngramError
from bubu.testkit import BatchHarness
from tests.examples._load import load_example

jf = load_example("json-filter/json_filter.py")

MCP_INPUT = {
    "contentType": "json",
    "data": [
        {
            "type": "text",
            "text": json.dumps({"ok": True, "channels": [{"id": "C123", "name": "daily-digest"}]}),
        }
    ],
}


async def run(inputs: Any) -> Any:
    harness = BatchHarness(engram=jf.JSONFilter(), inputs=inputs)
    result = await harness.run()
    assert harness.status["phase"] == "Succeeded"
    return harness.status["output"], result


async def test_mcp_content_is_parsed_and_the_value_selected() -> None:
    output, _ = await run(
        {
            "input": MCP_INPUT,
            "select": {
                "itemsPath": "channels",
                "matchField": "name",
                "matchValue": "daily-digest",
                "valuePath": "id",
                "outputKey": "channelId",
            },
        }
    )
    assert output == {"resultSelected": {"channelId": "C123"}}


async def test_a_list_root_needs_no_items_path() -> None:
    output, _ = await run(
        {
            "input": [{"id": "1", "name": "alpha"}, {"id": "2", "name": "beta"}],
            "select": {"matchField": "name", "matchValue": "beta", "valuePath": "id"},
        }
    )
    assert output == {"resultSelected": {"value": "2"}}


async def test_include_item_and_go_formatting_of_non_strings() -> None:
    output, _ = await run(
        {
            "input": {"rows": [{"n": 1.0, "ok": True}, {"n": 2, "ok": False}]},
            "select": {
                "itemsPath": "rows",
                "matchField": "ok",
                "matchValue": "false",
                "valuePath": "n",
                "includeItem": True,
            },
        }
    )
    assert output == {"resultSelected": {"value": 2, "item": {"n": 2, "ok": False}}}
    assert jf.go_text(1.0) == "1" and jf.go_text(True) == "true" and jf.go_text(1.5) == "1.5"


async def test_no_match_without_require_match_is_empty() -> None:
    output, _ = await run(
        {"input": [{"a": 1}], "select": {"matchField": "a", "matchValue": 2, "requireMatch": False}}
    )
    assert output == {"resultSelected": {}}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "input is required"),
        ({"input": [1]}, "select is required"),
        ({"input": {"a": 1}, "select": {"itemsPath": "b"}}, "itemsPath not found: b"),
        ({"input": {"a": 1}, "select": {"itemsPath": "a"}}, "itemsPath is not a list: a"),
        (
            {"input": [{"name": "x"}], "select": {"matchField": "name", "matchValue": "y"}},
            'no match for name="y"',
        ),
        (
            {"input": [{"name": "x"}], "select": {"valuePath": "id"}},
            "valuePath not found: id",
        ),
    ],
)
async def test_bad_input_is_a_terminal_validation_error(inputs: Any, message: str) -> None:
    harness = BatchHarness(engram=jf.JSONFilter(), inputs=inputs)
    with pytest.raises(EngramError) as failure:
        await harness.run()
    assert str(failure.value) == message
    error = harness.status["error"]
    assert error["type"] == "validation_error"
    assert error["exitClass"] == "terminal" and error["retryable"] is False
    assert harness.status["phase"] == "Failed"


async def test_an_offloaded_input_is_read_from_storage() -> None:
    # In a cluster the upstream step's large output reaches this step as a storage ref; the
    # harness's file store plays the cluster's, and the same lifecycle hydrates it.
    from bubu.testkit import LocalStorage

    channels = [{"id": f"C{i:04d}", "name": f"channel-{i}"} for i in range(200)]
    storage = LocalStorage()
    ref = await storage.put({"ok": True, "channels": channels}, name="list-channels")
    assert ref["$bubuStorageRef"] == "outputs/testkit/list-channels.json"
    harness = BatchHarness(
        engram=jf.JSONFilter(),
        inputs={
            "input": ref,
            "select": {
                "itemsPath": "channels",
                "matchField": "name",
                "matchValue": "channel-137",
                "valuePath": "id",
                "outputKey": "channelId",
            },
        },
        storage=storage,
    )
    await harness.run()
    assert harness.status["output"] == {"resultSelected": {"channelId": "C0137"}}


async def test_a_selected_part_of_an_offloaded_input() -> None:
    # $bubuStoragePath selects inside the stored object before the engram sees it.
    harness = BatchHarness(engram=jf.JSONFilter(), inputs={})
    assert harness.storage is not None
    ref = await harness.storage.put({"page": {"items": [{"id": "7", "name": "x"}]}})
    harness = BatchHarness(
        engram=jf.JSONFilter(),
        inputs={
            "input": {**ref, "$bubuStoragePath": "page.items"},
            "select": {"matchField": "name", "matchValue": "x", "valuePath": "id"},
        },
        storage=harness.storage,
    )
    await harness.run()
    assert harness.status["output"] == {"resultSelected": {"value": "7"}}
