"""The placement oracle: for every pod with zonal volumes, its node's zone (every zone key
agreeing) equals its PersistentVolume's zone (labels and nodeAffinity agreeing) equals
its disk's zone in ECS; a claim provisioned for a selected node (WaitForFirstConsumer) has
its disk in that node's zone; the disk is attached to no instance but the pod's node's; claims
of StatefulSet pods are named ``{template}-{statefulset}-{ordinal}``; and a pod whose
zone has no schedulable node waits Pending with the scheduler's volume zone conflict and no
attachment anywhere.

``check`` works on a :class:`Snapshot` of plain dicts (what the API and the fake ECS
return), so the same verdict serves tests, chaos probes, the CLI and reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

from zoneproof import labels
from zoneproof.cluster.nodes import instance_of

PV_ZONE_LABELS = (labels.ZONE, labels.ZONE_DEPRECATED)
# The node the scheduler chose for a WaitForFirstConsumer claim's first consumer: the
# provisioner must make the disk in its zone (it stays on the claim after binding).
SELECTED_NODE = "volume.kubernetes.io/selected-node"
# How the scheduler says "this pod's volumes pin it to nodes that cannot take it": the
# VolumeBinding plugin (nodeAffinity PVs; "had volume node affinity conflict" before
# Kubernetes 1.26 worded it anew) and the VolumeZone plugin (PVs with zone labels).
CONFLICT_MESSAGES = ("volume node affinity conflict", "didn't match PersistentVolume's node affinity",
                     "had no available volume zone")


def is_volume_zone_conflict(message: str | None) -> bool:
    return any(m in (message or "") for m in CONFLICT_MESSAGES)


@dataclass
class Snapshot:
    pods: list[dict]
    pvcs: dict[tuple[str, str], dict]  # (namespace, name) -> PVC
    pvs: dict[str, dict]
    nodes: dict[str, dict]
    volume_attachments: list[dict]
    disks: dict[str, dict]  # ECS DescribeDisks entries by DiskId
    instance_zones: dict[str, str]  # ECS instance id -> zone
    storage_classes: dict[str, str] = field(default_factory=dict)  # StorageClass name -> provisioner

    @cached_property
    def attachments_by_pv(self) -> dict[str, list[dict]]:
        """VolumeAttachments by the PV they attach: each pod's volumes find theirs without
        going through every attachment of the cluster (hundreds at scale)."""
        found: dict[str, list[dict]] = {}
        for va in self.volume_attachments:
            pv = ((va.get("spec") or {}).get("source") or {}).get("persistentVolumeName")
            if pv:
                found.setdefault(pv, []).append(va)
        return found


@dataclass
class VolumeVerdict:
    claim: str
    pv: str = ""
    disk: str = ""
    pv_zone: str = ""
    disk_zone: str = ""
    attached_to: list[str] = field(default_factory=list)  # ECS instances holding the disk
    attached_nodes: list[str] = field(default_factory=list)  # nodes of VolumeAttachments marked attached


@dataclass
class PodVerdict:
    namespace: str
    pod: str
    phase: str
    node: str = ""
    node_zone: str = ""
    state: str = "placed"  # placed | waiting (Pending with the conflict, as it must) | pending | violation
    terminating: bool = False  # deleted, not yet gone
    volumes: list[VolumeVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Those of the problems that cannot heal (what a bound PV or a disk states never changes):
    # waiting on them is pointless, so waits fail at once.
    lasting: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lasting_problem(self, problem: str) -> None:
        self.problems.append(problem)
        self.lasting.append(problem)


@dataclass
class NodeSeen:
    zone: str
    schedulable: bool


@dataclass
class Verdict:
    pods: list[PodVerdict]
    # Every node as the oracle saw it (for pictures of where things are, not for the verdict).
    nodes: dict[str, NodeSeen] = field(default_factory=dict)
    # What nodes state wrongly for good (a zone written empty): every pod's placement rests
    # on it, so it is a violation of the verdict whoever runs there.
    node_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No violation, over at least one pod: a verdict that judged nothing proves nothing."""
        return bool(self.pods) and all(p.ok for p in self.pods) and not self.node_problems

    @property
    def violations(self) -> list[str]:
        found = self.node_problems + [f"{p.namespace}/{p.pod}: {problem}" for p in self.pods
                                      for problem in p.problems]
        return found or ([] if self.pods else ["no pod with a zonal volume of the driver was judged"])

    def table(self) -> str:
        """One line per pod and volume, for people."""
        header = ("pod", "phase", "node", "node zone", "claim", "PV zone", "disk", "disk zone", "attached to",
                  "verdict")
        rows = []
        for p in self.pods:
            verdict = "ok" if p.ok and p.state == "placed" else (p.state if p.ok else "VIOLATION: "
                                                                  + "; ".join(p.problems))
            for i, v in enumerate(p.volumes or [VolumeVerdict(claim="-")]):
                rows.append((p.pod if i == 0 else "", p.phase if i == 0 else "", p.node or "-",
                             p.node_zone or "-", v.claim, v.pv_zone or "-", v.disk or "-", v.disk_zone or "-",
                             ",".join(v.attached_to) or "-", verdict if i == 0 else ""))
        widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join(fmt.format(*r).rstrip() for r in [header, *rows])


class LastingViolation(AssertionError):
    """A violation that cannot heal: whoever waits for a verdict fails at once."""


def raise_lasting(verdict: Verdict) -> None:
    found = verdict.node_problems + [f"{p.namespace}/{p.pod}: {problem}" for p in verdict.pods
                                     for problem in p.lasting]
    if found:
        raise LastingViolation("placement violations that cannot heal:\n" + "\n".join(found))


def settled(verdict: Verdict, replicas: int, *, lost_zone: str = "") -> tuple[bool, str]:
    """Whether a workload has settled: ``replicas`` pods, no violation, and every pod Running
    with each disk attached to its node; except that with ``lost_zone``, pods whose disks
    are in that zone must instead wait Pending with the conflict, their disks attached
    nowhere. Returns (settled, what is still off), for waits that report progress; raises
    :class:`LastingViolation` on a violation that cannot heal."""
    raise_lasting(verdict)
    off = []
    if len(verdict.pods) != replicas:
        off.append(f"{len(verdict.pods)}/{replicas} pods")
    for p in verdict.pods:
        stranded = bool(lost_zone) and any(v.pv_zone == lost_zone for v in p.volumes)
        if not p.ok:
            off.append(f"{p.pod}: " + "; ".join(p.problems))
        elif stranded:
            held = [a for v in p.volumes for a in (*v.attached_to, *v.attached_nodes)]
            if p.state != "waiting" or held:
                off.append(f"{p.pod} not yet waiting for {lost_zone} ({p.phase} on {p.node or 'no node'}, "
                           f"attached to {','.join(held) or 'nothing'})")
        elif p.terminating:
            off.append(f"{p.pod} terminating on {p.node or 'no node'}")
        elif p.phase != "Running" or p.state != "placed" or not all(v.attached_to for v in p.volumes):
            off.append(f"{p.pod} {p.phase} on {p.node or 'no node'}, attached to "
                       f"{','.join(a for v in p.volumes for a in v.attached_to) or 'nothing'}")
        elif not p.volumes or any(not v.pv for v in p.volumes):
            off.append(f"{p.pod} has an unbound claim")
    waiting = sum(1 for p in verdict.pods if p.state == "waiting")
    placed = len(verdict.pods) - waiting
    return not off, (f"{placed} placed, {waiting} waiting" if not off else "; ".join(off))


def picture(verdict: "Verdict", zones: list[str]) -> str:
    """Pods and their disks drawn by zone, one column per zone: where a pod runs in one
    column and its disk sits in another, the picture shows it at a glance."""
    cells: dict[str, list[str]] = {z: [] for z in zones}
    elsewhere: list[str] = []
    for p in verdict.pods:
        mark = "" if p.ok else " !!"
        for v in p.volumes:
            if p.node_zone and p.node_zone == v.disk_zone and p.node_zone in cells:
                cells[p.node_zone].append(f"{p.pod} + {v.disk or v.claim}{mark}")
                continue
            if p.node_zone in cells:
                cells[p.node_zone].append(f"{p.pod} (pod){mark}")
            else:
                elsewhere.append(f"{p.pod}: {p.state}")
            if v.disk_zone in cells:
                cells[v.disk_zone].append(f"{v.disk or v.claim} of {p.pod} (disk){mark}")
    width = max([len(z) for z in zones] + [len(c) for col in cells.values() for c in col] + [10]) + 2
    depth = max([len(col) for col in cells.values()] + [0])
    lines = ["".join(z.ljust(width) for z in zones).rstrip(),
             "".join(("-" * (width - 2)).ljust(width) for _ in zones).rstrip()]
    for row in range(depth):
        lines.append("".join((cells[z][row] if row < len(cells[z]) else "").ljust(width) for z in zones).rstrip())
    if elsewhere:
        lines.append("not placed: " + ", ".join(elsewhere))
    return "\n".join(lines)


def _zone_labels(node: dict) -> dict[str, str | None]:
    node_labels = node["metadata"].get("labels") or {}
    return {k: node_labels.get(k) for k in labels.NODE_ZONE_KEYS}


def zone_labels_disagree(node: dict) -> bool:
    """Two zone keys naming different zones: a node plugin or a labeller got it wrong, and
    nothing in a test run will right it (a missing key may still be written)."""
    return len({v for v in _zone_labels(node).values() if v}) > 1


def empty_zone_keys(node: dict) -> list[str]:
    """Zone keys a node carries with an empty value: written so by its node plugin (an
    empty NodeGetInfo segment) or a labeller, and kept until it registers again; unlike a
    missing key, which may still be written."""
    return [key for key, value in _zone_labels(node).items() if value == ""]


def node_zone(node: dict) -> tuple[str, list[str]]:
    """The zone a node states, and problems if its zone keys disagree or are missing."""
    found = _zone_labels(node)
    values = {v for v in found.values() if v}
    if len(values) != 1 or not all(found.values()):  # missing or empty ("") keys state no zone
        return (values.pop() if len(values) == 1 else ""), [
            f"node {node['metadata']['name']} zone labels disagree or are missing: {found}"]
    return values.pop(), []


def pv_zone(pv: dict) -> tuple[str, list[str]]:
    """The zone a PV states through its labels and its nodeAffinity, which must agree."""
    name = pv["metadata"]["name"]
    stated: dict[str, set[str]] = {}
    empty = []
    for key in PV_ZONE_LABELS:
        value = (pv["metadata"].get("labels") or {}).get(key)
        if value == "":
            empty.append(f"PV {name} has an empty {key} label")
        elif value:
            stated[f"label {key}"] = {value}
    affinity = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
    for term in affinity.get("nodeSelectorTerms") or []:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") in (labels.DISK_ZONE, *PV_ZONE_LABELS) and expr.get("operator") == "In":
                stated.setdefault(f"nodeAffinity {expr['key']}", set()).update(expr.get("values") or [])
    if not stated:
        return "", [*empty, f"PV {name} states no zone (no zone label, no zone nodeAffinity)"]
    problems = empty + [f"PV {name} {where} allows several zones {sorted(zones)}"
                        for where, zones in stated.items() if len(zones) != 1 or "" in zones]
    zones = set().union(*stated.values())
    if len(zones) != 1:
        problems.append(f"PV {name} zone statements disagree: "
                        + ", ".join(f"{w}={sorted(z)}" for w, z in sorted(stated.items())))
        return "", problems
    return zones.pop(), problems


def _existed_before(node: dict, pv: dict) -> bool:
    """Whether the Node is the one that stood under its name when the PV was made: a node
    made again later (another machine, perhaps in another zone) says nothing of where the
    claim was provisioned. Timestamps are RFC 3339 in UTC, so they compare as text."""
    made = (node.get("metadata") or {}).get("creationTimestamp") or ""
    return made <= ((pv.get("metadata") or {}).get("creationTimestamp") or made)


def _schedulable(node: dict) -> bool:
    status = node.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    blocking = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule",
                                                                                               "NoExecute")]
    return ready and not blocking and not (node.get("spec") or {}).get("unschedulable")


def check(snapshot: Snapshot, *, driver: str) -> Verdict:
    zones_with_room = set()
    seen = {}
    node_problems = [f"node {name} states an empty zone under {key} (its node plugin reported none; "
                     "no pod can be placed by it until the node registers again)"
                     for name, node in sorted(snapshot.nodes.items()) for key in empty_zone_keys(node)]
    for name, node in snapshot.nodes.items():
        zone, problems = node_zone(node)
        seen[name] = NodeSeen(zone, _schedulable(node))
        if seen[name].schedulable and zone and not problems:
            zones_with_room.add(zone)
    node_instance = {name: instance_of(n, required=False) for name, n in snapshot.nodes.items()}
    verdicts = []
    for pod in sorted(snapshot.pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        verdict = _check_pod(pod, snapshot, driver, zones_with_room, node_instance)
        if verdict is not None:
            verdicts.append(verdict)
    return Verdict(verdicts, seen, node_problems)


def _check_pod(pod: dict, snap: Snapshot, driver: str, zones_with_room: set[str],
               node_instance: dict[str, str]) -> PodVerdict | None:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ns, name = meta["namespace"], meta["name"]
    claims = [(v["name"], v["persistentVolumeClaim"]["claimName"]) for v in spec.get("volumes") or []
              if v.get("persistentVolumeClaim")]
    if not claims:
        return None
    v = PodVerdict(namespace=ns, pod=name, phase=status.get("phase", ""), node=spec.get("nodeName") or "",
                   terminating=bool(meta.get("deletionTimestamp")))
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "StatefulSet"), None)
    if owner:
        for volume_name, claim_name in claims:
            if claim_name != f"{volume_name}-{name}":
                v.lasting_problem(f"claim {claim_name} of StatefulSet pod {name} is not named "
                                  f"{volume_name}-{name} ({{template}}-{{statefulset}}-{{ordinal}})")
    if v.node:
        node = snap.nodes.get(v.node)
        if node is None:
            v.problems.append(f"node {v.node} does not exist")
        else:
            v.node_zone, problems = node_zone(node)
            for problem in problems:
                (v.lasting_problem if zone_labels_disagree(node) else v.problems.append)(problem)
    zonal = False
    for _, claim_name in claims:
        vol = VolumeVerdict(claim=claim_name)
        v.volumes.append(vol)
        pvc = snap.pvcs.get((ns, claim_name))
        vol.pv = ((pvc or {}).get("spec") or {}).get("volumeName") or ""
        pv = snap.pvs.get(vol.pv) if vol.pv else None
        class_name = ((pvc or {}).get("spec") or {}).get("storageClassName") or ""
        ours = snap.storage_classes.get(class_name) == driver  # the claim asks the driver under test
        if pv is None:
            zonal = zonal or ours  # judged (pending) while its claim waits, not dropped
            continue
        csi = (pv.get("spec") or {}).get("csi") or {}
        if csi.get("driver") != driver:
            if ours:
                zonal = True
                v.lasting_problem(f"claim {claim_name} asks StorageClass {class_name} of {driver}, but its PV "
                                  f"{vol.pv} is of {csi.get('driver') or 'no CSI driver'}")
            continue
        zonal = True
        vol.pv_zone, problems = pv_zone(pv)
        for problem in problems:
            v.lasting_problem(problem)
        vol.disk = csi.get("volumeHandle", "")
        disk = snap.disks.get(vol.disk)
        if disk is None:
            # A disk goes only after its claim (DeleteVolume of a released PV), and the pod was
            # read first: while neither is being deleted, nothing brings the disk back.
            leaving = v.terminating or bool(((pvc or {}).get("metadata") or {}).get("deletionTimestamp"))
            (v.problems.append if leaving else v.lasting_problem)(f"disk {vol.disk} of PV {vol.pv} does not "
                                                                  "exist in ECS")
            continue
        vol.disk_zone = disk["ZoneId"]
        vol.attached_to = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
        if vol.pv_zone and vol.disk_zone != vol.pv_zone:
            v.lasting_problem(f"PV {vol.pv} says zone {vol.pv_zone} but disk {vol.disk} is in {vol.disk_zone}")
        selected = (((pvc or {}).get("metadata") or {}).get("annotations") or {}).get(SELECTED_NODE, "")
        if selected in snap.nodes and _existed_before(snap.nodes[selected], pv):
            selected_zone = node_zone(snap.nodes[selected])[0]
            if selected_zone and vol.disk_zone != selected_zone:
                v.lasting_problem(f"claim {claim_name} was provisioned for node {selected} in {selected_zone}, but "
                                  f"its disk {vol.disk} is in {vol.disk_zone}")
        if v.node_zone and vol.disk_zone != v.node_zone:
            v.problems.append(f"pod runs on {v.node} in {v.node_zone} but disk {vol.disk} is in {vol.disk_zone}")
        wrong = [i for i in vol.attached_to if not v.node or i != node_instance.get(v.node)]
        for instance in wrong:
            v.problems.append(f"disk {vol.disk} is attached to {instance} (zone "
                              f"{snap.instance_zones.get(instance, '?')}), not to the pod's node "
                              f"{v.node or '(none)'}")
        for va in snap.attachments_by_pv.get(vol.pv, []):
            va_spec = va.get("spec") or {}
            if va_spec.get("attacher") != driver or not (va.get("status") or {}).get("attached"):
                continue
            vol.attached_nodes.append(va_spec.get("nodeName") or "")
            if va_spec.get("nodeName") != v.node:
                v.problems.append(f"VolumeAttachment {va['metadata']['name']} attaches PV {vol.pv} to "
                                  f"{va_spec.get('nodeName')}, not to the pod's node {v.node or '(none)'}")
    if not zonal:
        return None
    if not v.node and v.phase == "Pending":
        needed = {vol.pv_zone for vol in v.volumes if vol.pv_zone}
        if needed and not needed & zones_with_room:
            conditions = status.get("conditions") or []
            conflict = any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                           and is_volume_zone_conflict(c.get("message")) for c in conditions)
            v.state = "waiting" if conflict else "pending"
            if not conflict:
                v.problems.append(f"Pending for zone {sorted(needed)} that has no schedulable node, "
                                  "but without a volume zone conflict in its PodScheduled condition")
        else:
            v.state = "pending"
    if v.problems:
        v.state = "violation"
    return v


def _items(list_call, *args) -> list[dict]:
    """A list call's items as the API sends them (JSON), without building the client's
    model objects first: at hundreds of pods and nodes that costs most of a snapshot."""
    return json.loads(list_call(*args, _preload_content=False).data)["items"]


def take_snapshot(api, cloud, namespace: str | None = None, *, driver: str) -> Snapshot:
    """Read everything the oracle needs: the namespace's pods and claims, all PVs, nodes and
    VolumeAttachments from Kubernetes, then, through the ECS API (``cloud``, a
    :class:`zoneproof.cloud.CloudAccess`), the disks behind the driver's PVs and the
    nodes' instances."""
    from kubernetes import client

    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)
    if namespace:
        pods = _items(core.list_namespaced_pod, namespace)
        pvcs = _items(core.list_namespaced_persistent_volume_claim, namespace)
    else:
        pods = _items(core.list_pod_for_all_namespaces)
        pvcs = _items(core.list_persistent_volume_claim_for_all_namespaces)
    pvs = {pv["metadata"]["name"]: pv for pv in _items(core.list_persistent_volume)}
    classes = {sc["metadata"]["name"]: sc["provisioner"] for sc in _items(storage.list_storage_class)}
    nodes = {n["metadata"]["name"]: n for n in _items(core.list_node)}
    disk_ids = [pv["spec"]["csi"]["volumeHandle"] for pv in pvs.values()
                if ((pv.get("spec") or {}).get("csi") or {}).get("driver") == driver]
    # A node that names no instance holds no disk; its zone is still judged.
    state = cloud.state(disk_ids, [i for n in nodes.values() if (i := instance_of(n, required=False))])
    return Snapshot(
        pods=pods,
        pvcs={(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in pvcs},
        pvs=pvs,
        nodes=nodes,
        volume_attachments=_items(storage.list_volume_attachment),
        disks={d["DiskId"]: d for d in state["disks"]},
        instance_zones={i["InstanceId"]: i["ZoneId"] for i in state["instances"]},
        storage_classes=classes,
    )
