"""csi-sanity (kubernetes-csi/csi-test) against the reference driver, topology enabled,
on a fake ECS. Skipped groups are capabilities the driver does not advertise; they are
printed with csi-sanity's reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from zoneproof.ecsapi import EcsApi, EcsSettings
from zoneproof.csi.sanity import run_sanity
from zoneproof.csi.server import build_server
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

# csi-sanity is a Go tool of the toolchain, built on first use.
pytestmark = pytest.mark.toolchain
log = logging.getLogger(__name__)
REPORT = Path(__file__).resolve().parent.parent / "reports" / "csi-sanity.txt"
REGION = "cn-beijing"
NODE_ZONE = "cn-beijing-b"


@pytest.fixture
def driver_endpoint(tmp_path):
    config = EcsConfig(region=REGION, zones={"cn-beijing-a": ("cloud_ssd",), NODE_ZONE: ("cloud_ssd", "cloud_essd")})
    with EcsServer(config) as ecs:
        with ecs.store.transaction() as db:
            ecs.backend.register_instance(db, "i-sanitynode", NODE_ZONE)
        key_id, secret = next(iter(DEFAULT_CREDENTIALS.items()))
        cloud = EcsApi(EcsSettings(ecs.endpoint, key_id, secret, REGION))
        endpoint = f"unix://{tmp_path}/csi.sock"
        server = build_server(endpoint, cloud, zone_policy="topology", instance_id="i-sanitynode", zone=NODE_ZONE)
        server.start()
        try:
            yield endpoint, ecs
        finally:
            server.stop(0).wait()


def test_csi_sanity_passes(driver_endpoint):
    endpoint, ecs = driver_endpoint
    result = run_sanity(endpoint)
    log.info("%s", result.summary())
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(result.summary() + "\n")
    assert result.returncode == 0 and not result.failed, result.summary() + "\n" + result.output[-4000:]
    assert result.passed >= 40, result.summary()
    # Every volume sanity created landed where the node is, and none is left behind.
    state = ecs.backend.snapshot(ecs.store.db)
    assert state["disks"] == [], [d["DiskId"] for d in state["disks"]]
    creates = [e for e in ecs.store.audit() if e["action"] == "CreateDisk" and e["code"] == "OK"]
    assert creates and {e["disk_zone"] for e in creates} == {NODE_ZONE}
