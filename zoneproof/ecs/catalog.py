"""Disk categories and their size rules, as ECS publishes them."""

from __future__ import annotations

from dataclasses import dataclass

PERFORMANCE_LEVELS = ("PL0", "PL1", "PL2", "PL3")
MAX_DISK_SIZE = 32768  # GiB, the data-disk maximum
MAX_ATTACHMENTS_MULTI = 16  # instances a MultiAttach disk may be attached to
MAX_DISKS_PER_INSTANCE = 16  # data disks one instance may hold


@dataclass(frozen=True)
class Category:
    name: str
    min_size: int  # GiB
    max_size: int = MAX_DISK_SIZE
    performance_levels: tuple[str, ...] = ()  # empty: PerformanceLevel does not apply
    multi_attach: bool = False

    def min_size_for(self, performance_level: str | None) -> int:
        if self.performance_levels and performance_level:
            return ESSD_PL_MIN_SIZE[performance_level]
        return self.min_size


ESSD_PL_MIN_SIZE = {"PL0": 1, "PL1": 20, "PL2": 461, "PL3": 1261}

CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("cloud_efficiency", 20),
    Category("cloud_ssd", 20),
    Category("cloud_essd", 20, performance_levels=PERFORMANCE_LEVELS, multi_attach=True),
    Category("cloud_auto", 1),
    Category("cloud_essd_entry", 10),
)}

DEFAULT_CATEGORIES = tuple(CATEGORIES)


def parse_zone_categories(values, zones) -> dict[str, tuple[str, ...]]:
    """``ZONE=CAT,CAT`` options: the disk categories each named zone sells (zones not
    named sell all); ValueError names a value that is wrong."""
    out: dict[str, tuple[str, ...]] = {}
    for value in values:
        zone, sep, cats = value.partition("=")
        categories = tuple(c for c in cats.split(",") if c)
        if not sep or zone not in zones or not categories:
            raise ValueError(f"zone categories {value!r}: write ZONE=CATEGORY[,CATEGORY...] with ZONE one of "
                             f"{', '.join(zones)}")
        unknown = sorted(set(categories) - set(DEFAULT_CATEGORIES))
        if unknown:
            raise ValueError(f"zone categories {value!r}: unknown categories {', '.join(unknown)}; known: "
                             f"{', '.join(DEFAULT_CATEGORIES)}")
        out[zone] = categories
    return out


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpu_cores: int
    memory_gib: float
    disk_quantity: int  # data disks an instance of the type may hold


# Every instance of the fake is of this type (what node plugins ask for their attach limit).
INSTANCE_TYPE = InstanceType("ecs.g7.xlarge", 4, 16.0, MAX_DISKS_PER_INSTANCE)
INSTANCE_TYPES = {INSTANCE_TYPE.name: INSTANCE_TYPE}
