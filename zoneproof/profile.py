"""Driver profiles: one small declarative file per CSI driver, so suites never hard-code a
driver. A profile names the driver, how it is deployed, its topology keys, the
StorageClass parameters of each provisioning scheme, and whether and how suites may
create disks for static PVs. Shipped profiles live in ``zoneproof/profiles/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from zoneproof.workloads import storage_class

PROFILES_DIR = Path(__file__).parent / "profiles"
SCHEMES = ("wait-for-first-consumer", "dynamic-zoneid")
BINDINGS = ("Immediate", "WaitForFirstConsumer")
DEPLOYMENTS = ("local", "external")
STATIC_VIA = ("ecs-api", "user-supplied")
FIELDS = {"name", "description", "driver", "deployment", "zone_policies", "volume_zone_key", "topology_keys",
          "min_size_gib", "storage_classes", "static_disks"}


class ProfileError(ValueError):
    """A profile file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class StaticDisks:
    allowed: bool
    via: str
    category: str


@dataclass(frozen=True)
class SchemeClass:
    binding: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class DriverProfile:
    name: str
    description: str
    driver: str
    deployment: str
    zone_policies: tuple[str, ...]
    volume_zone_key: str
    topology_keys: tuple[str, ...]
    min_size_gib: int
    storage_classes: dict[str, SchemeClass]
    static_disks: StaticDisks

    def storage_class(self, scheme: str, name: str, zones: list[str] | tuple[str, ...]) -> dict:
        """The StorageClass object of a scheme, with ``{zones}`` expanded to a comma list."""
        if scheme not in self.storage_classes:
            raise ProfileError(f"profile {self.name!r} has no StorageClass for scheme {scheme!r} "
                               f"(it has: {', '.join(self.storage_classes)})")
        sc = self.storage_classes[scheme]
        params = {k: v.replace("{zones}", ",".join(zones)) for k, v in sc.parameters.items()}
        return storage_class(name, self.driver, params, binding=sc.binding)


def _need(data: dict, key: str, kind, where: str):
    if key not in data:
        raise ProfileError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise ProfileError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def parse_profile(data: object, where: str) -> DriverProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile is a mapping of fields")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
    deployment = _need(data, "deployment", str, where)
    if deployment not in DEPLOYMENTS:
        raise ProfileError(f"{where}: deployment {deployment!r} is not one of {', '.join(DEPLOYMENTS)}")
    classes = {}
    for scheme, body in _need(data, "storage_classes", dict, where).items():
        if scheme not in SCHEMES:
            raise ProfileError(f"{where}: unknown scheme {scheme!r} in storage_classes; known: {', '.join(SCHEMES)}")
        here = f"{where}: storage_classes.{scheme}"
        binding = _need(body, "binding", str, here) if isinstance(body, dict) else None
        if binding not in BINDINGS:
            raise ProfileError(f"{here}: binding must be one of {', '.join(BINDINGS)}, got {binding!r}")
        params = _need(body, "parameters", dict, here)
        classes[scheme] = SchemeClass(binding, {str(k): str(v) for k, v in params.items()})
    static = _need(data, "static_disks", dict, where)
    via = _need(static, "via", str, f"{where}: static_disks")
    if via not in STATIC_VIA:
        raise ProfileError(f"{where}: static_disks.via must be one of {', '.join(STATIC_VIA)}, got {via!r}")
    return DriverProfile(
        name=_need(data, "name", str, where), description=str(data.get("description", "")),
        driver=_need(data, "driver", str, where), deployment=deployment,
        zone_policies=tuple(_need(data, "zone_policies", list, where)),
        volume_zone_key=_need(data, "volume_zone_key", str, where),
        topology_keys=tuple(_need(data, "topology_keys", list, where)),
        min_size_gib=_need(data, "min_size_gib", int, where), storage_classes=classes,
        static_disks=StaticDisks(allowed=_need(static, "allowed", bool, f"{where}: static_disks"), via=via,
                                 category=_need(static, "category", str, f"{where}: static_disks")))


def load_profile(name_or_path: str) -> DriverProfile:
    """A shipped profile by name (``reference``, ``alibaba``) or a profile file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise ProfileError(f"no driver profile {name_or_path!r} (shipped: {shipped}; or give a file path)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    return parse_profile(data, str(path))
