"""A seeded, realistic broker fleet and request mix for the selection benchmarks.

Built directly as dataclasses (no manifest defaulting) so that a 10,000-broker fleet takes
well under a second. The same seed always gives the same fleet, and `FLEET_NOW` is the
fixed "now" the heartbeat ages are measured from, so runs are comparable across machines
and across the linear scan and the registry's index.

Mix: 4 clouds x 3 regions (12 regions), resource types Database/Cache/Topic with 6
providers each, 70% Ready, 3% cordoned, ~5% region-less brokers, ~15% capabilities with a
region restriction, random loads and heartbeat ages up to 10 minutes.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from kidp_ops.model.resources import (
    Broker,
    BrokerPhase,
    BrokerSpec,
    BrokerStatus,
    Capability,
    ObjectMeta,
)
from kidp_ops.selection import SelectionCriteria

FLEET_NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CLOUD_REGIONS: dict[str, tuple[str, ...]] = {
    "azure": ("eastus", "westus", "westeurope"),
    "aws": ("us-east-1", "us-west-2", "eu-west-1"),
    "gcp": ("us-central1", "europe-west1", "asia-east1"),
    "on-prem": ("dc-east", "dc-west", "local"),
}
PROVIDERS: dict[str, tuple[str, ...]] = {
    "Database": ("postgresql", "mysql", "mongodb", "redis", "sqlserver", "mariadb"),
    "Cache": ("redis", "memcached", "valkey", "keydb", "dragonfly", "hazelcast"),
    "Topic": ("kafka", "rabbitmq", "pulsar", "nats", "sqs", "pubsub"),
}
NAMESPACES = ("kidp-system", "platform-eu", "platform-us", "team-data")
NOT_READY: tuple[BrokerPhase, ...] = ("Pending", "Unhealthy", "Offline", "Unknown")


def make_brokers(n: int, seed: int, *, now: datetime = FLEET_NOW) -> list[Broker]:
    """`n` brokers with unique `namespace/name` keys, the same for the same seed."""
    rng = random.Random(seed)
    return [_broker(rng, index, now) for index in range(n)]


def _broker(rng: random.Random, index: int, now: datetime) -> Broker:
    cloud = rng.choice(tuple(CLOUD_REGIONS))
    region = "" if rng.random() < 0.05 else rng.choice(CLOUD_REGIONS[cloud])
    limit = rng.choice((0, 5, 10, 10, 20, 50))
    spec = BrokerSpec(
        endpoint=f"http://broker-{index}.brokers.svc:8080",
        cloud_provider=cloud,
        region=region,
        priority=rng.choice((50, 100, 100, 100, 150, 200)),
        max_concurrent_deployments=limit,
        capabilities=_capabilities(rng, cloud),
        unschedulable=rng.random() < 0.03,
    )
    status = BrokerStatus(
        phase="Ready" if rng.random() < 0.7 else rng.choice(NOT_READY),
        last_heartbeat=None
        if rng.random() < 0.05
        else now - timedelta(seconds=rng.uniform(0, 600)),
        active_deployments=rng.randint(0, limit) if limit else rng.randint(0, 100),
    )
    metadata = ObjectMeta(name=f"broker-{index:05d}", namespace=rng.choice(NAMESPACES))
    return Broker(metadata=metadata, spec=spec, status=status)


def _capabilities(rng: random.Random, cloud: str) -> tuple[Capability, ...]:
    types = rng.sample(tuple(PROVIDERS), k=rng.randint(1, 3))
    return tuple(
        Capability(
            resource_type=resource_type,
            providers=tuple(rng.sample(PROVIDERS[resource_type], k=rng.randint(1, 4))),
            regions=tuple(rng.sample(CLOUD_REGIONS[cloud], k=2)) if rng.random() < 0.15 else (),
        )
        for resource_type in types
    )


def make_requests(count: int, seed: int) -> list[SelectionCriteria]:
    """A request mix: always a type and provider; usually a cloud; often a region."""
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        resource_type = rng.choice(tuple(PROVIDERS))
        cloud = rng.choice(tuple(CLOUD_REGIONS)) if rng.random() < 0.8 else None
        region = None
        if cloud is not None and rng.random() < 0.6:
            region = rng.choice(CLOUD_REGIONS[cloud])
        provider = rng.choice(PROVIDERS[resource_type])
        requests.append(SelectionCriteria(resource_type, provider, cloud, region))
    return requests
