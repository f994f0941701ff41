"""A stateful property test of the fake ECS rules: random sequences of actions, and after
every step the invariants the placement oracle relies on."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.examples import examples
from zoneproof.ecs import catalog
from zoneproof.ecs.actions import Dispatcher, new_request_id
from zoneproof.ecs.backend import EcsBackend, EcsConfig
from zoneproof.ecs.errors import EcsError
from zoneproof.ecs.store import Store

ZONES = ("z-a", "z-b", "z-c")
INSTANCES = {f"i-{z[-1]}{n}": z for z in ZONES for n in (1, 2)}
CATEGORIES = ("cloud_ssd", "cloud_essd", "cloud_auto", "cloud_efficiency")


class EcsRules(RuleBasedStateMachine):
    """Each call's outcome is predicted from a model of the rules (zones, categories, sizes,
    single attach, the instance's disk limit) and must be exactly that: success, or the
    predicted code. A backend refusing every call fails as surely as one allowing too much."""

    def __init__(self):
        super().__init__()
        config = EcsConfig(region="r-test", zones={"z-a": catalog.DEFAULT_CATEGORIES, "z-b": catalog.DEFAULT_CATEGORIES,
                                                   "z-c": ("cloud_essd", "cloud_auto")})
        self.config = config
        self.backend = EcsBackend(config, Store())
        self.api = Dispatcher(self.backend)
        with self.backend.store.transaction() as db:
            for instance_id, zone in INSTANCES.items():
                self.backend.register_instance(db, instance_id, zone)
        self.disk_ids: list[str] = []
        self.disks: dict[str, dict] = {}  # the model: zone, multi, category, level, size, holders
        self.calls: list[tuple[str, str]] = []  # (action, code) of every call made, in order

    def call(self, action: str, expected: str, **params):
        """Make the call; its outcome must be ``expected`` ("OK" or an error code)."""
        try:
            result = self.api.call(action, {k: str(v) for k, v in params.items()}, style="rpc",
                                   request_id=new_request_id())
            code = "OK"
        except EcsError as err:
            assert 400 <= err.status < 500, err
            result, code = None, err.code
        self.calls.append((action, code))
        assert code == expected, f"{action} {params}: answered {code}, the rules say {expected}"
        return result

    def held_by(self, instance: str) -> int:
        return sum(instance in d["holders"] for d in self.disks.values())

    @rule(zone=st.sampled_from(ZONES + ("z-nowhere",)), category=st.sampled_from(CATEGORIES),
          size=st.integers(min_value=0, max_value=2000), multi=st.booleans(),
          level=st.sampled_from([None, "PL0", "PL1", "PL2", "PL3"]))
    def create(self, zone, category, size, multi, level):
        params = {"RegionId": "r-test", "ZoneId": zone, "DiskCategory": category, "Size": size,
                  "MultiAttach": "Enabled" if multi else "Disabled"}
        if level:
            params["PerformanceLevel"] = level
        spec = catalog.CATEGORIES[category]
        effective = (level or "PL1") if spec.performance_levels else None
        if zone not in self.config.zones:
            expected = "InvalidZoneId.NotFound"
        elif category not in self.config.zones[zone]:
            expected = "InvalidDataDiskCategory.NotSupported"
        elif level and not spec.performance_levels:
            expected = "InvalidPerformanceLevel.Malformed"
        elif not spec.min_size_for(effective) <= size <= spec.max_size:
            expected = "InvalidDataDiskSize.ValueNotSupported"
        elif multi and not spec.multi_attach:
            expected = "InvalidParameter"
        else:
            expected = "OK"
        result = self.call("CreateDisk", expected, **params)
        if result:
            self.disk_ids.append(result["DiskId"])
            self.disks[result["DiskId"]] = {"zone": zone, "multi": multi, "category": category, "size": size,
                                            "holders": set()}

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data(), instance=st.sampled_from(sorted(INSTANCES)))
    def attach(self, data, instance):
        disk_id = data.draw(st.sampled_from(self.disk_ids))
        disk = self.disks[disk_id]
        if disk["zone"] != INSTANCES[instance]:
            expected = "ResourcesNotInSameZone"
        elif instance in disk["holders"] or (disk["holders"] and not disk["multi"]):
            expected = "IncorrectDiskStatus"
        elif self.held_by(instance) >= catalog.MAX_DISKS_PER_INSTANCE:
            expected = "InstanceDiskLimitExceeded"
        else:
            expected = "OK"
        if self.call("AttachDisk", expected, DiskId=disk_id, InstanceId=instance) is not None:
            disk["holders"].add(instance)

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data(), instance=st.sampled_from(sorted(INSTANCES)))
    def detach(self, data, instance):
        disk_id = data.draw(st.sampled_from(self.disk_ids))
        holders = self.disks[disk_id]["holders"]
        if self.call("DetachDisk", "OK" if instance in holders else "IncorrectDiskStatus",
                     DiskId=disk_id, InstanceId=instance) is not None:
            holders.discard(instance)

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data())
    def delete(self, data):
        disk_id = data.draw(st.sampled_from(self.disk_ids))
        if self.call("DeleteDisk", "IncorrectDiskStatus" if self.disks[disk_id]["holders"] else "OK",
                     DiskId=disk_id) is not None:
            self.disk_ids.remove(disk_id)
            del self.disks[disk_id]

    @precondition(lambda self: self.disk_ids)
    @rule(data=st.data(), grow=st.integers(min_value=-5, max_value=100), online=st.booleans())
    def resize(self, data, grow, online):
        disk_id = data.draw(st.sampled_from(self.disk_ids))
        disk = self.disks[disk_id]
        new_size = disk["size"] + grow
        if new_size < 0:
            expected = "InvalidParameter"  # not a whole number of ASCII digits
        elif disk["holders"] and not online:
            expected = "IncorrectDiskStatus"
        elif new_size <= disk["size"]:
            expected = "InvalidDiskSize.TooSmall"
        elif new_size > catalog.CATEGORIES[disk["category"]].max_size:
            expected = "InvalidDataDiskSize.ValueNotSupported"
        else:
            expected = "OK"
        if self.call("ResizeDisk", expected, DiskId=disk_id, NewSize=new_size,
                     Type="online" if online else "offline") is not None:
            disk["size"] = new_size

    @invariant()
    def zone_rules_hold(self):
        with self.backend.store.transaction() as db:
            state = self.backend.snapshot(db)
        assert [d["DiskId"] for d in state["disks"]] == self.disk_ids
        per_instance: dict[str, int] = {}
        for disk in state["disks"]:
            holders = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
            assert set(holders) == self.disks[disk["DiskId"]]["holders"]
            assert disk["Size"] == self.disks[disk["DiskId"]]["size"]
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
    def every_call_is_audited_as_answered(self):
        audit = self.backend.store.audit()
        assert [(e["action"], e["code"]) for e in audit] == self.calls


TestEcsRules = EcsRules.TestCase
TestEcsRules.settings = settings(max_examples=examples(60), stateful_step_count=40, deadline=None)
