"""Where a new disk goes: the two zone-choice policies of the Alibaba disk driver.

- ``topology`` (current upstream): walk the preferred, then the requisite topology
  segments; read the disk-plugin zone key, else ``topology.kubernetes.io/zone``; with a
  ``zoneId`` list, take the first zone found that is in it; with none, the first found.
  If nothing matches, fall back to the first ``zoneId`` (upstream picks one at random and
  warns ``ConflictingZone``). With neither topology nor ``zoneId``, the controller's own
  zone, as upstream falls back to the zone it runs in.
- ``round-robin`` (the article's era, before upstream PR #1405): a ``zoneId`` list
  overrides topology entirely and successive disks take its zones in turn.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

from zoneproof import labels

POLICIES = ("topology", "round-robin")


class NoZoneError(ValueError):
    """No zone can be chosen; the message says why."""


@dataclass(frozen=True)
class ZoneChoice:
    zone: str
    conflict: bool = False  # topology asked for zones outside the zoneId list


def segment_zone(segment: dict[str, str]) -> str | None:
    return segment.get(labels.DISK_ZONE) or segment.get(labels.ZONE)


def topology_zones(preferred: list[dict[str, str]], requisite: list[dict[str, str]]) -> list[str]:
    """Zones named by the requirement, preferred first, without repeats."""
    zones: list[str] = []
    for segment in [*preferred, *requisite]:
        zone = segment_zone(segment)
        if zone and zone not in zones:
            zones.append(zone)
    return zones


class ZoneChooser:
    def __init__(self, policy: str, controller_zone: str | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown zone policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.policy = policy
        self.controller_zone = controller_zone
        self._lock = threading.Lock()
        self._next: dict[tuple[str, ...], int] = defaultdict(int)

    def choose(self, zone_ids: tuple[str, ...], preferred: list[dict[str, str]],
               requisite: list[dict[str, str]]) -> ZoneChoice:
        if self.policy == "round-robin" and zone_ids:
            with self._lock:
                position = self._next[zone_ids]
                self._next[zone_ids] = position + 1
            return ZoneChoice(zone_ids[position % len(zone_ids)])
        found = topology_zones(preferred, requisite)
        if not zone_ids:
            if found:
                return ZoneChoice(found[0])
            if self.controller_zone:
                return ZoneChoice(self.controller_zone)
            raise NoZoneError("no zone: the request has no topology, the StorageClass no zoneId, "
                              "and the controller no zone of its own")
        for zone in found:
            if zone in zone_ids:
                return ZoneChoice(zone)
        return ZoneChoice(zone_ids[0], conflict=bool(requisite))
