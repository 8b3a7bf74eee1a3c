"""A queue impulse: every entry of a Redis Stream starts the target Story exactly once.

The impulse reads the stream through a consumer group. For each entry it submits a StoryTrigger
whose token is the entry id (qualified by the stream key: ``<stream>/<id>``), and acknowledges
the entry (``XACK``) only after the trigger was admitted (decision ``Created`` or ``Reused``).
That order makes the pair crash-safe:

* **no lost event**: an entry is acknowledged only once its StoryRun exists, so a crash before
  the acknowledgement leaves it pending in the group;
* **no duplicate run**: on restart the impulse first re-reads its own pending entries
  (``XREADGROUP ... 0``) and claims entries other consumers left idle for ``claimIdleMs``
  (``XAUTOCLAIM``, for a Deployment whose pods get new names); a re-submitted entry carries the
  same token, so the operator maps it to the same StoryTrigger and StoryRun.

A trigger the operator rejects (the inputs fail the Story's schema, say) will be rejected again:
the entry is copied to ``<stream>:dead`` with the reason, then acknowledged.

Entry fields become the Story inputs: ``{"stream", "id", "fields": {...}}``, where a field named
``json`` holding a JSON object is decoded into ``fields`` instead of kept as text.

Dependencies: ``pip install "bubu[examples]"`` (redis-py, whose asyncio client this uses).
In a pod: ``python queue_impulse.py``. Locally, against the in-memory cluster::

    bubu run examples/redis-queue-impulse/queue_impulse.py \
        --config '{"url": "redis://127.0.0.1:6379/0", "stream": "orders"}'

Fault injection for tests: with ``QUEUE_IMPULSE_PAUSE_BEFORE_ACK=1`` the impulse prints
``admitted <id>`` and then waits forever before its first ``XACK``, so a test can kill it in
exactly the window this design protects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Annotated, Any

import msgspec
import redis.asyncio as redis
from redis.exceptions import ResponseError

import bubu
from bubu.errors import TriggerRejectedError

log = logging.getLogger("queue_impulse")


class Config(msgspec.Struct, rename="camel"):
    """Which stream to consume and how."""

    url: Annotated[str, msgspec.Meta(description="Redis URL (redis://host:port/db)")] = (
        "redis://127.0.0.1:6379/0"
    )
    stream: Annotated[str, msgspec.Meta(min_length=1, description="Stream key")] = "events"
    group: Annotated[str, msgspec.Meta(min_length=1, description="Consumer group")] = "bubu"
    consumer: Annotated[
        str,
        msgspec.Meta(description="Consumer name; empty: the pod name (stable in a StatefulSet)"),
    ] = ""
    batch: Annotated[int, msgspec.Meta(ge=1, le=1000, description="Entries per read")] = 16
    block_ms: Annotated[int, msgspec.Meta(ge=1, description="How long one read waits")] = 1000
    claim_idle_ms: Annotated[
        int, msgspec.Meta(ge=1, description="Claim entries other consumers left pending this long")
    ] = 60_000


class RedisPassword(msgspec.Struct):
    """The Redis password (the Secret key ``REDIS_PASSWORD``)."""

    REDIS_PASSWORD: str


class SecretSchema(msgspec.Struct):
    """Secrets the impulse reads."""

    redis: RedisPassword | None = None


class QueueImpulse(bubu.Impulse[Config]):
    """Starts the target Story once per Redis Stream entry (consumer group, ack after admit)."""

    secret_schema = SecretSchema

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config
        self.consumer = config.consumer or os.environ.get("BUBU_POD_NAME") or socket.gethostname()
        self.redis = redis.Redis.from_url(
            config.url, password=secrets.get("REDIS_PASSWORD"), decode_responses=True
        )
        self.pause_before_ack = os.environ.get("QUEUE_IMPULSE_PAUSE_BEFORE_ACK") == "1"
        try:
            await self.redis.xgroup_create(config.stream, config.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: this is a restart
                raise

    async def run(self, client: Any) -> None:
        try:
            await self._recover()
            while not client.shutdown.requested:
                await self._claim_abandoned()
                read = asyncio.ensure_future(self._read(">"))
                # A read abandoned at shutdown may end with the closed connection's error.
                read.add_done_callback(lambda t: t.cancelled() or t.exception())
                stop = asyncio.ensure_future(client.shutdown.wait())
                try:
                    await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    abandoned = not read.done()
                    if abandoned:
                        read.cancel()  # shutdown while blocked in XREADGROUP: nothing delivered
                if abandoned:
                    break
                await self._handle_all(read.result())
        finally:
            await self.redis.aclose()

    async def _read(self, start: str) -> list[tuple[str, dict[str, str]]]:
        cfg = self.config
        block = cfg.block_ms if start == ">" else None
        reply = await self.redis.xreadgroup(
            cfg.group, self.consumer, {cfg.stream: start}, count=cfg.batch, block=block
        )
        return [entry for _stream, entries in reply or () for entry in entries]

    async def _recover(self) -> None:
        """Handle this consumer's own pending entries first (delivered, never acknowledged)."""
        while entries := await self._read("0"):
            log.info("re-submitting %d pending entries", len(entries))
            await self._handle_all(entries)

    async def _claim_abandoned(self) -> None:
        """Take over entries another consumer left pending for ``claimIdleMs``."""
        cfg = self.config
        start = "0-0"
        while True:
            next_start, claimed, *_ = await self.redis.xautoclaim(
                cfg.stream, cfg.group, self.consumer, cfg.claim_idle_ms, start, count=cfg.batch
            )
            if claimed:
                log.info("claimed %d abandoned entries", len(claimed))
                await self._handle_all(claimed)
            if next_start in ("0-0", start):
                return
            start = next_start

    async def _handle_all(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        for entry_id, fields in entries:
            if fields is None:
                # Deleted from the stream while pending: nothing to start, only to acknowledge.
                await self.redis.xack(self.config.stream, self.config.group, entry_id)
                continue
            await self._handle(entry_id, fields)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        cfg = self.config
        target = bubu.get_target_story()
        try:
            inputs = inputs_for(cfg, entry_id, fields)
            result = await bubu.start_story_with_token(
                target.name, token=f"{cfg.stream}/{entry_id}", inputs=inputs
            )
        except (ValueError, TriggerRejectedError) as exc:
            # A bad entry or the operator's decision, not an outage: retrying gives the same
            # answer, so park the entry where a person can see it.
            await self.redis.xadd(
                f"{cfg.stream}:dead", {**fields, "_id": entry_id, "_reason": str(exc)}
            )
            log.warning("entry %s not started (%s); moved to %s:dead", entry_id, exc, cfg.stream)
        else:
            print(f"admitted {entry_id} storyRun={result.story_run}", flush=True)
            if self.pause_before_ack:
                await asyncio.Event().wait()  # fault injection: die here (see module doc)
        # Acknowledge only now. A crash (or an outage error, which ends the impulse so the pod
        # restarts) before this line leaves the entry pending for _recover().
        await self.redis.xack(cfg.stream, cfg.group, entry_id)


def inputs_for(config: Config, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The Story inputs for one entry.

    Raises:
        ValueError: the ``json`` field holds JSON that is not an object.
    """
    decoded: dict[str, Any] = dict(fields)
    raw = decoded.pop("json", None)
    if raw is not None:
        try:
            value = json.loads(raw)
        except ValueError:
            decoded["json"] = raw
        else:
            if not isinstance(value, dict):
                raise ValueError(f"entry {entry_id}: field 'json' must hold a JSON object")
            decoded.update(value)
    return {"stream": config.stream, "id": entry_id, "fields": decoded}


if __name__ == "__main__":
    bubu.run(bubu.run_impulse(QueueImpulse()))
