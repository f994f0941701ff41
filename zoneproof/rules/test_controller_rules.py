"""The controller's zonal rules. Each test names the rule of the CSI spec (v1) it checks,
calls the controller as the sidecars would, and looks in ECS for what the call did."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from zoneproof.csi.proto import load
from zoneproof.rules.calls import create, delete, made_in, publish, unpublish, volume_in

csi, _ = load()
NOWHERE = "nowhere-zone-1"  # a zone the cloud does not have
# The codes csi-provisioner takes as "the operation may still be in progress".
IN_PROGRESS = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED")
log = logging.getLogger(__name__)


def zones_named(volume, profile) -> set[str]:
    return {value for topology in volume.accessible_topology for key, value in topology.segments.items()
            if key in profile.zone_keys}


# ---------------------------------------------------------------------------- CreateVolume
@pytest.mark.parametrize("key_index", [0, 1], ids=["driver-key", "well-known-key"])
def test_create_volume_takes_the_first_preferred_zone_of_the_requisite(target, volumes, key_index):
    """CSI CreateVolume, accessibility_requirements: the volume MUST be accessible from at
    least one requisite topology, and the plugin SHOULD try the preferred topologies in
    order, the first one first. Asked for every zone, under each zone key it reports."""
    keys = target.profile.zone_keys
    if key_index >= len(keys):
        pytest.skip(f"profile {target.profile.name!r} reports a zone under {keys} only")
    key = keys[key_index]
    for zone in target.zones:
        order = [zone] + [z for z in target.zones if z != zone]
        volume, disk_zone = made_in(target, volumes, requisite=[{key: z} for z in target.zones],
                                    preferred=[{key: z} for z in order])
        assert disk_zone == zone, (f"CSI CreateVolume: the first preferred topology ({key}={zone}) SHOULD be "
                                   f"taken when it can be; the disk is in {disk_zone}")
        assert zones_named(volume, target.profile) == {zone}, (
            f"CSI CreateVolume: accessible_topology must name where the volume is: the disk is in {zone}, the "
            f"volume says {[dict(t.segments) for t in volume.accessible_topology]}")


def test_create_volume_stays_in_a_requisite_of_one_zone_whichever_term_it_is(target, volumes):
    """CSI CreateVolume: the volume MUST be accessible from at least one requisite
    topology. One zone alone in the requisite, no preference: the disk must be there,
    whether that zone is the first term or the last."""
    key = target.profile.zone_keys[0]
    for zone in (target.zones[0], target.zones[-1]):
        volume, disk_zone = made_in(target, volumes, requisite=[{key: zone}])
        assert disk_zone == zone, (f"CSI CreateVolume: the volume MUST be accessible from the requisite "
                                   f"({key}={zone}); the disk is in {disk_zone}")
    others = [z for z in target.zones if z != target.zones[0]]
    volume, disk_zone = made_in(target, volumes, requisite=[{key: z} for z in others], preferred=[{key: others[-1]}])
    assert disk_zone == others[-1], (f"CSI CreateVolume: with requisite {others} and {others[-1]} preferred, the "
                                     f"disk is in {disk_zone}: a driver that reads only the first term")


def test_create_volume_for_a_requisite_it_cannot_serve_fails_and_makes_no_disk(target, volumes):
    """CSI CreateVolume: if the plugin cannot make the volume accessible from a requisite
    topology it MUST fail (RESOURCE_EXHAUSTED where it has no room there; no zone is no
    room), and no disk may be left anywhere."""
    key = target.profile.zone_keys[0]
    before = {d["DiskId"] for d in target.created_disks()}
    with pytest.raises(grpc.RpcError) as refused:
        volume = create(target, requisite=[{key: NOWHERE}])
        volumes.append(volume.volume_id)
    made = [d for d in target.created_disks() if d["DiskId"] not in before]
    volumes.extend(d["DiskId"] for d in made)
    assert not made, (f"CSI CreateVolume: a volume for requisite {key}={NOWHERE}, a zone the cloud does not have, "
                      f"must not be made; disks were: {made} (the call answered {refused.value.code().name})")


def zone_list_parameters(target, zones: list[str]) -> dict[str, str]:
    """The parameters of the profile's class with a zone list (the article's ``zoneId``),
    listing ``zones``; skips where the profile has no such class."""
    scheme = target.profile.storage_classes.get("dynamic-zoneid")
    if scheme is None or not any("{zones}" in v for v in scheme.parameters.values()):
        pytest.skip(f"profile {target.profile.name!r} has no StorageClass listing zones (scheme dynamic-zoneid)")
    return {k: v.replace("{zones}", ",".join(zones)) for k, v in scheme.parameters.items()}


def test_a_zone_list_parameter_never_overrides_the_requisite(target, volumes):
    """CSI CreateVolume: the volume MUST be accessible from a requisite topology, whatever
    the parameters say. A zone list naming every zone and a requisite of one: the disk is
    there. A zone list that leaves the requisite's zone out: no disk may be made (an
    error, or RESOURCE_EXHAUSTED), never one in a listed zone."""
    key = target.profile.zone_keys[0]
    zone = target.zones[-1]
    _, disk_zone = made_in(target, volumes, requisite=[{key: zone}],
                           parameters=zone_list_parameters(target, list(target.zones)))
    assert disk_zone == zone, (f"CSI CreateVolume: requisite {key}={zone} with a zone list of every zone: the disk "
                               f"is in {disk_zone}")
    others = [z for z in target.zones if z != zone]
    before = {d["DiskId"] for d in target.created_disks()}
    try:
        volumes.append(create(target, requisite=[{key: zone}],
                              parameters=zone_list_parameters(target, others)).volume_id)
    except grpc.RpcError:
        pass  # refused: what the rule allows
    made = [d for d in target.created_disks() if d["DiskId"] not in before]
    volumes.extend(d["DiskId"] for d in made if d["DiskId"] not in volumes)
    assert not made, (f"CSI CreateVolume: requisite {key}={zone}, zone list {others}: the volume cannot be accessible "
                      f"from the requisite, so none may be made; disks were: {made}")


def test_a_zone_list_taken_in_turn_stays_even_when_volumes_are_created_at_once(target, volumes):
    """CSI: the CO may call CreateVolume for different volumes at the same time (a
    StatefulSet with Parallel pod management does). Under the round-robin zone policy the
    profile offers (the article's: a zone list is taken in turn, topology aside), volumes
    created at once must still take the listed zones in turn, each zone as often."""
    if "round-robin" not in target.profile.zone_policies:
        pytest.skip(f"profile {target.profile.name!r} offers zone policies {list(target.profile.zone_policies)}, "
                    "not round-robin")
    parameters = zone_list_parameters(target, list(target.zones))
    controller = target.controller_for("round-robin")
    key = target.profile.zone_keys[0]
    per_zone = 2
    before = {d["DiskId"] for d in target.created_disks()}
    # A region answering in half a second, as a loaded one does, makes the calls overlap in
    # a driver that looks the zones up, or makes the disk, between reading its turn and
    # moving it on (a real cloud needs no help).
    slow = [target.ecs.faults.add({"kind": "latency", "action": action, "seconds": 0.5})
            for action in ("DescribeZones", "CreateDisk")]
    try:
        with ThreadPoolExecutor(per_zone * len(target.zones)) as pool:
            made = list(pool.map(lambda _: create(target, requisite=[{key: z} for z in target.zones],
                                                  parameters=parameters, controller=controller).volume_id,
                                 range(per_zone * len(target.zones))))
    finally:
        for fault in slow:
            target.ecs.faults.remove(fault.id)
        volumes.extend(disks_made_since(target, before))
    counts = Counter(target.disk(volume_id)["ZoneId"] for volume_id in made)
    assert counts == {zone: per_zone for zone in target.zones}, (
        f"CSI CreateVolume x{len(made)} at once, round-robin over zone list {','.join(target.zones)}: expected "
        f"{per_zone} disks in each zone, got {dict(counts)}: the turn is not kept under concurrent calls")


def test_a_create_retried_after_throttling_stays_in_the_requisite(target, volumes):
    """CSI CreateVolume: a retry is the same call. ECS answers the first CreateDisk
    Throttling; the disk the retry makes MUST still be in the requisite zone."""
    key = target.profile.zone_keys[0]
    zone = target.zones[-1]
    fault = target.ecs.faults.add({"kind": "fail_next", "action": "CreateDisk", "count": 1, "code": "Throttling"})
    name = f"pvc-rules-{uuid.uuid4().hex[:12]}"
    try:
        for _ in range(5):  # as the provisioner retries a failed call
            try:
                volume = create(target, requisite=[{key: zone}], name=name)
                break
            except grpc.RpcError:
                continue
        else:
            raise AssertionError("CreateVolume failed five times after a single Throttling answer")
    finally:
        target.ecs.faults.remove(fault.id)
    volumes.append(volume.volume_id)
    throttled = [e for e in target.ecs.store.audit() if e["action"] == "CreateDisk" and e["code"] == "Throttling"]
    assert throttled, "no CreateDisk was answered Throttling, so no retry was tested"
    assert target.disk(volume.volume_id)["ZoneId"] == zone, (
        f"CSI CreateVolume retried after Throttling: the disk MUST be in the requisite {zone}, it is in "
        f"{target.disk(volume.volume_id)['ZoneId']}")


def disks_made_since(target, before: set[str]) -> list[str]:
    """Disks ECS made since ``before`` (ids), each once: a CreateDisk its client token
    answered again is the same disk."""
    return list(dict.fromkeys(d["DiskId"] for d in target.created_disks() if d["DiskId"] not in before))


def test_create_volume_again_with_the_same_name_returns_the_same_volume(target, volumes):
    """CSI CreateVolume is idempotent: a second call with the name and parameters of a
    volume that exists MUST answer that volume, and make no other."""
    key = target.profile.zone_keys[0]
    requisite = [{key: target.zones[0]}]
    name = f"pvc-rules-{uuid.uuid4().hex[:12]}"
    before = {d["DiskId"] for d in target.created_disks()}
    first, _ = made_in(target, volumes, requisite=requisite, name=name)
    again = create(target, requisite=requisite, name=name)
    made = disks_made_since(target, before)
    volumes.extend(d for d in made if d not in volumes)
    assert again.volume_id == first.volume_id and made == [first.volume_id], (
        f"CSI CreateVolume called twice with name {name}: MUST answer the same volume; it answered "
        f"{first.volume_id} then {again.volume_id}, and ECS made {made}")


def test_create_volume_again_with_the_same_name_for_another_zone_is_already_exists(target, volumes):
    """CSI CreateVolume: a volume of the name that exists but is not accessible from the
    new accessibility requirements is incompatible: the plugin MUST answer ALREADY_EXISTS,
    and neither hand back the volume of the other zone (its pod could never use it) nor
    make a second one. A claim retried for a node of another zone asks this."""
    key = target.profile.zone_keys[0]
    name = f"pvc-rules-{uuid.uuid4().hex[:12]}"
    before = {d["DiskId"] for d in target.created_disks()}
    first, zone = made_in(target, volumes, requisite=[{key: target.zones[0]}], name=name)
    other = target.zones[-1]
    try:
        again = create(target, requisite=[{key: other}], name=name)
        answer = f"OK with {again.volume_id}"
    except grpc.RpcError as err:
        answer = err.code().name
    made = disks_made_since(target, before)
    volumes.extend(d for d in made if d not in volumes)
    assert answer == "ALREADY_EXISTS" and made == [first.volume_id], (
        f"CSI CreateVolume {name} again, for {key}={other} while its volume {first.volume_id} is in {zone}: MUST "
        f"answer ALREADY_EXISTS and make nothing; it answered {answer}, and ECS made {made}")


def created_after_a_lost_answer(target, volumes) -> tuple[object, list[str], list[str]]:
    """CreateVolume retried, as the provisioner retries a failed call, after ECS carried out
    its first CreateDisk and the answer was lost: the volume, the failed calls' codes, and
    the disks ECS made."""
    key = target.profile.zone_keys[0]
    requisite = [{key: target.zones[-1]}]
    name = f"pvc-rules-{uuid.uuid4().hex[:12]}"
    before = {d["DiskId"] for d in target.created_disks()}
    fault = target.ecs.faults.add({"kind": "lose_answer", "action": "CreateDisk", "count": 1})
    answers = []
    try:
        for _ in range(5):
            try:
                volume = create(target, requisite=requisite, name=name)
                break
            except grpc.RpcError as err:
                answers.append(err.code().name)
        else:
            raise AssertionError(f"CreateVolume {name} failed five times ({', '.join(answers)}) after one lost answer")
        lost = all(f["id"] != fault.id for f in target.ecs.faults.list())
    finally:
        target.ecs.faults.remove(fault.id)
    made = disks_made_since(target, before)
    volumes.extend(d for d in made if d not in volumes)
    assert lost, "no CreateDisk was called, so no answer was lost and no retry was tested"
    return volume, answers, made


def test_a_create_whose_answer_was_lost_makes_one_disk(target, volumes):
    """CSI CreateVolume is idempotent, so the CO retries a call that got no answer with the
    same name. ECS carries out the first CreateDisk and its answer is lost: the retries
    MUST end with the disk that call made (ECS's client token, or a look-up by name), not
    with a second one and the first leaked."""
    volume, answers, made = created_after_a_lost_answer(target, volumes)
    assert made == [volume.volume_id], (
        f"CSI CreateVolume, retried after ECS's answer to its CreateDisk was lost (answers: "
        f"{', '.join(answers) or 'none, the driver retried itself'}): MUST end with the one disk; ECS made {made}, "
        f"the volume is {volume.volume_id}")


def test_a_create_whose_answer_was_lost_fails_as_still_in_progress(target, volumes):
    """A CreateVolume that cannot tell whether its disk was made MUST NOT answer a final
    error: csi-provisioner takes only UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and CANCELLED
    as "may still be in progress" and then keeps a WaitForFirstConsumer claim's selected
    node; on any other code it may hand the claim to another node, maybe of another zone,
    while the disk made for it sits in the first one."""
    volume, answers, _ = created_after_a_lost_answer(target, volumes)
    final = [a for a in answers if a not in IN_PROGRESS]
    assert not final, (f"CSI CreateVolume {volume.volume_id}: ECS's answer to its CreateDisk was lost, and the "
                       f"driver answered {', '.join(answers)}: {', '.join(sorted(set(final)))} tells the CO the call "
                       f"is over, while the disk may exist; expected one of {', '.join(IN_PROGRESS)}")
    if not answers:
        log.info("the driver retried the lost call itself and answered with volume %s", volume.volume_id)


def test_no_capacity_in_the_requisite_is_resource_exhausted(target, volumes):
    """CSI CreateVolume: when the volume cannot be made in the requisite topology for want
    of capacity the plugin MUST answer RESOURCE_EXHAUSTED: on it csi-provisioner hands a
    WaitForFirstConsumer claim back to the scheduler, on any other code it retries the
    same node for ever."""
    key = target.profile.zone_keys[0]
    zone = target.zones[0]
    fault = target.ecs.faults.add({"kind": "no_stock", "zone": zone})
    try:
        with pytest.raises(grpc.RpcError) as refused:
            volumes.append(create(target, requisite=[{key: zone}]).volume_id)
    finally:
        target.ecs.faults.remove(fault.id)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (
        f"CSI CreateVolume with no stock in the requisite {zone}: MUST be RESOURCE_EXHAUSTED, was "
        f"{refused.value.code().name}: {refused.value.details()[:300]}")


# ---------------------------------------------------------------------------- publish
def test_publish_to_an_instance_of_another_zone_fails_and_attaches_nothing(target, volumes):
    """CSI ControllerPublishVolume: a volume is published only to a node it is accessible
    from; a cloud disk attaches only in its own zone. The call MUST fail and leave the
    disk unattached."""
    home, away = target.zones[0], target.zones[1]
    volume = volume_in(target, volumes, home)
    with pytest.raises(grpc.RpcError) as refused:
        publish(target, volume.volume_id, target.instances[away][0])
    assert target.holders(volume.volume_id) == [], (
        f"CSI ControllerPublishVolume to a node of {away} for a volume of {home}: nothing may be attached "
        f"(the call answered {refused.value.code().name})")


def test_a_single_node_volume_published_elsewhere_is_failed_precondition_and_stays(target, volumes):
    """CSI ControllerPublishVolume: a volume published to one node with a single-node
    access mode, asked for another, MUST answer FAILED_PRECONDITION; the node holding it
    keeps it (no detaching it from under its pod)."""
    zone = target.zones[0]
    holder, other = target.instances[zone]
    volume = volume_in(target, volumes, zone)
    publish(target, volume.volume_id, holder)
    rule = (f"CSI ControllerPublishVolume of a SINGLE_NODE_WRITER volume published to {holder}, asked for {other}: "
            "MUST be FAILED_PRECONDITION")
    try:
        publish(target, volume.volume_id, other)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, f"{rule}, was {err.code().name}: {err.details()}"
    else:
        raise AssertionError(f"{rule}; it answered success, and the disk is attached to "
                             f"{target.holders(volume.volume_id) or 'nothing'}")
    assert target.holders(volume.volume_id) == [holder], (
        f"CSI ControllerPublishVolume: the volume's holder {holder} must keep it; it is attached to "
        f"{target.holders(volume.volume_id)}")


def test_publish_fails_when_the_cloud_fails_the_attach(target, volumes):
    """CSI ControllerPublishVolume: success means the volume is available on the node. When
    the cloud fails the attach the call MUST NOT succeed."""
    zone = target.zones[0]
    volume = volume_in(target, volumes, zone)
    fault = target.ecs.faults.add({"kind": "fail_next", "action": "AttachDisk", "count": 1000,
                                   "code": "InternalError"})
    try:
        publish(target, volume.volume_id, target.instances[zone][0])
    except grpc.RpcError:
        pass  # what the rule asks
    else:
        raise AssertionError("CSI ControllerPublishVolume answered success, but every AttachDisk failed and "
                             f"{volume.volume_id} is attached to {target.holders(volume.volume_id) or 'nothing'}")
    finally:
        target.ecs.faults.remove(fault.id)
    assert target.holders(volume.volume_id) == []


def test_the_publish_context_names_the_disks_serial_or_device(target, volumes):
    """CSI ControllerPublishVolume: publish_context is what the node needs to find the
    volume; what it says of the disk (its serial number, its device) MUST be that disk's."""
    zone = target.zones[0]
    node = target.instances[zone][0]
    volume = volume_in(target, volumes, zone)
    context = dict(publish(target, volume.volume_id, node).publish_context)
    disk = target.disk(volume.volume_id)
    device = next(a["Device"] for a in disk["Attachments"]["Attachment"] if a["InstanceId"] == node)
    named = {k: v for k, v in context.items() if k in ("serialNumber", "devicePath")}
    assert named, f"CSI ControllerPublishVolume: the publish context names neither serial nor device: {context}"
    assert named == {k: v for k, v in (("serialNumber", disk["SerialNumber"]), ("devicePath", device))
                     if k in named}, (f"CSI ControllerPublishVolume: the publish context {named} is not the disk's "
                                      f"(serial {disk['SerialNumber']}, device {device})")


# ---------------------------------------------------------------------------- unpublish
def test_unpublish_from_a_stopped_instance_detaches(target, volumes):
    """CSI ControllerUnpublishVolume: once it succeeds the volume is no longer on the node.
    The node's instance is stopped (its power cut): the call MUST succeed and the disk
    be free, and again when repeated (the call is idempotent)."""
    zone = target.zones[0]
    node = target.instances[zone][1]
    volume = volume_in(target, volumes, zone)
    publish(target, volume.volume_id, node)
    target.cloud.call("StopInstances", RegionId=target.region, InstanceId=[node], ForceStop=True)
    try:
        for attempt in ("", " again"):
            unpublish(target, volume.volume_id, node)
            assert target.holders(volume.volume_id) == [], (
                f"CSI ControllerUnpublishVolume{attempt} from stopped {node} succeeded, but the disk is attached to "
                f"{target.holders(volume.volume_id)}")
    finally:
        target.cloud.call("StartInstances", RegionId=target.region, InstanceId=[node])


def published_then_released(target, volumes):
    """A volume published to an instance made for the rule, then that instance released as
    ECS releases one (what the driver asked at attach decides whether its disk goes too)."""
    zone = target.zones[-1]
    node = f"i-rulesgone{uuid.uuid4().hex[:6]}"
    with target.ecs.store.transaction() as db:
        target.ecs.backend.register_instance(db, node, zone)
    volume = volume_in(target, volumes, zone, key=target.profile.zone_keys[-1])
    publish(target, volume.volume_id, node)
    with target.ecs.store.transaction() as db:
        target.ecs.backend.release_instance(db, node)
    return volume, node


def test_a_published_volume_outlives_its_released_instance(target, volumes):
    """CSI: a volume exists from CreateVolume to DeleteVolume; ControllerPublishVolume makes
    it available on a node and nothing more. A node's instance released (a node scaled
    down, a machine replaced) must not take the volume with it: its pod's data is there."""
    volume, node = published_then_released(target, volumes)
    disk = target.cloud.describe_disk(volume.volume_id)
    assert disk is not None, (f"CSI ControllerPublishVolume must not tie volume {volume.volume_id} to node {node}: "
                              f"releasing the node's instance released the disk too (attached with "
                              f"DeleteWithInstance?)")
    assert disk["Status"] == "Available", f"disk {volume.volume_id} is {disk['Status']} after its instance went"


def test_unpublish_from_a_released_instance_succeeds(target, volumes):
    """CSI ControllerUnpublishVolume: a node that is gone holds nothing; the call MUST
    succeed (a driver that fails for ever here blocks the volume's next attach), again
    when repeated. The instance is released as ECS releases one: its data disks detached."""
    volume, node = published_then_released(target, volumes)
    for attempt in ("", " again"):
        try:
            unpublish(target, volume.volume_id, node)
        except grpc.RpcError as err:
            raise AssertionError(f"CSI ControllerUnpublishVolume{attempt} from released instance {node} MUST "
                                 f"succeed: it answered {err.code().name}: {err.details()}") from None
    assert target.holders(volume.volume_id) == []


# ---------------------------------------------------------------------------- delete
def test_delete_of_a_volume_still_attached_does_what_the_profile_states(target, volumes):
    """CSI DeleteVolume of a volume still published: the spec leaves it to the plugin
    (FAILED_PRECONDITION, or detaching first), which must say; the profile states it
    (``delete_attached_volume``). Refused, the disk MUST stay, attached where it was."""
    zone = target.zones[0]
    node = target.instances[zone][0]
    volume = volume_in(target, volumes, zone)
    publish(target, volume.volume_id, node)
    stated = target.profile.delete_attached_volume
    if stated == "refused":
        with pytest.raises(grpc.RpcError) as refused:
            delete(target, volume.volume_id)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (
            f"CSI DeleteVolume of a volume published to {node}: profile {target.profile.name!r} states it is refused "
            f"(FAILED_PRECONDITION); it answered {refused.value.code().name}")
        assert target.holders(volume.volume_id) == [node], "a refused DeleteVolume must leave the disk where it was"
    else:
        delete(target, volume.volume_id)
        assert target.cloud.describe_disk(volume.volume_id) is None, (
            f"CSI DeleteVolume: profile {target.profile.name!r} states an attached volume is detached and deleted; "
            f"the disk is still there")


def test_delete_of_a_free_volume_deletes_its_disk(target, volumes):
    """CSI DeleteVolume: once it succeeds the volume no longer exists; asked again it
    succeeds (the call is idempotent)."""
    volume = volume_in(target, volumes, target.zones[0])
    for attempt in ("", " again"):
        delete(target, volume.volume_id)
        assert target.cloud.describe_disk(volume.volume_id) is None, (
            f"CSI DeleteVolume{attempt} succeeded, but disk {volume.volume_id} is still in ECS")
