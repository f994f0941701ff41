"""The fake ECS runs only what a signature covers: the action, its version and its
parameters. A signed request cannot be turned into another action by a header, and a
signed request cannot be replayed, not even after a restart on the same database."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode

import pytest

from tests.test_ecs_auth import CREDENTIALS, rpc_request, v3_request
from zoneproof.ecs.auth import SignedRequest
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.server import EcsServer

REGION, ZONE = "cn-beijing", "cn-beijing-a"


def send(server: EcsServer, req: SignedRequest) -> tuple[int, dict]:
    """Put a signed request on the wire as it is, headers and all."""
    host, port = server.endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        target = req.path + ("?" + urlencode(req.query) if req.query else "")
        conn.request(req.method, target, body=req.body or None, headers=req.headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def start(db=":memory:") -> EcsServer:
    return EcsServer(EcsConfig(region=REGION), db_path=db, credentials=CREDENTIALS).start()


def create_disk(server: EcsServer) -> str:
    status, doc = send(server, rpc_request({"Action": "CreateDisk", "Version": "2014-05-26", "RegionId": REGION,
                                            "ZoneId": ZONE, "DiskCategory": "cloud_essd", "Size": "20"}))
    assert status == 200, doc
    return doc["DiskId"]


def disk_ids(server: EcsServer) -> list[str]:
    with server.store.transaction() as db:
        return [row["disk_id"] for row in db.execute("SELECT disk_id FROM disks")]


@pytest.fixture
def server():
    srv = start()
    yield srv
    srv.stop()


def describe_params(disk_id: str) -> dict:
    return {"Action": "DescribeDisks", "Version": "2014-05-26", "RegionId": REGION,
            "DiskIds": json.dumps([disk_id]), "DiskId": disk_id}


def test_an_rpc_header_naming_another_action_is_refused(server):
    disk_id = create_disk(server)
    req = rpc_request(describe_params(disk_id))
    status, doc = send(server, SignedRequest(**{**req.__dict__, "headers": {**req.headers,
                                                                             "x-acs-action": "DeleteDisk"}}))
    assert (status, doc["Code"]) == (400, "InvalidParameter"), doc
    assert "x-acs-action" in doc["Message"]
    assert disk_ids(server) == [disk_id]
    refused = [e for e in server.store.audit() if e["code"] == "InvalidParameter"]
    assert [e["action"] for e in refused] == ["DeleteDisk"], "the refusal is audited under the claimed action"


def test_an_rpc_header_naming_the_signed_action_is_accepted(server):
    disk_id = create_disk(server)
    req = rpc_request(describe_params(disk_id))
    status, doc = send(server, SignedRequest(**{**req.__dict__, "headers": {**req.headers,
                                                                             "x-acs-action": "DescribeDisks"}}))
    assert status == 200, doc
    assert [d["DiskId"] for d in doc["Disks"]["Disk"]] == [disk_id]


@pytest.mark.parametrize("unsigned", ["x-acs-action", "x-acs-version"])
def test_a_v3_request_must_sign_its_action_and_version(server, unsigned):
    disk_id = create_disk(server)
    req = v3_request({"RegionId": REGION, "DiskId": disk_id}, unsigned=(unsigned,),
                     extra_headers={"x-acs-action": "DeleteDisk"})
    status, doc = send(server, req)
    assert (status, doc["Code"]) == (400, "IncompleteSignature"), doc
    assert unsigned in doc["Message"]
    assert disk_ids(server) == [disk_id]


def test_a_v3_query_action_that_disagrees_with_the_signed_header_is_refused(server):
    disk_id = create_disk(server)
    req = v3_request({"Action": "DeleteDisk", "RegionId": REGION, "DiskId": disk_id},
                     extra_headers={"x-acs-action": "DescribeDisks"})
    status, doc = send(server, req)
    assert (status, doc["Code"]) == (400, "InvalidParameter"), doc
    assert disk_ids(server) == [disk_id]


def test_a_v3_request_runs_its_signed_action(server):
    disk_id = create_disk(server)
    status, doc = send(server, v3_request({"RegionId": REGION, "DiskId": disk_id},
                                          extra_headers={"x-acs-action": "DeleteDisk"}))
    assert status == 200, doc
    assert disk_ids(server) == []


def test_a_signed_create_replayed_after_a_restart_is_refused(tmp_path):
    db = tmp_path / "ecs.sqlite"
    create = rpc_request({"Action": "CreateDisk", "Version": "2014-05-26", "RegionId": REGION, "ZoneId": ZONE,
                          "DiskCategory": "cloud_essd", "Size": "20"})
    first = start(db)
    try:
        status, doc = send(first, create)
        assert status == 200, doc
    finally:
        first.stop()
    second = start(db)
    try:
        status, doc = send(second, create)
        assert (status, doc["Code"]) == (400, "SignatureNonceUsed"), doc
        assert len(disk_ids(second)) == 1
    finally:
        second.stop()


def test_a_body_parameter_repeating_a_query_parameter_is_signed_as_the_sdk_signs_it(server):
    """aliyun-python-sdk-core merges body over query: RegionId in both is signed once."""
    req = rpc_request({"Action": "DescribeDisks", "Version": "2014-05-26", "RegionId": REGION},
                      method="POST", body_params={"RegionId": REGION, "ZoneId": ZONE})
    assert ("RegionId", REGION) in req.query and ("RegionId", REGION) in req.form
    status, doc = send(server, req)
    assert status == 200, doc
