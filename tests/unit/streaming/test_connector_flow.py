"""The local connector's delivery policy and flow tracker, read from the binding payload.

Mirrors bobravoz-grpc ``internal/connector/flow_tracker_test.go`` (v0.3.0) and the hub's
sequencing rule (docs/contract/stream.md#acks,
docs/contract/stream.md#ordering, docs/contract/stream.md#hub). No sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bubu.testkit._connector import FlowTracker, LocalConnector, delivery_policy


def _tracker(ordering: str, **flow: Any) -> FlowTracker:
    settings = {
        "delivery": {"ordering": ordering},
        "flowControl": {"mode": "window", "ackEvery": {"messages": 1}, **flow},
    }
    tracker = FlowTracker.from_settings(settings, ordering)
    assert tracker is not None
    return tracker


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [
        (None, (True, "per_stream")),
        ({"ordering": "per_stream"}, (True, "per_stream")),
        ({"ordering": "per_partition"}, (True, "per_partition")),
        ({"ordering": "none"}, (False, "per_stream")),
        ({"ordering": "none", "semantics": "best_effort"}, (False, "per_stream")),
        ({"ordering": "none", "semantics": "at_least_once"}, (True, "per_stream")),
        ({"replay": {"mode": "durable"}}, (True, "per_stream")),
        ({"ordering": " Per_Partition "}, (True, "per_partition")),
    ],
)
def test_delivery_policy_follows_the_hub_rule(
    delivery: dict[str, Any] | None, expected: tuple[bool, str]
) -> None:
    settings = None if delivery is None else {"delivery": delivery}
    assert delivery_policy(settings) == expected


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"delivery": {"ordering": "sorted"}}, "settings.delivery.ordering"),
        ({"delivery": {"semantics": "exactly_once"}}, "settings.delivery.semantics"),
        ({"delivery": {"replay": {"mode": "disk"}}}, "settings.delivery.replay.mode"),
        ({"delivery": "per_stream"}, "settings.delivery"),
    ],
)
def test_delivery_policy_names_the_bad_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        delivery_policy(settings)


def test_connector_takes_sequencing_from_the_binding_unless_given() -> None:
    conn = LocalConnector(settings={"delivery": {"ordering": "per_partition"}})
    assert (conn.sequenced, conn.ordering) == (True, "per_partition")
    conn = LocalConnector(settings={"delivery": {"ordering": "none"}})
    assert conn.sequenced is False
    conn = LocalConnector(settings={"delivery": {"ordering": "none"}}, sequenced=True)
    assert conn.sequenced is True


def test_no_flow_control_means_no_tracker() -> None:
    assert FlowTracker.from_settings(None, "per_stream") is None
    assert FlowTracker.from_settings({"flowControl": {"mode": "none"}}, "per_stream") is None


@pytest.mark.parametrize(
    ("flow", "field"),
    [
        ({"mode": "push"}, "settings.flowControl.mode"),
        ({"mode": "window", "ackEvery": {"messages": -1}}, "ackEvery.messages"),
        ({"mode": "window", "ackEvery": {"bytes": "1k"}}, "ackEvery.bytes"),
        ({"mode": "window", "ackEvery": {"maxDelay": 5}}, "ackEvery.maxDelay"),
        ({"mode": "window", "ackEvery": {"maxDelay": "soon"}}, "ackEvery.maxDelay"),
        ({"mode": "window", "ackEvery": []}, "settings.flowControl.ackEvery"),
    ],
)
def test_bad_flow_control_names_the_field(flow: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        FlowTracker.from_settings({"flowControl": flow}, "per_stream")


def test_stream_ack_per_stream_ignores_duplicates_and_late_receipts() -> None:
    tracker = _tracker("per_stream")
    first = tracker.record_receipt(64, 10, "")
    assert first is not None and first.ack == 10 and not first.partition_acks
    assert tracker.record_receipt(64, 10, "") is None  # duplicate
    assert tracker.record_receipt(64, 5, "") is None  # out of order
    later = tracker.record_receipt(64, 11, "")
    assert later is not None and later.ack == 11


def test_partition_acks_are_independent_and_sorted() -> None:
    tracker = _tracker("per_partition", ackEvery={"messages": 3})
    assert tracker.record_receipt(64, 5, "p2") is None
    assert tracker.record_receipt(64, 7, "p1") is None
    update = tracker.record_receipt(64, 6, "p2")
    assert update is not None and update.ack == 0
    assert [(a.partition, a.ack) for a in update.partition_acks] == [("p1", 7), ("p2", 6)]
    assert tracker.record_receipt(64, 5, "p2") is None  # p2 already at 6


def test_credits_mode_reports_the_batch_and_bytes_threshold_flushes() -> None:
    tracker = FlowTracker.from_settings(
        {"flowControl": {"mode": "credits", "ackEvery": {"messages": 0, "bytes": 100}}},
        "per_stream",
    )
    assert tracker is not None
    assert tracker.record_delivery(60) is None
    update = tracker.record_receipt(50, 3, "")
    assert update is not None
    assert (update.ack, update.credits_messages, update.credits_bytes) == (3, 2, 110)


def test_window_mode_carries_no_credits_and_reset_forgets_sequences() -> None:
    tracker = _tracker("per_stream")
    update = tracker.record_receipt(64, 10, "")
    assert update is not None and update.credits_messages == 0 and update.credits_bytes == 0
    tracker.reset()
    again = tracker.record_receipt(64, 1, "")
    assert again is not None and again.ack == 1


async def test_max_delay_flushes_a_partial_batch() -> None:
    tracker = _tracker("per_stream", ackEvery={"messages": 10, "maxDelay": "10ms"})
    flushed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    tracker.emit = flushed.set_result
    assert tracker.record_receipt(64, 4, "") is None
    update = await asyncio.wait_for(flushed, 2)
    assert update.ack == 4
