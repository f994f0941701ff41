"""Driver profiles: one small declarative file per CSI driver, so suites never hard-code a
driver. A profile names the driver and declares what it can do (zone policies, topology
keys, minimum size, disk categories, StorageClass parameters per scheme, whether suites
may create disks for static PVs), and, in its ``run`` section, how zoneproof runs it
beside a cluster: the controller's command and environment as templates, each node as a
command or as a stand-in, the CSIDriver object and the sidecars' flags. A profile without
``run`` describes a driver already installed in the cluster under test.

Shipped profiles live in ``zoneproof/profiles/`` (package data)."""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from zoneproof import labels
from zoneproof.workloads import storage_class

PROFILES = resources.files("zoneproof") / "profiles"
SCHEMES = ("wait-for-first-consumer", "dynamic-zoneid")
BINDINGS = ("Immediate", "WaitForFirstConsumer")
ZONE_POLICIES = ("topology", "round-robin")
STATIC_VIA = ("ecs-api", "user-supplied")
SIDECARS = ("csi-provisioner", "csi-attacher")
FIELDS = {"name", "description", "driver", "zone_policies", "volume_zone_key", "topology_keys", "min_size_gib",
          "disk_categories", "storage_classes", "static_disks", "run", "delete_attached_volume",
          "attach_limit"}
# What DeleteVolume of a volume still attached does: CSI leaves it to the plugin, which
# must say. ``refused``: an error, the disk kept; ``detached-and-deleted``: the plugin
# detaches the disk first, then deletes it.
DELETE_ATTACHED = ("refused", "detached-and-deleted")
# Whether the node plugin reports an attach limit (NodeGetInfo max_volumes_per_node), which
# the scheduler keeps each node's volumes of the driver under. ``reported`` or ``none``.
ATTACH_LIMITS = ("reported", "none")
RUN_FIELDS = {"binary", "controller", "node", "node_plugin", "csidriver", "sidecars", "bug_switches"}

# What a template may name. Deployment-wide values:
DEPLOYMENT_VARS = {
    "python": "the Python interpreter running zoneproof",
    "driver": "the driver's name",
    "driver_binary": "the binary given with --driver-binary",
    "endpoint": "the CSI endpoint, unix:///path/to/socket",
    "socket": "the CSI socket's path",
    "ecs_endpoint": "host:port of the ECS API",
    "region": "the cluster's region",
    "kubeconfig": "the cluster's kubeconfig file",
    "access_key_id": "the ECS access key id",
    "access_key_secret": "the ECS access key secret",
    "free_port": "a TCP port free on this machine, one per process",
    "zone_policy": "the zone policy under test (topology or round-robin)",
    "controller_zone": "the zone the controller runs in (the cluster's first)",
    "workdir": "a directory of the deployment's own",
}
# ... and, in the node section, the node's:
NODE_VARS = {
    "node_name": "the Kubernetes node's name",
    "instance_id": "the node's ECS instance id",
    "zone": "the node's zone",
}
# ... and in the node plugin run in a cluster's pods (clusters with kubelets: kind):
NODE_PLUGIN_VARS = {
    "driver": "the driver's name",
    "endpoint": "the node plugin's CSI endpoint in its pod, unix:///csi/csi.sock",
    "ecs_endpoint": "host:port of the ECS API, as the nodes reach it",
    "region": "the cluster's region",
    "access_key_id": "the ECS access key id",
    "access_key_secret": "the ECS access key secret",
    "node_name": "the Kubernetes node's name (the pod's $(NODE_NAME))",
}
CATEGORY_VAR = "category"  # stand-in label keys only: one label per category the node's zone sells


class ProfileError(ValueError):
    """A profile file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class StaticDisks:
    allowed: bool
    via: str


@dataclass(frozen=True)
class SchemeClass:
    binding: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class Command:
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # Node commands only: when given, one process serves every node, its arguments followed by
    # these once per node; otherwise a process per node.
    each_node: tuple[str, ...] = ()


@dataclass(frozen=True)
class StandInNode:
    """What the real node plugin would report, written for it by the registrar: for drivers
    whose node plugin needs a real host."""

    node_id: str
    topology: dict[str, str]  # segment key -> value template
    labels: dict[str, str]  # extra node labels (templates; ``{category}`` expands per category)
    max_volumes: int


NODE_PLUGIN_IMAGES = ("zoneproof", "driver-binary")
PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")


@dataclass(frozen=True)
class HostMount:
    """A node folder the node plugin's container mounts, beyond what every node plugin has
    (the kubelet's folder, its socket folder, the node's /dev)."""

    host_path: str
    mount_path: str
    propagation: str = "None"


@dataclass(frozen=True)
class NodePlugin:
    """The node plugin as a DaemonSet, on clusters whose kubelets register node plugins
    (kind). ``image``: ``zoneproof``, the image zoneproof builds of itself (its reference
    driver), or ``driver-binary``, that image with the binary given with ``--driver-binary``
    added (its Debian has util-linux, mount and e2fsprogs; ``{driver_binary}`` names the
    binary there). ``metadata_service``: each node answers as ECS's instance metadata
    service does, at its own address, for that node's instance."""

    command: Command
    image: str = "zoneproof"
    mounts: tuple[HostMount, ...] = ()
    metadata_service: bool = False


@dataclass(frozen=True)
class RunSpec:
    controller: Command
    node_command: Command | None
    stand_in: StandInNode | None
    csidriver: dict
    sidecars: dict[str, tuple[str, ...]]
    needs_binary: bool
    # The node plugin as a DaemonSet, for clusters whose kubelets register node plugins
    # (kind); None: the driver has none that runs there.
    node_plugin: NodePlugin | None = None
    # The driver reads ZONEPROOF_BUGS and can carry the driver bugs of zoneproof.bugs.
    bug_switches: bool = False


@dataclass(frozen=True)
class DriverProfile:
    name: str
    description: str
    driver: str
    zone_policies: tuple[str, ...]
    volume_zone_key: str
    topology_keys: tuple[str, ...]
    min_size_gib: int
    disk_categories: tuple[str, ...]  # in order of preference, as the driver tries them
    storage_classes: dict[str, SchemeClass]
    static_disks: StaticDisks
    run: RunSpec | None
    source: str = ""  # what load_profile takes to load it again: a shipped name or a file path
    delete_attached_volume: str = "refused"  # one of DELETE_ATTACHED
    attach_limit: str = "reported"  # one of ATTACH_LIMITS

    @property
    def zone_keys(self) -> tuple[str, ...]:
        """The keys the driver names a zone under in its topology: its own and the
        well-known one, those of them NodeGetInfo reports."""
        return tuple(k for k in dict.fromkeys((self.volume_zone_key, labels.ZONE)) if k in self.topology_keys)

    @property
    def zone_parameters(self) -> tuple[str, ...]:
        """The StorageClass parameters that list zones (their template holds ``{zones}``,
        as the article's ``zoneId``): a claim's disk may go only to a zone they list."""
        return tuple(dict.fromkeys(key for sc in self.storage_classes.values()
                                   for key, value in sc.parameters.items() if "{zones}" in value))

    @property
    def size(self) -> str:
        """The volume size suites request: the smallest the driver accepts."""
        return f"{self.min_size_gib}Gi"

    def storage_class(self, scheme: str, name: str, zones: list[str] | tuple[str, ...], *,
                      binding: str | None = None, allowed_zones: tuple[str, ...] = (),
                      zone_key: str | None = None) -> dict:
        """The StorageClass object of a scheme, with ``{zones}`` expanded to a comma list;
        ``allowed_zones`` under ``zone_key`` (the volume zone key unless given)."""
        if scheme not in self.storage_classes:
            raise ProfileError(f"profile {self.name!r} has no StorageClass for scheme {scheme!r} "
                               f"(it has: {', '.join(self.storage_classes)})")
        sc = self.storage_classes[scheme]
        params = {k: v.replace("{zones}", ",".join(zones)) for k, v in sc.parameters.items()}
        return storage_class(name, self.driver, params, binding=binding or sc.binding,
                             allowed_zones=allowed_zones, zone_key=zone_key or self.volume_zone_key)


def _need(data: dict, key: str, kind, where: str):
    if key not in data:
        raise ProfileError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProfileError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _strings(data: dict, key: str, where: str, *, allowed: tuple[str, ...] = ()) -> tuple[str, ...]:
    values = _need(data, key, list, where)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ProfileError(f"{where}: {key!r} must be a non-empty list of names, got {values!r}")
    wrong = [v for v in values if allowed and v not in allowed]
    if wrong:
        raise ProfileError(f"{where}: {key!r} has {', '.join(wrong)}; known: {', '.join(allowed)}")
    return tuple(values)


def check_template(text: str, allowed: set[str], where: str) -> str:
    """A template may name only the variables of its place; say which are known otherwise."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise ProfileError(f"{where}: bad template {text!r}: {err}") from None
    unknown = sorted(names - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown template variable(s) {', '.join('{' + u + '}' for u in unknown)} "
                           f"in {text!r}; known here: {', '.join(sorted(allowed))}")
    return text


def _command(body: object, where: str, allowed: set[str]) -> Command:
    if not isinstance(body, dict):
        raise ProfileError(f"{where}: must be a mapping with 'command' (and 'env')")
    unknown = sorted(set(body) - {"command", "env"})
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}; known: command, env")
    args = _strings(body, "command", where)
    env = body.get("env") or {}
    if not isinstance(env, dict):
        raise ProfileError(f"{where}: 'env' must be a mapping of variable to template")
    return Command(tuple(check_template(a, allowed, f"{where}.command") for a in args),
                   {str(k): check_template(str(v), allowed, f"{where}.env.{k}") for k, v in env.items()})


def _node_command(body: dict, where: str, allowed: set[str]) -> Command:
    """A node section's command: a process per node, or with ``each_node`` one process for
    every node, whose per-node values appear only in ``each_node``."""
    if "each_node" not in body:
        return _command(body, where, allowed | set(NODE_VARS))
    each_node = _strings(body, "each_node", where)
    per_node = set(NODE_VARS) | {"endpoint", "socket"}
    command = _command({k: v for k, v in body.items() if k != "each_node"}, where, allowed - per_node)
    return Command(command.args, command.env,
                   tuple(check_template(a, allowed | per_node, f"{where}.each_node") for a in each_node))


def _node_plugin(body: dict, where: str) -> NodePlugin:
    known = {"command", "env", "image", "mounts", "metadata_service"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    image = body.get("image", "zoneproof")
    if image not in NODE_PLUGIN_IMAGES:
        raise ProfileError(f"{where}.image must be one of {', '.join(NODE_PLUGIN_IMAGES)}, got {image!r}")
    allowed = set(NODE_PLUGIN_VARS) | ({"driver_binary"} if image == "driver-binary" else set())
    mounts = []
    for n, mount in enumerate(body.get("mounts") or []):
        at = f"{where}.mounts[{n}]"
        if not isinstance(mount, dict) or set(mount) - {"host_path", "mount_path", "propagation"}:
            raise ProfileError(f"{at}: a mount is a mapping of host_path, mount_path and (optional) propagation")
        paths = [_need(mount, key, str, at) for key in ("host_path", "mount_path")]
        if not all(p.startswith("/") for p in paths):
            raise ProfileError(f"{at}: host_path and mount_path must be absolute, got {paths}")
        propagation = mount.get("propagation", "None")
        if propagation not in PROPAGATIONS:
            raise ProfileError(f"{at}.propagation must be one of {', '.join(PROPAGATIONS)}, got {propagation!r}")
        mounts.append(HostMount(*paths, propagation))
    metadata_service = body.get("metadata_service", False)
    if not isinstance(metadata_service, bool):
        raise ProfileError(f"{where}.metadata_service: must be true or false")
    command = _command({k: body[k] for k in ("command", "env") if k in body}, where, allowed)
    return NodePlugin(command, image, tuple(mounts), metadata_service)


def _stand_in(body: dict, where: str, topology_keys: tuple[str, ...]) -> StandInNode:
    unknown = sorted(set(body) - {"node_id", "topology", "labels", "max_volumes"})
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}; known: labels, max_volumes, node_id, "
                           "topology")
    allowed = set(DEPLOYMENT_VARS) | set(NODE_VARS)
    topology = _need(body, "topology", dict, where)
    if set(topology) != set(topology_keys):
        raise ProfileError(f"{where}.topology: keys {sorted(topology)} must be exactly the profile's "
                           f"topology_keys {sorted(topology_keys)}")
    node_labels = body.get("labels") or {}
    if not isinstance(node_labels, dict):
        raise ProfileError(f"{where}.labels: must be a mapping of label to value template")
    return StandInNode(
        node_id=check_template(_need(body, "node_id", str, where), allowed, f"{where}.node_id"),
        topology={k: check_template(str(v), allowed, f"{where}.topology.{k}") for k, v in topology.items()},
        labels={check_template(str(k), allowed | {CATEGORY_VAR}, f"{where}.labels"):
                check_template(str(v), allowed, f"{where}.labels.{k}") for k, v in node_labels.items()},
        max_volumes=int(body.get("max_volumes", 0)))


def _run(body: object, where: str, topology_keys: tuple[str, ...]) -> RunSpec:
    if not isinstance(body, dict):
        raise ProfileError(f"{where}: must be a mapping")
    unknown = sorted(set(body) - RUN_FIELDS)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(RUN_FIELDS))}")
    needs_binary = body.get("binary", "none")
    if needs_binary not in ("required", "none"):
        raise ProfileError(f"{where}.binary: must be 'required' (the user gives --driver-binary) or 'none'")
    allowed = set(DEPLOYMENT_VARS)
    if needs_binary == "none":
        allowed.discard("driver_binary")
    controller = _command(_need(body, "controller", dict, where), f"{where}.controller", allowed)
    node = _need(body, "node", dict, where)
    if ("command" in node) == ("stand_in" in node):
        raise ProfileError(f"{where}.node: give either 'command' (a node endpoint per node) or 'stand_in' "
                           "(the registrar reports for a node plugin that needs a real host)")
    node_command = stand_in = None
    if "command" in node:
        node_command = _node_command(node, f"{where}.node", allowed)
    else:
        stand_in = _stand_in(_need(node, "stand_in", dict, f"{where}.node"), f"{where}.node.stand_in", topology_keys)
    sidecars = body.get("sidecars") or {}
    if not isinstance(sidecars, dict) or set(sidecars) - set(SIDECARS):
        raise ProfileError(f"{where}.sidecars: a mapping from {', '.join(SIDECARS)} to flag lists")
    flags = {}
    for name in SIDECARS:
        values = sidecars.get(name) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProfileError(f"{where}.sidecars.{name}: must be a list of flags")
        flags[name] = tuple(check_template(v, allowed, f"{where}.sidecars.{name}") for v in values)
    csidriver = body.get("csidriver") or {}
    if not isinstance(csidriver, dict):
        raise ProfileError(f"{where}.csidriver: must be a CSIDriver spec (attachRequired, podInfoOnMount, ...)")
    node_plugin = None
    if "node_plugin" in body:
        node_plugin = _node_plugin(_need(body, "node_plugin", dict, where), f"{where}.node_plugin")
        if node_plugin.image == "driver-binary" and needs_binary != "required":
            raise ProfileError(f"{where}.node_plugin: image driver-binary needs 'binary: required' (the image is "
                               "built around the binary the user gives)")
    bug_switches = body.get("bug_switches", False)
    if not isinstance(bug_switches, bool):
        raise ProfileError(f"{where}.bug_switches: must be true (the driver reads ZONEPROOF_BUGS) or false")
    return RunSpec(controller, node_command, stand_in, csidriver, flags, needs_binary == "required", node_plugin,
                   bug_switches)


def parse_profile(data: object, where: str, source: str = "") -> DriverProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile is a mapping of fields")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
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
    topology_keys = _strings(data, "topology_keys", where)
    min_size = _need(data, "min_size_gib", int, where)
    if min_size < 1:
        raise ProfileError(f"{where}: 'min_size_gib' must be at least 1, got {min_size}")
    return DriverProfile(
        name=_need(data, "name", str, where), description=str(data.get("description", "")),
        driver=_need(data, "driver", str, where),
        zone_policies=_strings(data, "zone_policies", where, allowed=ZONE_POLICIES),
        volume_zone_key=_need(data, "volume_zone_key", str, where), topology_keys=topology_keys,
        min_size_gib=min_size, disk_categories=_strings(data, "disk_categories", where),
        storage_classes=classes,
        static_disks=StaticDisks(allowed=_need(static, "allowed", bool, f"{where}: static_disks"), via=via),
        run=_run(data["run"], f"{where}: run", topology_keys) if data.get("run") is not None else None,
        source=source or where, delete_attached_volume=_choice(data, "delete_attached_volume", DELETE_ATTACHED,
                                                               "refused", where),
        attach_limit=_choice(data, "attach_limit", ATTACH_LIMITS, "reported", where))


def _choice(data: dict, key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise ProfileError(f"{where}: '{key}' must be one of {', '.join(choices)}, got {value!r}")
    return value


# Kubernetes' external storage test driver file (the YAML ``e2e.test -storage.testdriver``
# takes) read as a profile, so a driver that has one needs no new file. It describes a
# driver installed in the cluster under test: no ``run`` section, the topology policy only,
# the StorageClass it names as the WaitForFirstConsumer scheme, no disk creation for static
# PVs (its disks are not ECS disks).
QUANTITY_BYTES = {"Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "M": 10**6, "G": 10**9, "T": 10**12}


def _gib(quantity: object, where: str) -> int:
    """A Kubernetes quantity (20Gi, 500M), rounded up to whole GiB."""
    match = re.fullmatch(r"(\d+)(Mi|Gi|Ti|M|G|T)", str(quantity).strip())
    if not match:
        raise ProfileError(f"{where}: size {quantity!r} is not a quantity such as 20Gi")
    return max(1, math.ceil(int(match[1]) * QUANTITY_BYTES[match[2]] / 2**30))


def from_driver_info(data: dict, where: str, directory: Path) -> DriverProfile:
    """A profile from an external storage test driver file (``DriverInfo``, ``StorageClass``)."""
    info = data.get("DriverInfo")
    if not isinstance(info, dict) or not info.get("Name"):
        raise ProfileError(f"{where}: DriverInfo.Name is missing")
    capabilities = info.get("Capabilities") or {}
    keys = info.get("TopologyKeys") or []
    if not capabilities.get("topology") or not keys:
        raise ProfileError(f"{where}: DriverInfo must set Capabilities.topology: true and TopologyKeys; without "
                           "them there is no zone to check (Kubernetes' own topology suite skips such a driver "
                           "silently; zoneproof refuses it)")
    zone_keys = [k for k in keys if "zone" in k]
    if not zone_keys:
        raise ProfileError(f"{where}: none of TopologyKeys {keys} names a zone")
    source = data.get("StorageClass") or {}
    if "FromFile" in source:
        path = directory / source["FromFile"]
        try:
            sc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ProfileError(f"{where}: StorageClass.FromFile {path}: {err}") from None
        params = {str(k): str(v) for k, v in (sc.get("parameters") or {}).items()}
    elif source.get("FromName"):
        params = {}
    else:
        raise ProfileError(f"{where}: StorageClass must be FromFile (zoneproof renders the class itself, with its "
                           f"parameters) or FromName; got {sorted(source) or 'nothing'}")
    size = (info.get("SupportedSizeRange") or {}).get("Min", "1Gi")
    return DriverProfile(
        name=str(data.get("ShortName") or info["Name"]), description=f"from the external test driver file {where}",
        driver=str(info["Name"]), zone_policies=("topology",), volume_zone_key=zone_keys[0],
        topology_keys=tuple(keys), min_size_gib=_gib(size, f"{where}: DriverInfo.SupportedSizeRange.Min"),
        disk_categories=tuple(c for c in params.get("type", "").split(",") if c) or ("default",),
        storage_classes={"wait-for-first-consumer": SchemeClass("WaitForFirstConsumer", params)},
        static_disks=StaticDisks(allowed=False, via="user-supplied"), run=None, source=where,
        attach_limit="reported" if capabilities.get("volumeLimits") else "none")


def shipped() -> list[str]:
    return sorted(entry.name.removesuffix(".yaml") for entry in PROFILES.iterdir() if entry.name.endswith(".yaml"))


def load_profile(name_or_path: str) -> DriverProfile:
    """A shipped profile by name (``reference``, ``alibaba``) or a profile file by path."""
    if name_or_path in shipped():
        text, where = PROFILES.joinpath(f"{name_or_path}.yaml").read_text(), f"profile {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"no driver profile {name_or_path!r} (shipped: {', '.join(shipped())}; "
                               "or give a file path)")
        text, where, name_or_path = path.read_text(), str(path), str(path.resolve())
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ProfileError(f"{where}: not valid YAML: {err}") from None
    if isinstance(data, dict) and "DriverInfo" in data:
        return from_driver_info(data, name_or_path, Path(name_or_path).parent)
    return parse_profile(data, where, name_or_path)
