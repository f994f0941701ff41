"""Where a new disk goes: the two zone-choice policies of the Alibaba disk driver.

- ``topology`` (current upstream, corrected): walk the preferred, then the requisite
  topology segments; read the disk-plugin zone key, else ``topology.kubernetes.io/zone``;
  with a ``zoneId`` list, take the first zone found that is in it; with none, the first
  found. If a requisite topology shares no zone with ``zoneId``, no zone is chosen: the CSI
  spec requires a volume accessible from at least one requisite segment (upstream instead
  warns ``ConflictingZone`` and uses a ``zoneId`` zone: the ``conflicting-zone-fallback``
  bug reproduces that). With neither topology nor ``zoneId``, the controller's own zone,
  as upstream falls back to the zone it runs in.
- ``round-robin`` (the article's era, before upstream PR #1405): a ``zoneId`` list
  overrides topology entirely and successive disks take its zones in turn.

Bugs of ``zoneproof.bugs`` the chooser carries: ``own-zone``, ``zoneid-overrides-topology``,
``round-robin-unlocked``, ``conflicting-zone-fallback``, ``first-term-only-topology``,
``well-known-key-ignored`` and ``multi-zone-request-refused``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from zoneproof import labels

POLICIES = ("topology", "round-robin")


class NoZoneError(ValueError):
    """No zone can be chosen; the message says why."""


class ConflictingZoneError(NoZoneError):
    """The topology requirement and the zoneId list share no zone."""


@dataclass(frozen=True)
class ZoneChoice:
    zone: str
    conflict: bool = False  # topology asked for zones outside the zoneId list


ZONE_KEYS = (labels.DISK_ZONE, labels.ZONE)  # read in this order


def segment_zone(segment: dict[str, str], keys: tuple[str, ...] = ZONE_KEYS) -> str | None:
    return next((segment[key] for key in keys if segment.get(key)), None)


def topology_zones(preferred: list[dict[str, str]], requisite: list[dict[str, str]],
                   keys: tuple[str, ...] = ZONE_KEYS) -> list[str]:
    """Zones named by the requirement under ``keys``, preferred first, without repeats."""
    zones: list[str] = []
    for segment in [*preferred, *requisite]:
        zone = segment_zone(segment, keys)
        if zone and zone not in zones:
            zones.append(zone)
    return zones


class ZoneChooser:
    def __init__(self, policy: str, controller_zone: str | None = None, bugs: tuple[str, ...] = ()):
        if policy not in POLICIES:
            raise ValueError(f"unknown zone policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.policy = policy
        self.controller_zone = controller_zone
        self.bugs = bugs
        self._lock = threading.Lock()
        self._next: dict[tuple[str, ...], int] = defaultdict(int)

    def choose(self, zone_ids: tuple[str, ...], preferred: list[dict[str, str]],
               requisite: list[dict[str, str]], lookup: Callable[[], None] = lambda: None) -> ZoneChoice:
        """The zone of a new disk. ``lookup`` is the cloud round trip that checks the
        request (done here so that a racy counter spans it, as it would in a driver)."""
        if self.policy == "round-robin" and zone_ids:
            return ZoneChoice(zone_ids[self._take_turn(zone_ids, lookup) % len(zone_ids)])
        lookup()
        if "own-zone" in self.bugs and self.controller_zone:
            return ZoneChoice(self.controller_zone)
        if "zoneid-overrides-topology" in self.bugs and zone_ids:
            return ZoneChoice(zone_ids[0])
        if "multi-zone-request-refused" in self.bugs and len(asked := topology_zones([], requisite)) > 1:
            raise NoZoneError(f"the topology requirement names {len(asked)} zones; a volume can be made for one "
                              "zone only")
        found = topology_zones([] if "first-term-only-topology" in self.bugs else preferred,
                               requisite[:1] if "first-term-only-topology" in self.bugs else requisite,
                               ZONE_KEYS[:1] if "well-known-key-ignored" in self.bugs else ZONE_KEYS)
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
        if requisite and "conflicting-zone-fallback" not in self.bugs:
            raise ConflictingZoneError(f"ConflictingZone: the topology requirement allows {', '.join(found)}, the "
                                       f"StorageClass's zoneId {', '.join(zone_ids)}; no zone satisfies both")
        return ZoneChoice(zone_ids[0], conflict=bool(requisite))

    def _take_turn(self, zone_ids: tuple[str, ...], lookup: Callable[[], None]) -> int:
        if "round-robin-unlocked" in self.bugs:
            position = self._next[zone_ids]
            lookup()  # other requests read the same position meanwhile
            self._next[zone_ids] = position + 1
            return position
        lookup()
        with self._lock:
            position = self._next[zone_ids]
            self._next[zone_ids] = position + 1
        return position
