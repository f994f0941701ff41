"""StorageClass parameters of the disk driver, parsed and checked before any cloud call,
so a bad StorageClass fails with a message that names the bad parameter."""

from __future__ import annotations

from dataclasses import dataclass

from zoneproof.ecs import catalog

DEFAULT_TYPES = ("cloud_ssd", "cloud_efficiency")
# Parameters the Alibaba driver accepts that this reference driver ignores, so that the
# same StorageClasses work on both.
IGNORED = {"resourceGroupId", "storageClusterId", "readOnly", "provisionedIops", "burstingEnabled", "diskTags",
           "volumeSizeAutoAvailable", "fsType", "fstype"}
KNOWN = {"type", "zoneId", "zoneid", "performanceLevel", "encrypted", "kmsKeyId", "regionId", "multiAttach"} | IGNORED
TRUE = {"true", "yes", "1"}


class ParameterError(ValueError):
    """A StorageClass parameter is wrong; the message names it."""


@dataclass(frozen=True)
class VolumeParams:
    types: tuple[str, ...]
    zone_ids: tuple[str, ...]
    performance_level: str | None
    encrypted: bool
    kms_key_id: str | None
    region: str | None
    multi_attach: bool


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse(parameters: dict[str, str]) -> VolumeParams:
    # Sidecar-added keys (csi.storage.k8s.io/pvc/name, …) are metadata, not parameters.
    params = {k: v for k, v in parameters.items() if not k.startswith("csi.storage.k8s.io/")}
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise ParameterError(f"unknown StorageClass parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(KNOWN - IGNORED))}")
    raw_type = params.get("type", "").strip()
    types = DEFAULT_TYPES if raw_type in ("", "available") else _list(raw_type)
    bad = [t for t in types if t not in catalog.CATEGORIES]
    if bad or not types:
        raise ParameterError(f"unknown disk type {', '.join(bad) or repr(raw_type)} in parameter type; "
                             f"known: {', '.join(catalog.CATEGORIES)}")
    level = params.get("performanceLevel") or None
    if level and level not in catalog.PERFORMANCE_LEVELS:
        raise ParameterError(f"performanceLevel {level!r} is not one of {', '.join(catalog.PERFORMANCE_LEVELS)}")
    zone_ids = _list(params.get("zoneId") or params.get("zoneid") or "")
    if len(set(zone_ids)) != len(zone_ids):
        raise ParameterError(f"zoneId lists a zone twice: {','.join(zone_ids)}")
    return VolumeParams(
        types=types, zone_ids=zone_ids, performance_level=level,
        encrypted=params.get("encrypted", "").lower() in TRUE,
        kms_key_id=params.get("kmsKeyId") or None, region=params.get("regionId") or None,
        multi_attach=params.get("multiAttach", "").lower() in TRUE,
    )


def min_size(category: str, performance_level: str | None) -> int:
    return catalog.CATEGORIES[category].min_size_for(performance_level)
