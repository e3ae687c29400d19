"""The simulator's criteria, pure: `postgresql eastus` or `provider=mysql cloud=aws`.

Bare words are recognised by what the fleet knows: a cloud provider (azure, aws, gcp,
on-prem), a region a broker names, a resource type a broker offers; any other word is the
provider (the engine). `key=value` says it outright: type, provider (engine), cloud,
region, namespace (ns). Filler words (`in`, `on`, `a`, `new`) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from kidp_ops.model.resources import CLOUD_PROVIDERS
from kidp_ops.selection import SelectionCriteria

DEFAULT = SelectionCriteria(resource_type="Database")
FILLER = frozenset({"in", "on", "a", "an", "new", "for", "at", "the", "would", "go", "where"})
KEYS = {
    "type": "resource_type",
    "resourcetype": "resource_type",
    "provider": "provider",
    "engine": "provider",
    "cloud": "cloud_provider",
    "cloudprovider": "cloud_provider",
    "region": "region",
    "namespace": "namespace",
    "ns": "namespace",
}


class CriteriaError(ValueError):
    """Criteria that cannot be read; one line."""


def parse_criteria(
    text: str, *, regions: Iterable[str], resource_types: Iterable[str]
) -> SelectionCriteria:
    regions, types = set(regions), {t.lower(): t for t in resource_types}
    asked: dict[str, str] = {}

    def put(field: str, value: str) -> None:
        if field in asked and asked[field] != value:
            raise CriteriaError(f"{field.replace('_', ' ')} given twice: {asked[field]}, {value}")
        asked[field] = value

    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            field = KEYS.get(key.lower().replace("-", "").replace("_", ""))
            if field is None or not value:
                raise CriteriaError(f"{word!r}: keys are {', '.join(sorted(set(KEYS)))}")
            put(field, value)
        elif word.lower() in FILLER:
            continue
        elif word.lower() in CLOUD_PROVIDERS:
            put("cloud_provider", word.lower())
        elif word in regions:
            put("region", word)
        elif word.lower() in types:
            put("resource_type", types[word.lower()])
        elif "provider" not in asked:
            put("provider", word)
        else:
            raise CriteriaError(f"{word!r} is not a cloud, a known region or a resource type")
    return SelectionCriteria(
        resource_type=asked.get("resource_type", DEFAULT.resource_type),
        provider=asked.get("provider"),
        cloud_provider=asked.get("cloud_provider"),
        region=asked.get("region"),
        namespace=asked.get("namespace"),
    )


def criteria_text(criteria: SelectionCriteria) -> str:
    """The words that parse back to `criteria` (what the simulator's input shows)."""
    parts = []
    if criteria.resource_type != DEFAULT.resource_type:
        parts.append(f"type={criteria.resource_type}")
    for key, value in (
        ("provider", criteria.provider),
        ("cloud", criteria.cloud_provider),
        ("region", criteria.region),
        ("ns", criteria.namespace),
    ):
        if value is not None:
            parts.append(f"{key}={value}")
    return " ".join(parts)
