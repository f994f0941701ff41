"""A catalogue of real placement bugs that zoneproof can switch on, one at a time or
together, where each lives: in the reference driver's controller or node service, in the
fake ECS, in the CSI sidecars' flags or in the cluster's configuration.

Each bug reproduces a class of bug seen in the field (its origin is written beside it)
and names the suite cases that must catch it. ``zoneproof bugs run`` (``make mutants``)
proves that they do; ``zoneproof driver up --bug NAME`` reproduces one by hand.

Bugs reach the processes that carry them as ``--bug`` options; a test session finds the
bugs its deployments must carry in ``ZONEPROOF_BUGS`` (comma-separated), which is how
``zoneproof bugs run`` hands them to the suites.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "ZONEPROOF_BUGS"
# Where a bug lives, and so who must be started with it.
LAYERS = ("controller", "node", "cloud", "sidecar", "cluster")
DRIVER_LAYERS = ("controller", "node")  # only a driver that reads --bug (the reference one) can carry these

# The suite cases that catch bugs, as pytest node ids under suites/ (zoneproof.suites).
WFFC_EACH_ZONE = "test_wait_for_first_consumer.py::test_claims_provision_in_their_consumers_zones[no-zoneId]"
WFFC_ZONEID = "test_wait_for_first_consumer.py::test_claims_provision_in_their_consumers_zones[zoneId-every-zone]"
WFFC_CONFLICT = "test_wait_for_first_consumer.py::test_a_zoneid_without_the_consumers_zone_fails_provisioning"
WFFC_THROTTLED = "test_wait_for_first_consumer.py::test_a_create_retried_after_throttling_stays_in_the_consumers_zone"
WFFC_NO_STOCK = "test_wait_for_first_consumer.py::test_a_claim_without_stock_in_its_zone_is_rescheduled"
DYNAMIC = "test_placement.py::test_pods_follow_their_disks[dynamic-zoneid-topology-2zones-3replicas]"
STATIC_LABELS = ("test_placement_negative.py::test_a_pod_forced_into_another_zone_than_its_pv_waits_with_the_conflict"
                 "[zone-labels]")
ROUND_ROBIN_AT_ONCE = "test_placement.py::test_claims_made_at_once_take_the_zoneid_zones_in_turn"
CLOUD_ZONE = "test_cloud_rules.py::test_a_disk_attaches_only_to_an_instance_of_its_zone"
CLOUD_ONE_HOLDER = "test_cloud_rules.py::test_a_disk_without_multiattach_attaches_to_one_instance"
NODE_DRAIN = "test_chaos.py::test_experiment[node-drain]"
NODE_DELETED = "test_node_lifecycle.py::test_a_deleted_node_lets_its_disks_go_and_its_pods_return_to_their_zones"
SELECTED_NODE_DELETED = ("test_node_lifecycle.py::"
                         "test_a_claim_provisioning_for_a_deleted_node_ends_with_one_disk_where_its_pod_runs")
NODE_MADE_AGAIN = "test_node_lifecycle.py::test_a_node_made_again_in_another_zone_names_only_its_new_zone"
NODE_PLUGIN_RESTART = ("test_node_lifecycle.py::"
                       "test_a_restarted_node_plugin_names_the_same_zone_and_its_pods_keep_their_disks")
ATTACH_LIMITS = "test_attach_limits.py::test_a_full_zone_sends_new_disks_elsewhere_and_keeps_its_followers_waiting"
# Cases of the zonal CSI rules (zoneproof/rules), named from the suites' folder: seconds each.
# A bug a rule catches may name a cluster case too, to show the suites see it where it does harm.
RULES = "../rules/test_controller_rules.py"
RULE_WELL_KNOWN_KEY = (f"{RULES}::test_create_volume_takes_the_first_preferred_zone_of_the_requisite"
                       "[well-known-key]")
RULE_EVERY_ZONE = (f"{RULES}::test_create_volume_takes_the_first_preferred_zone_of_the_requisite"
                   "[driver-key]")
RULE_FIRST_TERM = f"{RULES}::test_create_volume_stays_in_a_requisite_of_one_zone_whichever_term_it_is"
RULE_ONE_HOLDER = f"{RULES}::test_a_single_node_volume_published_elsewhere_is_failed_precondition_and_stays"
RULE_FAILED_ATTACH = f"{RULES}::test_publish_fails_when_the_cloud_fails_the_attach"
RULE_RELEASED = f"{RULES}::test_unpublish_from_a_released_instance_succeeds"
RULE_OUTLIVES = f"{RULES}::test_a_published_volume_outlives_its_released_instance"
RULE_NAME_ELSEWHERE = f"{RULES}::test_create_volume_again_with_the_same_name_for_another_zone_is_already_exists"
RULE_ANSWER_LOST = f"{RULES}::test_a_create_whose_answer_was_lost_makes_one_disk"
RULE_ANSWER_LOST_CODE = f"{RULES}::test_a_create_whose_answer_was_lost_fails_as_still_in_progress"
RULE_ROUND_ROBIN = f"{RULES}::test_a_zone_list_taken_in_turn_stays_even_when_volumes_are_created_at_once"
NODE_RULES = "../rules/test_node_rules.py"
RULE_NODE_ZONE = f"{NODE_RULES}::test_node_get_info_names_its_instances_zone_under_every_zone_key"
RULE_NODE_LIMIT = f"{NODE_RULES}::test_node_get_info_limits_the_node_to_what_its_instance_can_hold"


@dataclass(frozen=True)
class Bug:
    name: str
    layer: str
    effect: str  # what goes wrong, as a user would see it
    origin: str  # the real bug class it reproduces
    caught_by: tuple[str, ...]  # the smallest set of suite cases that must catch it


CATALOGUE: tuple[Bug, ...] = (
    Bug("own-zone", "controller",
        "CreateVolume makes every disk in the controller's own zone, ignoring the accessibility requirements",
        "drivers that fall back to the zone of the instance they run on (the Alibaba disk plugin's last resort, "
        "applied too early)", (WFFC_EACH_ZONE,)),
    Bug("zoneid-overrides-topology", "controller",
        "a zoneId list overrides the topology requirement: a WaitForFirstConsumer pod scheduled in one zone "
        "gets a disk in another",
        "the Alibaba disk plugin before its PR #1405 (the article's era)", (WFFC_ZONEID,)),
    Bug("round-robin-unlocked", "controller",
        "round-robin over zoneId reads its counter before a cloud call and writes it after, unlocked: claims "
        "made at once take the same zone",
        "an unsynchronised zone counter in a round-robin provisioner", (RULE_ROUND_ROBIN, ROUND_ROBIN_AT_ONCE)),
    Bug("no-accessible-topology", "controller",
        "CreateVolume returns no accessible topology, so PVs carry no nodeAffinity",
        "drivers that forget Volume.accessible_topology (PVs schedulable anywhere)", (DYNAMIC,)),
    Bug("topology-foreign-key", "controller",
        "accessible topology under a key the nodes do not carry",
        "a driver and its node plugin disagreeing on the topology key after a key rename",
        (DYNAMIC,)),
    Bug("topology-region-only", "controller",
        "accessible topology names the region key only", "topology segments built from the region alone",
        (DYNAMIC,)),
    Bug("topology-other-zone", "controller",
        "accessible topology names another zone than the disk's",
        "a zone taken from the request instead of the created disk", (DYNAMIC,)),
    Bug("throttling-rezone", "controller",
        "after a Throttling answer CreateVolume retries at once in a zone picked afresh from the region",
        "aws-ebs-csi-driver #2830 (a volume in the wrong zone after a rate-limited retry)", (WFFC_THROTTLED,)),
    Bug("node-info-one-zone", "node",
        "NodeGetInfo reports the first zone of the region under the driver's own zone key for every node",
        "node plugins that read the zone from a default or from the controller's metadata",
        (RULE_NODE_ZONE, WFFC_EACH_ZONE)),
    Bug("node-info-empty-zone", "node",
        "NodeGetInfo reports an empty zone under the driver's own zone key, so the node is labelled with no "
        "zone and no PV of the driver matches it",
        "node plugins that report the zone of a metadata lookup that failed (an empty string, not an error)",
        (RULE_NODE_ZONE, DYNAMIC)),
    Bug("attach-limit-over-reported", "node",
        "NodeGetInfo reports a fixed attach limit above what the node's instance type can hold, so the scheduler "
        "sends a full node another pod whose disk the cloud refuses to attach",
        "attach limits hard-coded per instance family instead of read for the instance (big disk drivers' "
        "trackers)", (RULE_NODE_LIMIT, ATTACH_LIMITS)),
    Bug("node-zone-cached", "node",
        "the node plugin keeps the zone it first reported for a node in a file on the host and reports it again "
        "when the node is made anew as a machine in another zone, so the node names its old zone beside its new one",
        "node plugins that cache instance metadata on the host (a stale zone once a node name is reused)",
        (NODE_MADE_AGAIN,)),
    Bug("node-id-changed-on-restart", "node",
        "the node plugin names its node by the instance id when it first starts and, once restarted, by "
        "<region>.<instance id>, so the disks attached under the old id and every new attach name an instance "
        "ECS does not have",
        "node plugins that read their node id from another source on a restart than on a first start "
        "(the Node's providerID instead of the instance metadata)",
        (NODE_PLUGIN_RESTART,)),
    Bug("cross-zone-attach", "cloud",
        "the cloud attaches a disk to an instance in another zone",
        "a cloud double whose zones are labels only (what zoneproof's premise rules out)", (CLOUD_ZONE,)),
    Bug("multi-attach-without-flag", "cloud",
        "the cloud attaches a disk without MultiAttach to a second instance",
        "a cloud double without single-attach semantics", (CLOUD_ONE_HOLDER,)),
    Bug("provisioner-without-strict-topology", "sidecar",
        "csi-provisioner runs without --strict-topology, so the requisite topology lists every zone and a "
        "zoneId list can move a WaitForFirstConsumer disk away from its consumer",
        "deployments that drop --strict-topology (the Alibaba plugin's manifests set it)", (WFFC_CONFLICT,)),
    Bug("unpublish-keeps-disk-attached", "controller",
        "ControllerUnpublishVolume reports success while the disk stays attached",
        "a detach that returns before the cloud confirms it and drops its error", (NODE_DRAIN,)),
    Bug("delete-keeps-disk", "controller",
        "DeleteVolume reports success but leaves the disk in the cloud",
        "a delete that treats any answer as done, leaking disks", (WFFC_EACH_ZONE,)),
    Bug("scheduler-without-volumezone", "cluster",
        "the scheduler runs without its VolumeZone plugin, so zone-labelled static PVs are ignored",
        "a scheduler profile that disables VolumeZone", (STATIC_LABELS,)),
    Bug("conflicting-zone-fallback", "controller",
        "with a zoneId that excludes the consumer's zone under WaitForFirstConsumer, the disk is made in a "
        "zoneId zone anyway (ConflictingZone is only logged); the claim binds and the pod waits for good",
        "the upstream Alibaba disk plugin today (seen running it)", (WFFC_CONFLICT,)),
    Bug("no-stock-internal", "controller",
        "OperationDenied.NoStock answers gRPC Internal, so a WaitForFirstConsumer claim is never rescheduled "
        "to a zone with stock",
        "the upstream Alibaba disk plugin today (seen running it)", (WFFC_NO_STOCK,)),
    Bug("volume-stealing", "controller",
        "ControllerPublishVolume of a single-node volume held by another node detaches it from that node and "
        "attaches it to the new one, from under the pod using it",
        "force-detach on publish (the upstream Alibaba disk plugin today, seen with `zoneproof rules`)",
        (RULE_ONE_HOLDER,)),
    Bug("unpublish-fails-for-gone-instance", "controller",
        "ControllerUnpublishVolume fails for ever once the node's instance is released, so the volume's "
        "VolumeAttachment is never removed and its next attach waits",
        "detach errors on terminated instances that block the replacement pod (big disk drivers' trackers)",
        (RULE_RELEASED,)),
    Bug("delete-with-instance-on-attach", "controller",
        "ControllerPublishVolume attaches every disk with DeleteWithInstance, so a node whose instance is released "
        "(scaled down, replaced) takes its pods' disks and their data with it",
        "DeleteWithInstance set on attach beyond the categories that live and die with one instance (the upstream "
        "Alibaba disk plugin sets it for its single-instance categories)", (RULE_OUTLIVES, NODE_DELETED)),
    Bug("publish-ignores-attach-failure", "controller",
        "ControllerPublishVolume answers success although the cloud failed the attach",
        "an attach whose error is logged and dropped", (RULE_FAILED_ATTACH,)),
    Bug("first-term-only-topology", "controller",
        "CreateVolume reads only the first requisite term and ignores the preferred ones, so a consumer's zone "
        "that is not listed first gets a disk elsewhere",
        "topology handling that takes requisite[0] (seen upstream in several drivers)", (RULE_FIRST_TERM,)),
    Bug("create-not-idempotent", "controller",
        "CreateVolume neither looks for the disk of the volume's name nor sends ECS a client token, so a call "
        "retried after its answer was lost makes a second disk and the first one leaks",
        "creates without an idempotency token (why EBS and ECS take one; leaked volumes in drivers' trackers)",
        (RULE_ANSWER_LOST, SELECTED_NODE_DELETED)),
    Bug("lost-answer-is-final", "controller",
        "CreateVolume answers INTERNAL when ECS's answer to a call was lost, so csi-provisioner takes the call as "
        "over: once the claim's selected node is gone it hands the claim to the scheduler, which picks a node of "
        "another zone, and the disk the lost call made keeps that claim refused for ever",
        "drivers that answer every cloud error with INTERNAL, where the sidecars take only UNAVAILABLE, "
        "DEADLINE_EXCEEDED, ABORTED and CANCELLED as still in progress (claims stuck on a deleted selected node "
        "in drivers' trackers)", (RULE_ANSWER_LOST_CODE, SELECTED_NODE_DELETED)),
    Bug("well-known-key-ignored", "controller",
        "CreateVolume reads a requisite zone only under the driver's own key, so a StorageClass whose "
        "allowedTopologies name a zone under topology.kubernetes.io/zone gets its disks in the controller's zone",
        "drivers that know one topology key (allowedTopologies under the well-known key are common in "
        "user manifests)", (RULE_WELL_KNOWN_KEY,)),
    Bug("multi-zone-request-refused", "controller",
        "CreateVolume answers INVALID_ARGUMENT when the requisite topology names more than one zone, so a claim "
        "bound at once (its requisite lists every zone of the cluster) is never provisioned",
        "drivers tried only with WaitForFirstConsumer, whose requests name one zone (Immediate binding "
        "with strict topology lists every zone)", (RULE_EVERY_ZONE, DYNAMIC)),
    Bug("name-reuse-ignores-topology", "controller",
        "CreateVolume hands back the disk made for the volume's name even when the request's requisite excludes "
        "its zone, so a claim retried for a node of another zone gets a disk its pod cannot use",
        "idempotency by name that checks size but not accessibility (a retried claim rescheduled to another "
        "zone after its first attempt made a disk)", (RULE_NAME_ELSEWHERE,)),
)
BY_NAME = {bug.name: bug for bug in CATALOGUE}
NAMES = tuple(BY_NAME)


class BugError(ValueError):
    """An unknown bug, or one where it cannot live; the message says which."""


def parse(names) -> tuple[str, ...]:
    """Bug names from options or the environment (comma-separated or repeated), checked
    against the catalogue, in catalogue order, without repeats."""
    wanted = {n.strip() for value in names for n in value.split(",") if n.strip()}
    unknown = sorted(wanted - set(BY_NAME))
    if unknown:
        raise BugError(f"unknown bug(s) {', '.join(unknown)}; `zoneproof bugs list` shows the catalogue: "
                       f"{', '.join(BY_NAME)}")
    return tuple(b.name for b in CATALOGUE if b.name in wanted)


def living_in(names, *layers: str, where: str, hint: str = "") -> tuple[str, ...]:
    """Bug names checked against the catalogue and against the place they are switched on
    in (``where``, holding ``layers``); BugError names what is wrong."""
    chosen = parse(names)
    wrong = [n for n in chosen if BY_NAME[n].layer not in layers]
    if wrong:
        raise BugError(f"bug(s) {', '.join(wrong)} do not live in {where}; it carries only "
                       f"{', '.join(of_layer(NAMES, *layers))}{hint}")
    return chosen


def from_env(environ=None) -> tuple[str, ...]:
    return parse([(os.environ if environ is None else environ).get(ENV, "")])


def of_layer(names, *layers: str) -> tuple[str, ...]:
    return tuple(n for n in names if BY_NAME[n].layer in layers)


def options(names) -> list[str]:
    """``--bug`` options of a process."""
    return [f"--bug={name}" for name in names]
