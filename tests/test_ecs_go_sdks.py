"""The fake ECS driven by Alibaba Cloud's official Go SDKs: the v1 SDK
(alibaba-cloud-sdk-go, RPC signature) and the V3 client (ecs-20140526 on
darabonba-openapi/v2), through the pinned ``ecs-clients`` tool (tools/ecs-clients). The
Go client the real disk plugin uses must see the same codes and shapes as the Python ones.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from zoneproof import toolchain
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

pytestmark = pytest.mark.toolchain

KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
REGION, ZONE_A, ZONE_B = "cn-beijing", "cn-beijing-a", "cn-beijing-b"
CLIENTS = ("rpc", "v3")


class GoClients:
    """One ecs-clients process: a call in on stdin, its answer out on stdout."""

    def __init__(self, endpoint: str):
        self.proc = subprocess.Popen(
            [str(toolchain.binary("ecs-clients")), "--endpoint", endpoint, "--region", REGION, "--key", KEY_ID,
             "--secret", SECRET], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(self, client: str, action: str, secret: str | None = None, **params) -> dict:
        line = {"client": client, "action": action, "params": params, **({"secret": secret} if secret else {})}
        self.proc.stdin.write(json.dumps(line) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise AssertionError(f"ecs-clients stopped: {self.proc.wait(10)}: {self.proc.stderr.read()}")
        return json.loads(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0, self.proc.stderr.read()


@pytest.fixture(scope="module")
def server():
    srv = EcsServer(EcsConfig(region=REGION, zones={ZONE_A: ("cloud_essd",), ZONE_B: ("cloud_essd",)})).start()
    with srv.store.transaction() as db:
        srv.backend.register_instance(db, "i-a1", ZONE_A)
        srv.backend.register_instance(db, "i-b1", ZONE_B)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def go(server):
    clients = GoClients(server.endpoint)  # builds the tool on first use (about 3 minutes cold)
    yield clients
    clients.close()


def ok(answer: dict) -> dict:
    assert answer["status"] == 200, answer
    return answer["body"]


def tag_params(client: str, key: str, value: str) -> dict:
    return {"Tag.1.Key": key, "Tag.1.Value": value} if client == "rpc" else {"Tag": [{"Key": key, "Value": value}]}


def create(go, client, zone=ZONE_A, **extra) -> dict:
    return go.call(client, "CreateDisk", RegionId=REGION, ZoneId=zone, DiskCategory="cloud_essd", Size=20, **extra)


def describe(go, client, disk_id) -> dict:
    (disk,) = ok(go.call(client, "DescribeDisks", RegionId=REGION, DiskIds=json.dumps([disk_id])))["Disks"]["Disk"]
    return disk


@pytest.mark.parametrize("client", CLIENTS)
def test_create_attach_detach_delete(go, client):
    disk_id = ok(create(go, client, **tag_params(client, "csi.alibabacloud.com/volume-name", "pv-go")))["DiskId"]
    assert describe(go, client, disk_id)["Tags"]["Tag"] == [
        {"TagKey": "csi.alibabacloud.com/volume-name", "TagValue": "pv-go"}]
    ok(go.call(client, "AttachDisk", DiskId=disk_id, InstanceId="i-a1"))
    disk = describe(go, client, disk_id)
    assert (disk["Status"], disk["InstanceId"], disk["ZoneId"]) == ("In_use", "i-a1", ZONE_A)
    ok(go.call(client, "DetachDisk", DiskId=disk_id, InstanceId="i-a1"))
    assert describe(go, client, disk_id)["Status"] == "Available"
    ok(go.call(client, "DeleteDisk", DiskId=disk_id))
    gone = ok(go.call(client, "DescribeDisks", RegionId=REGION, DiskIds=json.dumps([disk_id])))
    assert gone["TotalCount"] == 0 and gone["Disks"].get("Disk", []) == []  # Go's models omit an empty list


@pytest.mark.parametrize("client", CLIENTS)
def test_cross_zone_attach_is_refused_with_ecs_code(go, client):
    disk_id = ok(create(go, client))["DiskId"]
    answer = go.call(client, "AttachDisk", DiskId=disk_id, InstanceId="i-b1")
    assert (answer["status"], answer["code"]) == (403, "ResourcesNotInSameZone"), answer
    assert describe(go, client, disk_id)["Status"] == "Available"


@pytest.mark.parametrize("client", CLIENTS)
def test_client_token_makes_create_idempotent(go, client):
    token = f"zp-go-{client}"
    first = ok(create(go, client, ClientToken=token))["DiskId"]
    assert ok(create(go, client, ClientToken=token))["DiskId"] == first
    other = create(go, client, ClientToken=token, zone=ZONE_B)
    assert (other["status"], other["code"]) == (400, "IdempotentParameterMismatch"), other


@pytest.mark.parametrize("client", CLIENTS)
def test_a_bad_secret_is_refused(go, client):
    answer = create(go, client, secret="not-the-secret")
    assert (answer["status"], answer["code"]) == (400, "SignatureDoesNotMatch"), answer


@pytest.mark.parametrize("client", CLIENTS)
def test_pagination_by_page_number_and_by_next_token(go, client):
    mine = [ok(create(go, client, zone=ZONE_B, DiskName=f"page-{client}-{n}"))["DiskId"] for n in range(5)]
    by_number, page, total = [], 1, None
    while total is None or len(by_number) < total:
        body = ok(go.call(client, "DescribeDisks", RegionId=REGION, ZoneId=ZONE_B, PageNumber=page, PageSize=2))
        assert (body["PageNumber"], body["PageSize"]) == (page, 2)
        assert body["Disks"]["Disk"], f"page {page} is empty before all {body['TotalCount']} disks were listed"
        by_number += [d["DiskId"] for d in body["Disks"]["Disk"]]
        total, page = body["TotalCount"], page + 1
    assert len(set(by_number)) == total and set(mine) <= set(by_number)
    by_token, token = [], None
    while True:
        body = ok(go.call(client, "DescribeDisks", RegionId=REGION, ZoneId=ZONE_B, MaxResults=2,
                          **({"NextToken": token} if token else {})))
        by_token += [d["DiskId"] for d in body["Disks"]["Disk"]]
        token = body["NextToken"]
        if not token:
            break
    assert len(by_token) == total and len(set(by_token)) == total, "every disk once"
    assert set(mine) <= set(by_token)
