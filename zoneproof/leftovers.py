"""What a run left behind: namespaces of tests, PersistentVolumes and VolumeAttachments
in the cluster, and what each driver deployment's fake ECS still held as it went (disks,
stopped instances; ``zoneproof.deploy.driver`` records those in ``cloud-leftovers.jsonl``
beside its logs). ``zoneproof e2e`` takes them after its last phase, before it tears the
cluster down, so a clean-up that failed shows even though the cluster goes after it."""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client

from zoneproof.deploy.driver import LEFTOVERS_FILE
from zoneproof.namespaces import TEST_LABEL
from zoneproof.waiting import WaitTimeout, wait_for



def in_cluster(api: client.ApiClient, *, timeout: float = 60) -> dict[str, list[str]]:
    """Test namespaces, PVs and VolumeAttachments still in the cluster. Namespaces are
    deleted without waiting and volumes go after their detach, so what is still going is
    waited for (``timeout``); what is left then is returned."""
    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)

    def remaining() -> tuple[bool, dict[str, list[str]]]:
        found = {
            "namespaces": sorted(n.metadata.name for n in core.list_namespace(label_selector=TEST_LABEL).items),
            "persistent volumes": sorted(pv.metadata.name for pv in core.list_persistent_volume().items),
            "volume attachments": sorted(va.metadata.name for va in storage.list_volume_attachment().items),
        }
        return not any(found.values()), found
    try:
        return wait_for(remaining, what="the run's namespaces and volumes to go", timeout=timeout)
    except WaitTimeout:
        return remaining()[1]


def in_cloud(driver_logs: Path) -> dict[str, list[str]]:
    """Disks and stopped instances each deployment's fake ECS held as it went, and the
    loop devices of its disks it left on the host."""
    found: dict[str, list[str]] = {"disks": [], "stopped instances": [], "loop devices": []}
    for path in sorted(driver_logs.glob(f"*/{LEFTOVERS_FILE}")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            where = f"the {entry['zone_policy']} deployment logged in {path.parent.name}/"
            for key in found:
                found[key] += [f"{item} ({where})" for item in entry.get(key, [])]
    return found


def lines(found: dict[str, list[str]]) -> list[str]:
    return [f"  {kind}: {', '.join(items)}" for kind, items in found.items() if items]
