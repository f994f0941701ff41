"""StopInstances/StartInstances (and the older StopInstance/StartInstance) of the fake ECS,
driven by both official Python SDKs through their own request classes, and the power
switch hook they call."""

from __future__ import annotations

import importlib
import logging
import threading

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from darabonba.exceptions import ResponseException

from tests.ecs_clients import SDKS, ApiError, RpcSdk, error_of, register_instances
from zoneproof.ecsapi import snake
from zoneproof.ecs.backend import EcsBackend, EcsConfig
from zoneproof.ecs.catalog import DEFAULT_CATEGORIES
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer
from zoneproof.ecs.store import Store

REGION = "cn-beijing"
ZONE_A, ZONE_B = "cn-beijing-a", "cn-beijing-b"
KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
INSTANCES = {"i-a1": ZONE_A, "i-a2": ZONE_A, "i-b1": ZONE_B}
CONFIG = EcsConfig(region=REGION, zones={ZONE_A: DEFAULT_CATEGORIES, ZONE_B: DEFAULT_CATEGORIES})


class Switch:
    """A power switch that records its calls and fails for the instances in ``broken``."""

    def __init__(self):
        self.calls: list[tuple[str, bool]] = []
        self.broken: set[str] = set()
        self.threads: set[str] = set()

    def __call__(self, instance_id: str, on: bool) -> None:
        self.calls.append((instance_id, on))
        self.threads.add(threading.current_thread().name)
        if instance_id in self.broken:
            raise RuntimeError(f"no power supply for {instance_id}")


def make_server(switch=None, db_path=":memory:") -> EcsServer:
    server = EcsServer(CONFIG, db_path=db_path, power_switch=switch).start()
    register_instances(server, INSTANCES)
    return server


@pytest.fixture
def switch():
    return Switch()


@pytest.fixture
def server(switch):
    srv = make_server(switch)
    yield srv
    srv.stop()


@pytest.fixture(params=SDKS, ids=lambda cls: cls.name)
def sdk(request, server):
    return request.param(server.endpoint, KEY_ID, SECRET, REGION)


def power(sdk, action: str, ids, **params) -> dict:
    """Call a power action through the SDK's own request class for it: the old SDK's
    ``set_InstanceIds`` and the new one's ``instance_id`` list both send ``InstanceId.N``.
    ``RegionId=None`` leaves the region out (the new SDK only: the old one always sends it)."""
    plural = action.endswith("Instances")
    if isinstance(sdk, RpcSdk):
        module = importlib.import_module(f"aliyunsdkecs.request.v20140526.{action}Request")
        req = getattr(module, f"{action}Request")()
        req.set_endpoint(sdk.endpoint)
        req.set_protocol_type("http")
        if plural:
            req.set_InstanceIds(list(ids))
        else:
            req.set_InstanceId(ids[0])
        for key, value in params.items():
            if key == "RegionId":
                if value is not None:
                    req.add_query_param("RegionId", value)
            else:
                getattr(req, f"set_{key}")(value)
        return sdk.send(req)
    kwargs = {snake(k): v for k, v in params.items()}
    if plural:
        kwargs.setdefault("region_id", REGION)
        kwargs["instance_id"] = list(ids)
    else:
        kwargs["instance_id"] = ids[0]
    cloud = sdk.cloud
    request = getattr(ecs_models, f"{action}Request")(**kwargs)
    try:
        return getattr(cloud.client, f"{snake(action)}_with_options")(request, cloud.runtime).body.to_map()
    except ResponseException as err:
        raise ApiError(err.code, err.status_code, getattr(err, "message", "") or str(err)) from None


def statuses(sdk, **filters) -> dict[str, str]:
    page = sdk.call("DescribeInstances", RegionId=REGION, PageSize=100, **filters)
    return {i["InstanceId"]: i["Status"] for i in page["Instances"]["Instance"]}


def entries(answer: dict) -> dict[str, dict]:
    return {e["InstanceId"]: e for e in answer["InstanceResponses"]["InstanceResponse"]}


# ------------------------------------------------------------------ the round trip
def test_stop_then_start_one_instance(sdk, switch):
    answer = power(sdk, "StopInstances", ["i-a1"], ForceStop=True, StoppedMode="KeepCharging")
    assert answer["RequestId"]
    assert answer["InstanceResponses"]["InstanceResponse"] == [
        {"InstanceId": "i-a1", "Code": "200", "Message": "success", "PreviousStatus": "Running",
         "CurrentStatus": "Stopping"}]
    assert statuses(sdk, InstanceIds=["i-a1"]) == {"i-a1": "Stopped"}
    assert statuses(sdk) == {"i-a1": "Stopped", "i-a2": "Running", "i-b1": "Running"}
    assert switch.calls == [("i-a1", False)]

    answer = power(sdk, "StartInstances", ["i-a1"])
    assert answer["InstanceResponses"]["InstanceResponse"] == [
        {"InstanceId": "i-a1", "Code": "200", "Message": "success", "PreviousStatus": "Stopped",
         "CurrentStatus": "Starting"}]
    assert statuses(sdk, InstanceIds=["i-a1"]) == {"i-a1": "Running"}
    assert switch.calls == [("i-a1", False), ("i-a1", True)]


def test_a_batch_switches_each_instance_once(sdk, switch):
    answer = power(sdk, "StopInstances", ["i-b1", "i-a1", "i-a2", "i-a1"])  # a repeat counts once
    assert list(entries(answer)) == ["i-b1", "i-a1", "i-a2"]
    assert all(e["Code"] == "200" for e in entries(answer).values())
    assert sorted(switch.calls) == [("i-a1", False), ("i-a2", False), ("i-b1", False)]
    assert statuses(sdk, Status="Stopped") == {i: "Stopped" for i in INSTANCES}
    assert statuses(sdk, Status="Running") == {}
    power(sdk, "StartInstances", ["i-a2"])
    assert statuses(sdk, Status="Running") == {"i-a2": "Running"}
    assert statuses(sdk, Status="Stopped", ZoneId=ZONE_A) == {"i-a1": "Stopped"}
    assert statuses(sdk, Status="Stopped", InstanceIds=["i-a2", "i-b1"]) == {"i-b1": "Stopped"}


def test_describe_instances_filters(sdk):
    assert statuses(sdk, InstanceIds=["i-a2", "i-b1", "i-nobody"]) == {"i-a2": "Running", "i-b1": "Running"}
    assert statuses(sdk, InstanceIds=[]) == {}  # documented: an empty array is a filter too
    err = error_of(statuses, sdk, Status="Sleeping")
    assert (err.code, err.status) == ("InvalidStatus.NotFound", 404)
    err = error_of(statuses, sdk, InstanceIds=[f"i-{n}" for n in range(101)])
    assert (err.code, err.status) == ("InvalidParameter", 400)


def test_the_switch_runs_in_the_request_thread_after_the_commit(server, switch):
    sdk = SDKS[1](server.endpoint, KEY_ID, SECRET, REGION)
    seen = []

    def check(instance_id: str, on: bool) -> None:
        # No transaction is open (so the change is committed), and the hook may open one.
        seen.append(server.store.db.in_transaction)
        with server.store.transaction() as db:
            seen.append(db.execute("SELECT status FROM instances WHERE instance_id = ?",
                                   (instance_id,)).fetchone()["status"])
        switch(instance_id, on)

    call, request_threads = server.dispatcher.call, set()

    def recording_call(*args, **kwargs):
        request_threads.add(threading.current_thread().name)
        return call(*args, **kwargs)

    server.backend.power_switch = check
    server.dispatcher.call = recording_call
    power(sdk, "StopInstances", ["i-a1"])
    assert seen == [False, "Stopping"]
    assert switch.calls == [("i-a1", False)]
    assert switch.threads == request_threads and threading.current_thread().name not in request_threads


# ------------------------------------------------------------------ refusals
def test_stopping_a_stopped_instance_all_together_refuses_the_batch(sdk, switch):
    power(sdk, "StopInstances", ["i-a1"])
    err = error_of(power, sdk, "StopInstances", ["i-a2", "i-a1"])
    assert (err.code, err.status) == ("IncorrectInstanceStatus", 403)
    err = error_of(power, sdk, "StopInstances", ["i-a2", "i-a1"], BatchOptimization="AllTogether")
    assert (err.code, err.status) == ("IncorrectInstanceStatus", 403)
    assert statuses(sdk)["i-a2"] == "Running"  # nothing of the batch was done
    err = error_of(power, sdk, "StartInstances", ["i-a2"])
    assert (err.code, err.status) == ("IncorrectInstanceStatus", 403)
    assert switch.calls == [("i-a1", False)]


def test_success_first_reports_each_instance(sdk, switch):
    power(sdk, "StopInstances", ["i-a1"])
    answer = power(sdk, "StopInstances", ["i-a2", "i-a1", "i-nobody"], BatchOptimization="SuccessFirst")
    found = entries(answer)
    assert found["i-a2"] == {"InstanceId": "i-a2", "Code": "200", "Message": "success",
                             "PreviousStatus": "Running", "CurrentStatus": "Stopping"}
    assert found["i-a1"]["Code"] == "IncorrectInstanceStatus"
    assert (found["i-a1"]["PreviousStatus"], found["i-a1"]["CurrentStatus"]) == ("Stopped", "Stopped")
    assert found["i-nobody"]["Code"] == "InvalidInstanceId.NotFound"
    assert statuses(sdk) == {"i-a1": "Stopped", "i-a2": "Stopped", "i-b1": "Running"}
    assert switch.calls == [("i-a1", False), ("i-a2", False)]


def test_unknown_instance(sdk, switch):
    err = error_of(power, sdk, "StopInstances", ["i-a1", "i-nobody"])
    assert (err.code, err.status) == ("InvalidInstanceId.NotFound", 404)
    err = error_of(power, sdk, "StartInstances", ["i-nobody"])
    assert (err.code, err.status) == ("InvalidInstanceId.NotFound", 404)
    assert statuses(sdk)["i-a1"] == "Running"
    assert switch.calls == []


def test_at_most_100_instances(sdk, switch):
    err = error_of(power, sdk, "StopInstances", [f"i-x{n}" for n in range(101)])
    assert (err.code, err.status) == ("InvalidParameter", 400)
    # 100 are taken: these get as far as looking the instances up
    err = error_of(power, sdk, "StopInstances", [f"i-x{n}" for n in range(99)] + ["i-a1"])
    assert (err.code, err.status) == ("InvalidInstanceId.NotFound", 404)
    answer = power(sdk, "StopInstances", [f"i-x{n}" for n in range(99)] + ["i-a1"], BatchOptimization="SuccessFirst")
    assert len(answer["InstanceResponses"]["InstanceResponse"]) == 100
    assert switch.calls == [("i-a1", False)]


def test_parameters_are_checked(sdk, switch):
    err = error_of(power, sdk, "StopInstances", [])
    assert (err.code, err.status) == ("MissingParameter", 400)
    err = error_of(power, sdk, "StopInstances", ["i-a1"], BatchOptimization="OneByOne")
    assert (err.code, err.status) == ("InvalidParameter", 400)
    err = error_of(power, sdk, "StopInstances", ["i-a1"], StoppedMode="KeepWarm")
    assert (err.code, err.status) == ("InvalidParameter", 400)
    err = error_of(power, sdk, "StopInstances", ["i-a1"], RegionId="cn-hangzhou")
    assert (err.code, err.status) == ("InvalidRegionId.NotFound", 404)
    if not isinstance(sdk, RpcSdk):  # the old SDK always sends its client's region
        err = error_of(power, sdk, "StartInstances", ["i-a1"], RegionId=None)
        assert (err.code, err.status) == ("MissingParameter", 400)
    assert statuses(sdk)["i-a1"] == "Running"
    assert switch.calls == []


def test_malformed_instance_lists(server):
    sdk = SDKS[0](server.endpoint, KEY_ID, SECRET, REGION)
    for params in ({"InstanceId.0": "i-a1"}, {"InstanceId.101": "i-a1"}, {"InstanceId.01": "i-a1"},
                   {"InstanceId.x": "i-a1"}):
        err = error_of(sdk.call, "StopInstances", RegionId=REGION, **params)
        assert (err.code, err.status) == ("InvalidParameter", 400), params
    # A JSON array is not how StopInstances takes its instances.
    err = error_of(sdk.call, "StopInstances", RegionId=REGION, InstanceId=["i-a1"])
    assert (err.code, err.status) == ("MissingParameter", 400)
    answer = sdk.call("StopInstances", RegionId=REGION, **{"InstanceId.2": "i-a2", "InstanceId.7": "i-a1"})
    assert [e["InstanceId"] for e in answer["InstanceResponses"]["InstanceResponse"]] == ["i-a2", "i-a1"]


def test_dry_run(sdk, switch):
    err = error_of(power, sdk, "StopInstances", ["i-a1"], DryRun=True)
    assert (err.code, err.status) == ("DRYRUN.SUCCESS", 400)
    assert statuses(sdk)["i-a1"] == "Running"
    err = error_of(power, sdk, "StartInstances", ["i-a1"], DryRun=True)  # it runs: the check fails
    assert (err.code, err.status) == ("IncorrectInstanceStatus", 403)
    # Documented: a SuccessFirst dry run answers DRYRUN.SUCCESS whatever the instances.
    err = error_of(power, sdk, "StartInstances", ["i-a1", "i-nobody"], DryRun=True, BatchOptimization="SuccessFirst")
    assert (err.code, err.status) == ("DRYRUN.SUCCESS", 400)
    err = error_of(power, sdk, "StopInstance", ["i-a1"], DryRun=True)
    assert (err.code, err.status) == ("DryRunOperation", 400)
    assert statuses(sdk)["i-a1"] == "Running"
    assert switch.calls == []


def test_the_older_singular_actions(sdk, switch):
    assert set(power(sdk, "StopInstance", ["i-b1"], ForceStop=True)) == {"RequestId"}
    assert statuses(sdk)["i-b1"] == "Stopped"
    err = error_of(power, sdk, "StopInstance", ["i-b1"])
    assert (err.code, err.status) == ("IncorrectInstanceStatus", 403)
    assert error_of(power, sdk, "StartInstance", ["i-nobody"]).code == "InvalidInstanceId.NotFound"
    assert set(power(sdk, "StartInstance", ["i-b1"])) == {"RequestId"}
    assert statuses(sdk)["i-b1"] == "Running"
    assert switch.calls == [("i-b1", False), ("i-b1", True)]


def test_zone_outage(sdk, server, switch):
    server.faults.add({"kind": "zone_outage", "zone": ZONE_B})
    err = error_of(power, sdk, "StopInstances", ["i-a1", "i-b1"])
    assert (err.code, err.status) == ("ServiceUnavailable", 503)
    answer = power(sdk, "StopInstances", ["i-a1", "i-b1"], BatchOptimization="SuccessFirst")
    assert {i: e["Code"] for i, e in entries(answer).items()} == {"i-a1": "200", "i-b1": "ServiceUnavailable"}
    assert switch.calls == [("i-a1", False)]


# ------------------------------------------------------------------ the power switch failing
def test_a_failing_switch_is_an_error_answer_and_is_logged(sdk, server, switch, caplog):
    switch.broken = {"i-a2"}
    with caplog.at_level(logging.ERROR, logger="zoneproof.ecs"):
        err = error_of(power, sdk, "StopInstances", ["i-a1", "i-a2"])
    assert (err.code, err.status) == ("InternalError", 500)
    assert "i-a2" in err.message and "no power supply" in err.message
    failures = [r for r in caplog.records if r.exc_info and "i-a2" in r.getMessage()]
    assert len(failures) == 1 and "no power supply for i-a2" in str(failures[0].exc_info[1])
    # The instance whose power did switch is Stopped; the other is back as it was.
    assert statuses(sdk) == {"i-a1": "Stopped", "i-a2": "Running", "i-b1": "Running"}
    assert switch.calls == [("i-a1", False), ("i-a2", False)]
    audited = [e for e in server.store.audit() if e["action"] == "StopInstances"]
    assert (audited[-1]["code"], audited[-1]["status"]) == ("InternalError", 500)

    switch.broken = set()  # a retry switches it
    power(sdk, "StopInstances", ["i-a2"])
    assert statuses(sdk)["i-a2"] == "Stopped"
    assert switch.calls[-1] == ("i-a2", False)


def test_a_failing_switch_under_success_first_is_an_error_answer_too(sdk, switch):
    switch.broken = {"i-b1"}
    err = error_of(power, sdk, "StopInstances", ["i-a1", "i-b1"], BatchOptimization="SuccessFirst")
    assert (err.code, err.status) == ("InternalError", 500)
    assert statuses(sdk) == {"i-a1": "Stopped", "i-a2": "Running", "i-b1": "Running"}


# ------------------------------------------------------------------ audit, restart, compatibility
def test_power_calls_are_audited(sdk, server):
    power(sdk, "StopInstances", ["i-b1"])
    error_of(power, sdk, "StopInstances", ["i-b1"])
    power(sdk, "StartInstances", ["i-a1", "i-b1"], BatchOptimization="SuccessFirst")
    rows = [e for e in server.store.audit() if e["action"] in ("StopInstances", "StartInstances")]
    assert [(e["action"], e["code"], e["status"]) for e in rows] == [
        ("StopInstances", "OK", 200), ("StopInstances", "IncorrectInstanceStatus", 403),
        ("StartInstances", "OK", 200)]
    assert (rows[0]["instance_id"], rows[0]["instance_zone"]) == ("i-b1", ZONE_B)
    assert rows[0]["params"]["InstanceId.1"] == "i-b1"
    assert rows[2]["instance_id"] is None  # several instances: the parameters name them
    assert {rows[2]["params"]["InstanceId.1"], rows[2]["params"]["InstanceId.2"]} == {"i-a1", "i-b1"}
    assert rows[0]["style"] == ("rpc" if isinstance(sdk, RpcSdk) else "v3")


def test_status_survives_a_restart(tmp_path):
    db = tmp_path / "ecs.sqlite"
    first = make_server(db_path=db)  # and no power switch: the hook is optional
    try:
        sdk = SDKS[1](first.endpoint, KEY_ID, SECRET, REGION)
        power(sdk, "StopInstances", ["i-a1", "i-b1"])
        assert statuses(sdk)["i-a1"] == "Stopped"
    finally:
        first.stop()
    second = make_server(db_path=db)  # registering again keeps the state
    try:
        sdk = SDKS[0](second.endpoint, KEY_ID, SECRET, REGION)
        assert statuses(sdk) == {"i-a1": "Stopped", "i-a2": "Running", "i-b1": "Stopped"}
        power(sdk, "StartInstances", ["i-b1"])
    finally:
        second.stop()
    third = EcsServer(CONFIG, db_path=db).start()
    try:
        assert statuses(SDKS[1](third.endpoint, KEY_ID, SECRET, REGION)) == \
            {"i-a1": "Stopped", "i-a2": "Running", "i-b1": "Running"}
    finally:
        third.stop()


def test_a_switch_left_unanswered_by_a_crash_is_undone_at_start(tmp_path):
    store = Store(tmp_path / "ecs.sqlite")
    backend = EcsBackend(CONFIG, store)
    with store.transaction() as db:
        for instance_id, zone in INSTANCES.items():
            backend.register_instance(db, instance_id, zone)
        db.execute("UPDATE instances SET status = 'Stopping' WHERE instance_id = 'i-a1'")
        db.execute("UPDATE instances SET status = 'Starting' WHERE instance_id = 'i-a2'")
    store.close()
    store = Store(tmp_path / "ecs.sqlite")
    EcsBackend(CONFIG, store)
    with store.transaction() as db:
        found = {r["instance_id"]: r["status"] for r in db.execute("SELECT * FROM instances")}
    store.close()
    assert found == {"i-a1": "Running", "i-a2": "Stopped", "i-b1": "Running"}


def test_the_backend_and_server_take_the_switch_as_a_keyword(switch):
    backend = EcsBackend(CONFIG, Store())
    assert backend.power_switch is None
    assert EcsBackend(CONFIG, Store(), None, power_switch=switch).power_switch is switch
    with EcsServer(CONFIG) as srv:
        assert srv.backend.power_switch is None


def test_delete_instance_releases_a_stopped_instance_and_keeps_its_disks(sdk, server, switch):
    disk = sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONE_A, DiskCategory="cloud_ssd", Size=20)["DiskId"]
    sdk.call("AttachDisk", DiskId=disk, InstanceId="i-a1")
    err = error_of(sdk.call, "DeleteInstance", InstanceId="i-a1", Force="true")
    assert (err.code, err.status) == ("IncorrectInstanceStatus", 403)
    assert "stop it first" in err.message
    power(sdk, "StopInstances", ["i-a1"])
    assert error_of(sdk.call, "DeleteInstance", InstanceId="i-a1", DryRun="true").code == "DryRunOperation"
    assert statuses(sdk)["i-a1"] == "Stopped"  # a dry run releases nothing
    assert set(sdk.call("DeleteInstance", InstanceId="i-a1")) == {"RequestId"}
    assert "i-a1" not in statuses(sdk)
    [kept] = sdk.call("DescribeDisks", RegionId=REGION, DiskIds=f'["{disk}"]')["Disks"]["Disk"]
    assert (kept["Status"], kept["Attachments"]["Attachment"]) == ("Available", [])
    assert error_of(sdk.call, "DeleteInstance", InstanceId="i-a1").code == "InvalidInstanceId.NotFound"


def test_delete_instance_releases_the_disks_attached_with_delete_with_instance(sdk, server, switch):
    kept, doomed, shared = (sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONE_A, DiskCategory="cloud_essd", Size=20,
                                     **extra)["DiskId"] for extra in ({}, {}, {"MultiAttach": "Enabled"}))
    sdk.call("AttachDisk", DiskId=kept, InstanceId="i-a1")
    sdk.call("AttachDisk", DiskId=doomed, InstanceId="i-a1", DeleteWithInstance="true")
    err = error_of(sdk.call, "AttachDisk", DiskId=shared, InstanceId="i-a1", DeleteWithInstance="true")
    assert (err.code, err.status) == ("InvalidParameter", 400) and "MultiAttach" in err.message
    described = {d["DiskId"]: d["DeleteWithInstance"] for d in sdk.call("DescribeDisks", RegionId=REGION)["Disks"]["Disk"]}
    assert described == {kept: False, doomed: True, shared: False}
    power(sdk, "StopInstances", ["i-a1"])
    sdk.call("DeleteInstance", InstanceId="i-a1")
    left = {d["DiskId"]: d["Status"] for d in sdk.call("DescribeDisks", RegionId=REGION)["Disks"]["Disk"]}
    assert left == {kept: "Available", shared: "Available"}
