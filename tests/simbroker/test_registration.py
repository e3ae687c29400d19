"""Publishing the callback key on the Broker object, in the embedded cluster."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kidp_ops.cluster.base import BROKERS, NotFound
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.simbroker.registration import register_callback_key
from kidp_ops.simbroker.server import running_broker
from tests.conftest import broker_manifest
from tests.simbroker.conftest import fast_config


async def test_register_writes_the_public_key_to_the_broker_status(state_dir: Path) -> None:
    async with (
        await EmbeddedCluster.open(state_dir) as cluster,
        running_broker(fast_config()) as broker,
    ):
        await cluster.apply(broker_manifest("b1"))
        await register_callback_key(
            cluster, namespace="kidp-system", name="b1", public_key=broker.public_key
        )
        stored = await cluster.get(BROKERS, "b1", namespace="kidp-system")
        assert stored["status"]["callbackPublicKey"] == broker.public_key
        assert stored["spec"]["endpoint"] == broker_manifest()["spec"]["endpoint"]


async def test_register_waits_a_bounded_time_for_a_missing_broker(state_dir: Path) -> None:
    told: list[str] = []
    async with await EmbeddedCluster.open(state_dir) as cluster:
        started = time.monotonic()
        with pytest.raises(NotFound, match=r"Broker kidp-system/nope not found after waiting"):
            await register_callback_key(
                cluster,
                namespace="kidp-system",
                name="nope",
                public_key="x",
                wait_seconds=0.2,
                poll_seconds=0.05,
                on_waiting=told.append,
            )
        assert 0.2 <= time.monotonic() - started < 1.0
    assert len(told) == 1
    assert "does not exist yet" in told[0]


async def test_register_finds_a_broker_applied_while_waiting(state_dir: Path) -> None:
    async with await EmbeddedCluster.open(state_dir) as cluster:
        missed = asyncio.Event()  # set when the first attempt found no Broker
        waiting = asyncio.create_task(
            register_callback_key(
                cluster,
                namespace="kidp-system",
                name="late",
                public_key="a2V5",
                wait_seconds=5,
                poll_seconds=0.02,
                on_waiting=lambda _: missed.set(),
            )
        )
        await asyncio.wait_for(missed.wait(), 2)
        await cluster.apply(broker_manifest("late"))
        stored = await asyncio.wait_for(waiting, 2)
        assert stored["status"]["callbackPublicKey"] == "a2V5"
