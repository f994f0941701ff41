"""What stands in the way of a wait, read from a test's watch history: the pods not
running and the scheduler's or kubelet's last word on them, the claims not bound and the
provisioner's last refusal (with the driver's gRPC code in its message), and the attach or
detach errors of the namespace's VolumeAttachments (or their detach under way).

A wait that times out says this instead of only "last seen: web-0@-:Pending", so a failure
names its cause for the driver team reading it. Pure over the recorded changes (plain
dicts), so it is tested without a cluster."""

from __future__ import annotations

from typing import Iterable, Protocol

from zoneproof.oracle import SELECTED_NODE

MESSAGE_LENGTH = 300  # an event's message is cut here: a scheduler's lists every node


class RecordedChange(Protocol):  # zoneproof.watcher.Change
    at: float
    kind: str
    type: str
    obj: dict


def _short(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MESSAGE_LENGTH else text[:MESSAGE_LENGTH - 1] + "…"


def _latest(changes: Iterable[RecordedChange]) -> dict[tuple[str, str], dict]:
    """The last version of each object (kind, name) that still exists."""
    latest: dict[tuple[str, str], dict] = {}
    for change in sorted(changes, key=lambda c: c.at):
        key = (change.kind, change.obj["metadata"]["name"])
        if change.type == "DELETED":
            latest.pop(key, None)
        else:
            latest[key] = change.obj
    return latest


def _last_warnings(objects: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict]:
    """The last Warning event of each involved object (kind, name), in the order seen."""
    found: dict[tuple[str, str], dict] = {}
    for (kind, _), event in objects.items():
        if kind == "Event" and event.get("type") == "Warning":
            involved = event.get("involvedObject") or {}
            found[(involved.get("kind", ""), involved.get("name", ""))] = event
    return found


def _said(event: dict | None) -> str:
    return f"{event.get('reason')}: {_short(event.get('message', ''))}" if event else "no warning event"


def obstacles(changes: Iterable[RecordedChange], namespace: str) -> list[str]:
    """One line per thing in the way, in a stable order: pods, then claims, then attachments."""
    objects = _latest(changes)
    warnings = _last_warnings(objects)
    found = []
    for (kind, name), pod in sorted(objects.items()):
        if kind != "Pod" or (pod["metadata"].get("namespace") or namespace) != namespace:
            continue
        phase = (pod.get("status") or {}).get("phase", "")
        if phase == "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        where = f"on {node}" if node else "unscheduled"
        found.append(f"pod {name} {phase or 'Pending'} {where}: {_said(warnings.get(('Pod', name)))}")
    claimed_pvs: dict[str, str] = {}  # PV -> claim of this namespace
    for (kind, name), obj in objects.items():
        ref = (obj.get("spec") or {}).get("claimRef") or {}
        if kind == "PersistentVolume" and ref.get("namespace") == namespace:
            claimed_pvs[name] = ref.get("name", "")
    for (kind, name), pvc in sorted(objects.items()):
        if kind == "PersistentVolumeClaim" and (pvc.get("status") or {}).get("phase") != "Bound":
            found.append(f"claim {name} {(pvc.get('status') or {}).get('phase', 'Pending')}: "
                         f"{_said(warnings.get(('PersistentVolumeClaim', name)))}")
    for (kind, name), va in sorted(objects.items()):
        if kind != "VolumeAttachment":
            continue
        spec, status = va.get("spec") or {}, va.get("status") or {}
        pv = (spec.get("source") or {}).get("persistentVolumeName", "")
        if pv not in claimed_pvs:
            continue
        which = f"VolumeAttachment {name} (claim {claimed_pvs[pv]}, node {spec.get('nodeName')})"
        errors = [f"{which} {what.removesuffix('Error')} error: {_short(status[what].get('message', ''))}"
                  for what in ("attachError", "detachError") if status.get(what)]
        if not errors and va["metadata"].get("deletionTimestamp"):
            errors = [f"{which} being detached, no detach error yet (attached: {status.get('attached', False)})"]
        found += errors
    return found


# Refusals the provisioner repeats unchanged: the CSI spec's INVALID_ARGUMENT tells the
# caller to fix its request before retrying, ALREADY_EXISTS that the volume's name is taken
# by a volume the request does not fit (the name is the claim's, so it never changes), and
# csi-provisioner retries the same request (it hands a claim back to the scheduler only on
# RESOURCE_EXHAUSTED, or when its selected node is gone).
FINAL_REFUSALS = ("code = InvalidArgument", "code = AlreadyExists")


def allowed_zones(storage_class: dict, zones: Iterable[str], zone_keys: Iterable[str],
                  zone_parameters: Iterable[str]) -> set[str]:
    """The zones of ``zones`` a StorageClass lets its claims be provisioned in: those its
    allowedTopologies name under a zone key (any term) and its zone-list parameters list."""
    allowed, keys = set(zones), set(zone_keys)
    terms = [[set(e.get("values") or []) for e in term.get("matchLabelExpressions") or [] if e.get("key") in keys]
             for term in storage_class.get("allowedTopologies") or []]
    if terms:  # any term may be met; within one, every zone expression (a term naming none allows any zone)
        allowed &= set.union(*(set.intersection(*named) if named else set(allowed) for named in terms))
    parameters = storage_class.get("parameters") or {}
    for name in zone_parameters:
        if parameters.get(name):
            allowed &= {z.strip() for z in parameters[name].split(",")}
    return allowed


def final_refusals(changes: Iterable[RecordedChange], namespace: str) -> dict[str, tuple[dict, dict]]:
    """Claims of the namespace not bound whose provisioner's last word is a refusal it will
    repeat unchanged: claim -> (its last version, that ProvisioningFailed event)."""
    objects = _latest(changes)
    warnings = _last_warnings(objects)
    found = {}
    for (kind, name), pvc in sorted(objects.items()):
        if kind != "PersistentVolumeClaim" or (pvc.get("status") or {}).get("phase") == "Bound":
            continue
        if (pvc["metadata"].get("namespace") or namespace) != namespace:
            continue
        event = warnings.get(("PersistentVolumeClaim", name))
        if event and event.get("reason") == "ProvisioningFailed" and any(
                code in event.get("message", "") for code in FINAL_REFUSALS):
            found[name] = (pvc, event)
    return found


def lasting_refusals(refused: dict[str, tuple[dict, dict]], storage_classes: dict[str, dict],
                     node_zones: dict[str, str], zone_keys: Iterable[str], zone_parameters: Iterable[str],
                     provisioner: str) -> list[str]:
    """Of the ``refused`` claims (:func:`final_refusals`), those of ``provisioner`` whose
    StorageClass allows a zone of the cluster where the claim may go (its selected node's,
    for a claim waiting for its first consumer): a violation that cannot heal.
    ``node_zones``: node -> zone, as the cluster has them now."""
    found = []
    for name, (pvc, event) in sorted(refused.items()):
        storage_class = storage_classes.get((pvc.get("spec") or {}).get("storageClassName") or "")
        if storage_class is None or storage_class.get("provisioner") != provisioner:
            continue
        allowed = allowed_zones(storage_class, set(node_zones.values()) - {""}, zone_keys, zone_parameters)
        selected = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE) or ""
        if selected:
            if node_zones.get(selected) not in allowed:
                continue  # a node gone, or in a zone its class leaves out: the refusal is due
            asked = f"for node {selected} in {node_zones[selected]}, a zone its class allows"
        elif allowed:
            asked = f"although its class allows {', '.join(sorted(allowed))}"
        else:
            continue
        found.append(f"claim {name} of StorageClass {storage_class['metadata']['name']} is refused {asked}, and "
                     f"csi-provisioner repeats the request unchanged: {_said(event)}")
    return found
