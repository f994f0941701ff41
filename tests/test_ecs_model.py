"""A stateful property test of the fake ECS rules: random sequences of actions, and after
every step the invariants the placement oracle relies on."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zoneproof.ecs import catalog
from zoneproof.ecs.actions import Dispatcher, new_request_id
from zoneproof.ecs.backend import EcsBackend, EcsConfig
from zoneproof.ecs.errors import EcsError
from zoneproof.ecs.store import Store

ZONES = ("z-a", "z-b", "z-c")
INSTANCES = {f"i-{z[-1]}{n}": z for z in ZONES for n in (1, 2)}
CATEGORIES = ("cloud_ssd", "cloud_essd", "cloud_auto", "cloud_efficiency")


class EcsRules(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        config = EcsConfig(region="r-test", zones={"z-a": catalog.DEFAULT_CATEGORIES, "z-b": catalog.DEFAULT_CATEGORIES,
                                                   "z-c": ("cloud_essd", "cloud_auto")})
        self.backend = EcsBackend(config, Store())
        self.api = Dispatcher(self.backend)
        with self.backend.store.transaction() as db:
            for instance_id, zone in INSTANCES.items():
                self.backend.register_instance(db, instance_id, zone)
        self.disk_ids: list[str] = []

    def call(self, action: str, **params):
        try:
            return self.api.call(action, {k: str(v) for k, v in params.items()}, style="rpc",
                                 request_id=new_request_id())
        except EcsError as err:
            assert 400 <= err.status < 500, err
            return None

    @rule(zone=st.sampled_from(ZONES + ("z-nowhere",)), category=st.sampled_from(CATEGORIES),
          size=st.integers(min_value=0, max_value=2000), multi=st.booleans(),
          level=st.sampled_from([None, "PL0", "PL1", "PL2", "PL3"]))
    def create(self, zone, category, size, multi, level):
        params = {"RegionId": "r-test", "ZoneId": zone, "DiskCategory": category, "Size": size,
                  "MultiAttach": "Enabled" if multi else "Disabled"}
        if level:
            params["PerformanceLevel"] = level
        result = self.call("CreateDisk", **params)
        if result:
            self.disk_ids.append(result["DiskId"])

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data(), instance=st.sampled_from(sorted(INSTANCES)))
    def attach(self, data, instance):
        self.call("AttachDisk", DiskId=data.draw(st.sampled_from(self.disk_ids)), InstanceId=instance)

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data(), instance=st.sampled_from(sorted(INSTANCES)))
    def detach(self, data, instance):
        self.call("DetachDisk", DiskId=data.draw(st.sampled_from(self.disk_ids)), InstanceId=instance)

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data())
    def delete(self, data):
        disk_id = data.draw(st.sampled_from(self.disk_ids))
        if self.call("DeleteDisk", DiskId=disk_id) is not None:
            self.disk_ids.remove(disk_id)

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data(), grow=st.integers(min_value=-5, max_value=100), online=st.booleans())
    def resize(self, data, grow, online):
        disk_id = data.draw(st.sampled_from(self.disk_ids))
        with self.backend.store.transaction() as db:
            size = db.execute("SELECT size FROM disks WHERE disk_id = ?", (disk_id,)).fetchone()["size"]
        self.call("ResizeDisk", DiskId=disk_id, NewSize=size + grow, Type="online" if online else "offline")

    @invariant()
    def zone_rules_hold(self):
        with self.backend.store.transaction() as db:
            state = self.backend.snapshot(db)
        assert [d["DiskId"] for d in state["disks"]] == self.disk_ids
        per_instance: dict[str, int] = {}
        for disk in state["disks"]:
            holders = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
            for instance_id in holders:
                assert INSTANCES[instance_id] == disk["ZoneId"], f"{disk['DiskId']} attached across zones"
                per_instance[instance_id] = per_instance.get(instance_id, 0) + 1
            if disk["MultiAttach"] != "Enabled":
                assert len(holders) <= 1, f"{disk['DiskId']} attached to {holders}"
            assert len(holders) == len(set(holders))
            assert disk["Status"] == ("In_use" if holders else "Available")
            category = catalog.CATEGORIES[disk["Category"]]
            low = category.min_size_for(disk["PerformanceLevel"] or None)
            assert low <= disk["Size"] <= category.max_size
            assert disk["Category"] in state["zones"][disk["ZoneId"]]
        assert all(n <= catalog.MAX_DISKS_PER_INSTANCE for n in per_instance.values())

    @invariant()
    def every_call_is_audited(self):
        audit = self.backend.store.audit()
        cross_zone_attaches = [e for e in audit if e["action"] == "AttachDisk" and e["disk_zone"]
                               and e["instance_zone"] and e["disk_zone"] != e["instance_zone"]]
        assert all(e["code"] == "ResourcesNotInSameZone" for e in cross_zone_attaches)


TestEcsRules = EcsRules.TestCase
TestEcsRules.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
