"""Probes: the placement oracle asked about the experiment's workload.

``placement_settled`` is the steady-state probe and the recovery probe in one: every pod
of the StatefulSet Running in its disk's zone with its disks attached to its node only,
or, while a zone is lost, the pods whose disks are there waiting Pending with the volume
zone conflict and their disks attached nowhere. It waits up to ``timeout`` and returns
when it settled; the suites time recovery from the action before it to that moment.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from chaoslib.exceptions import ActivityFailed
from kubernetes import client

from zoneproof import manifests, workloads
from zoneproof.oracle import picture, settled
from zoneproof.report.attachments import record_verdict
from zoneproof.waiting import WaitTimeout, hold_for, wait_for
from zoneproof.watcher import History, transient_violations
from zoneproof_chaos.context import log, namespace, target


__all__ = ["placement_settled", "placement_holds", "no_disk_lost_or_leaked", "cloud_calls_refused",
           "no_cross_zone_attach_attempt"]

def _replicas(t, ns: str) -> int:
    return client.AppsV1Api(t.api).read_namespaced_stateful_set(manifests.STATEFULSET, ns).spec.replicas


class Settling(NamedTuple):
    """What a wait for the workload reports (the state line) and keeps (the verdict)."""

    state: str
    verdict: object  # zoneproof.oracle.Verdict

    def __str__(self) -> str:  # progress lines and time-outs show the state, not the verdict's repr
        return self.state


def placement_settled(timeout: float = 60, lost_zone: str = "", hold: float = 0, avoid_node: str = "",
                      configuration: dict = None) -> dict:
    """Wait until the workload has settled (see the module), with no pod on ``avoid_node``
    (a drained or lost node); then, with ``hold``, check that it stays so for that many
    seconds (a waiting pod must not start or attach elsewhere). Raises ActivityFailed with
    the oracle's table when it does not settle in time."""
    t, ns = target(configuration), namespace(configuration)
    started = time.monotonic()

    def check():
        verdict = t.verdict(ns)
        done, state = settled(verdict, _replicas(t, ns), lost_zone=lost_zone)
        on_avoided = [p.pod for p in verdict.pods if avoid_node and p.node == avoid_node]
        if on_avoided:
            done, state = False, f"{', '.join(on_avoided)} still on {avoid_node}; {state}"
        return done, Settling(state, verdict)

    what = "every pod Running in its disk's zone" + (f", those of {lost_zone} waiting Pending" if lost_zone else "")
    try:
        state, verdict = wait_for(check, what=what, timeout=float(timeout), interval=0.25)
        waited, settled_at = time.monotonic() - started, time.time()
        if hold:
            state, verdict = hold_for(check, what=what, duration=float(hold))
    except (WaitTimeout, AssertionError) as err:
        verdict = t.verdict(ns)
        record_verdict(verdict)
        raise ActivityFailed(f"{err}\n{verdict.table()}\n\n{picture(verdict, list(t.provider.spec.zones))}") from None
    record_verdict(verdict)
    log.info("%s after %.1fs: %s\n%s", what, waited, state, picture(verdict, list(t.provider.spec.zones)))
    return {"settled_after_s": round(waited, 2), "settled_at": settled_at, "pods": len(verdict.pods),
            "waiting": sorted(p.pod for p in verdict.pods if p.state == "waiting"),
            "violations": verdict.violations}


def placement_holds(timeout: float = 60, configuration: dict = None) -> bool:
    """Steady-state form of :func:`placement_settled`: true or false, for a tolerance."""
    try:
        placement_settled(timeout=timeout, configuration=configuration)
    except ActivityFailed as err:
        log.error("steady state does not hold: %s", err)
        return False
    return True


def _claimed_disks(t, ns: str) -> dict[str, str]:
    """Disk id -> claim, for every bound claim of the namespace."""
    core = client.CoreV1Api(t.api)
    return {core.read_persistent_volume(pvc.spec.volume_name).spec.csi.volume_handle: pvc.metadata.name
            for pvc in core.list_namespaced_persistent_volume_claim(ns).items if pvc.spec.volume_name}


def _audit_since_placed(t, configuration: dict | None) -> list[dict]:
    """The fake ECS audit log since the workload control saw the workload placed."""
    return t.ecs.audit(after=int((configuration or {}).get("audit_after") or 0))


def no_disk_lost_or_leaked(configuration: dict = None) -> dict:
    """Every claim of the workload is bound to a PV whose disk exists in ECS, and every disk
    the driver provisioned for the namespace is behind one of those PVs: a retried or
    rescheduled provisioning left nothing behind."""
    t, ns = target(configuration), namespace(configuration)
    handles = _claimed_disks(t, ns)
    disks = {d["DiskId"] for d in t.cloud.describe_disks(list(handles))}
    lost = sorted(f"{disk} (claim {claim})" for disk, claim in handles.items() if disk not in disks)
    leaked = sorted(d["DiskId"] for d in workloads.disks_created_for(t.cloud, ns) if d["DiskId"] not in handles)
    if lost or leaked:
        raise ActivityFailed(f"disks lost: {', '.join(lost) or 'none'}; disks leaked (provisioned for {ns}, "
                             f"behind no claim): {', '.join(leaked) or 'none'}")
    return {"disks": len(handles)}


def cloud_calls_refused(action: str, code: str, zone: str = "", minimum: int = 1, timeout: float = 0,
                        configuration: dict = None) -> int:
    """How many ``action`` calls the fake ECS refused with ``code`` since the workload was
    placed (in ``zone`` if given); fails under ``minimum``, so an experiment proves its
    fault was actually met rather than passing because nothing touched it. With
    ``timeout``, waits that long on the audit log for the ``minimum`` to be reached (the
    fault is met as soon as the driver's calls reach it; no fixed pause has to guess when)."""
    t = target(configuration)
    where = f" in {zone}" if zone else ""

    def refused():
        entries = [e for e in _audit_since_placed(t, configuration) if e["action"] == action
                   and e["code"] == code and (not zone or e["disk_zone"] == zone)]
        return len(entries) >= int(minimum), len(entries)
    try:
        count = wait_for(refused, what=f"{minimum} {action} call(s) refused with {code}{where}",
                         timeout=float(timeout), interval=0.25) if float(timeout) > 0 else refused()[1]
    except WaitTimeout as err:
        raise ActivityFailed(str(err)) from None
    if count < int(minimum):
        raise ActivityFailed(f"expected at least {minimum} {action} call(s) refused with {code}{where}; "
                             f"the fake ECS refused {count}")
    log.info("%d %s call(s) refused with %s%s", count, action, code, where)
    return count


def no_cross_zone_attach_attempt(configuration: dict = None) -> int:
    """No AttachDisk of the workload's disks reached ECS for an instance in another zone
    since the workload was placed (refused or not, the attempt itself is the bug: the
    end state would hide it). Returns how many AttachDisk calls were checked."""
    t, ns = target(configuration), namespace(configuration)
    disks = set(_claimed_disks(t, ns)) | {d["DiskId"] for d in workloads.disks_created_for(t.cloud, ns)}
    audit = [e for e in _audit_since_placed(t, configuration) if e["action"] == "AttachDisk"]
    found = transient_violations(History(audit=audit), {}, disks=disks)
    if found:
        raise ActivityFailed("\n".join(found))
    return sum(1 for e in audit if e["disk_id"] in disks)
