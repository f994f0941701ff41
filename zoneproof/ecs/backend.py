"""The fake ECS state model and its rules, apart from any wire protocol.

Rules kept: a disk attaches only to an instance in its own zone; a disk without
MultiAttach attaches to one instance at a time; sizes respect each category's limits;
categories are offered per zone; statuses move Creating → Available → Attaching →
In_use → Detaching → Available after configurable delays. Instances are Running or
Stopped, and pass through Stopping/Starting while StopInstances/StartInstances switch
their power (see ``power`` and ``switch_power``).

Statuses are derived, not stored: a disk is Creating until its ``ready_at``, and an
attachment is ``attaching``/``detaching`` until its ``settle_at``. Each transaction first
settles what is due, so the stored state is always the state an observer saw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from zoneproof.bugs import living_in
from zoneproof.ecs import catalog
from zoneproof.ecs.errors import EcsError
from zoneproof.ecs.faults import Faults
from zoneproof.ecs.storage import DiskStorage
from zoneproof.ecs.store import Store

log = logging.getLogger(__name__)

# A call's result key for device changes to make once it is committed (``switch_devices``).
PENDING_DEVICES = "_pending_devices"
INSTANCE_STATUSES = ("Running", "Starting", "Stopping", "Stopped")
# on -> (the status an instance must have, the one it passes through, the one it ends in)
POWER_PATH = {True: ("Stopped", "Starting", "Running"), False: ("Running", "Stopping", "Stopped")}
PowerSwitch = Callable[[str, bool], None]


@dataclass(frozen=True)
class Attachment:
    """A disk attached to an instance, as the guest sees it: ``device`` is the name ECS
    reports (``/dev/vdb``), ``serial`` the disk's serial number."""

    disk_id: str
    zone: str
    instance_id: str
    device: str

    @property
    def serial(self) -> str:
        return serial_number(self.disk_id)


class Devices:
    """Where attachments become devices in the guest (``zoneproof.cluster.blockdev``): the
    backend calls ``plug`` after an attach and after a stopped instance starts, ``unplug``
    after a detach and before an instance stops, outside any transaction, and
    ``reconcile`` with every attachment when it starts."""

    def plug(self, attachment: Attachment) -> None:
        raise NotImplementedError

    def unplug(self, attachment: Attachment) -> None:
        raise NotImplementedError

    def reconcile(self, attachments: list[Attachment]) -> None:
        raise NotImplementedError

    def release_all(self) -> None:
        """As the service stops: no device outlives it."""
        raise NotImplementedError


def serial_number(disk_id: str) -> str:
    """The serial number the guest sees: the disk id without its "d-" prefix."""
    return disk_id[2:]


@dataclass
class Latencies:
    """Seconds each transition takes (0: immediate)."""

    create: float = 0.0
    attach: float = 0.0
    detach: float = 0.0


@dataclass
class EcsConfig:
    region: str = "cn-beijing"
    # zone -> disk categories offered there
    zones: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {z: catalog.DEFAULT_CATEGORIES for z in ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")})
    latencies: Latencies = field(default_factory=Latencies)
    # Switched-on cloud bugs of zoneproof.bugs (layer "cloud"): rules this ECS then breaks.
    bugs: tuple[str, ...] = ()

    def validate(self) -> "EcsConfig":
        living_in(self.bugs, "cloud", where="the cloud")  # a BugError is a ValueError
        if not self.region:
            raise ValueError("region must not be empty")
        if not self.zones:
            raise ValueError("at least one zone is needed")
        for zone, cats in self.zones.items():
            unknown = set(cats) - catalog.CATEGORIES.keys()
            if unknown:
                raise ValueError(f"zone {zone}: unknown disk categories {sorted(unknown)}; "
                                 f"known: {', '.join(catalog.CATEGORIES)}")
        return self


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def new_id(prefix: str) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(20))


@dataclass(frozen=True)
class CreateDiskArgs:
    region: str
    zone: str
    category: str
    size: int
    performance_level: str | None = None
    name: str = ""
    description: str = ""
    encrypted: bool = False
    kms_key_id: str | None = None
    multi_attach: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    client_token: str | None = None

    def fingerprint(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k != "client_token"}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()


@dataclass(frozen=True)
class PowerChange:
    """One instance whose power a call switches: committed as ``via`` (Stopping or
    Starting), then ``final`` once the power switch has done its work, or back to
    ``previous`` if it failed."""

    instance_id: str
    on: bool
    previous: str
    via: str
    final: str


@dataclass(frozen=True)
class DiskFilter:
    region: str
    zone: str | None = None
    disk_ids: tuple[str, ...] | None = None
    instance_id: str | None = None
    category: str | None = None
    status: str | None = None
    name: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()


class EcsBackend:
    """``power_switch(instance_id, on)``, if given, is called once for each instance whose
    state StopInstances/StartInstances change (on=False: stop, True: start), after the
    change is committed, outside any transaction, in the thread of the request. What it
    raises is logged and answered as ``InternalError``."""

    def __init__(self, config: EcsConfig, store: Store, faults: Faults | None = None,
                 clock: Callable[[], float] = time.time, *, power_switch: PowerSwitch | None = None,
                 storage: DiskStorage | None = None, devices: Devices | None = None):
        self.config = config.validate()
        self.store = store
        self.faults = faults or Faults()
        self.clock = clock
        self.power_switch = power_switch
        self.storage = storage  # images holding the disks' data, if pods use them
        self.devices = devices  # the attached disks' devices in the guests, if pods use them
        self._recover_power()
        if storage is not None:
            with self.store.transaction() as db:
                self.settle(db, self.clock())
                attachments = self.all_attachments(db)
                storage.reconcile({r["disk_id"]: (r["zone"], r["size"])
                                   for r in db.execute("SELECT disk_id, zone, size FROM disks")},
                                  {(a.disk_id, a.instance_id) for a in attachments})
            if devices is not None:
                devices.reconcile(attachments)

    def _recover_power(self) -> None:
        """A service killed between committing Stopping/Starting and finishing the switch
        never answered the call: undo the transition, so that a retry switches again."""
        with self.store.transaction() as db:
            for on, (previous, via, _) in POWER_PATH.items():
                stuck = db.execute("UPDATE instances SET status = ? WHERE status = ?", (previous, via)).rowcount
                if stuck:
                    log.warning("%d instance(s) left %s by an unanswered call are %s again", stuck, via, previous)

    # ------------------------------------------------------------ helpers
    def settle(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("UPDATE attachments SET state = 'attached' WHERE state = 'attaching' AND settle_at <= ?", (now,))
        db.execute("DELETE FROM attachments WHERE state = 'detaching' AND settle_at <= ?", (now,))

    def all_attachments(self, db, instance_id: str | None = None) -> list[Attachment]:
        """Attachments that hold a device (not those already detaching), of one instance or all."""
        rows = db.execute("SELECT a.disk_id, d.zone, a.instance_id, a.device FROM attachments a JOIN disks d"
                          " ON a.disk_id = d.disk_id WHERE a.state != 'detaching' AND (? IS NULL OR a.instance_id = ?)"
                          " ORDER BY a.attached_at", (instance_id, instance_id)).fetchall()
        return [Attachment(*row) for row in rows]

    def switch_devices(self, changes: list[tuple[bool, Attachment]], *,
                       undo_failed_attach: bool = True) -> list[tuple[Attachment, Exception]]:
        """Plug (True) or unplug each attachment's device, after the call's commit. A device
        that could not be plugged after an attach undoes it, so that the disk is not In_use
        on an instance that cannot see it. Returns the failures, each already logged."""
        failed = []
        for plug, attachment in changes:
            try:
                (self.devices.plug if plug else self.devices.unplug)(attachment)
            except Exception as err:  # noqa: BLE001 - answered as InternalError by the caller
                log.exception("could not %s the device of %s on %s", "plug" if plug else "unplug",
                              attachment.disk_id, attachment.instance_id)
                failed.append((attachment, err))
                if plug and undo_failed_attach:
                    with self.store.transaction() as db:
                        db.execute("DELETE FROM attachments WHERE disk_id = ? AND instance_id = ?",
                                   (attachment.disk_id, attachment.instance_id))
        return failed

    def check_region(self, region: str) -> None:
        if region != self.config.region:
            raise EcsError("InvalidRegionId.NotFound", f"The specified RegionId {region!r} does not exist.")

    def _zone(self, zone: str) -> None:
        if zone not in self.config.zones:
            raise EcsError("InvalidZoneId.NotFound", f"The specified zone {zone!r} does not exist in "
                           f"region {self.config.region}.")

    def disk(self, db, disk_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM disks WHERE disk_id = ?", (disk_id,)).fetchone()
        if row is None:
            raise EcsError("InvalidDiskId.NotFound", f"The specified disk {disk_id!r} does not exist.")
        return row

    def _instance(self, db, instance_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        if row is None:
            raise EcsError("InvalidInstanceId.NotFound", f"The specified instance {instance_id!r} does not exist.")
        return row

    def attachments(self, db, disk_id: str) -> list[sqlite3.Row]:
        return db.execute("SELECT * FROM attachments WHERE disk_id = ? ORDER BY attached_at", (disk_id,)).fetchall()

    def disk_status(self, disk: sqlite3.Row, attachments: list[sqlite3.Row], now: float) -> str:
        if now < disk["ready_at"]:
            return "Creating"
        states = {a["state"] for a in attachments}
        if "attaching" in states:
            return "Attaching"
        if "detaching" in states:
            return "Detaching"
        return "In_use" if states else "Available"

    def zones_of(self, db, disk_id: str | None, instance_id: str | None) -> tuple[str | None, str | None]:
        """Zones of a disk and an instance by id, None where unknown (for the audit log)."""
        disk_zone = instance_zone = None
        if disk_id:
            row = db.execute("SELECT zone FROM disks WHERE disk_id = ?", (disk_id,)).fetchone()
            disk_zone = row["zone"] if row else None
        if instance_id:
            row = db.execute("SELECT zone FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
            instance_zone = row["zone"] if row else None
        return disk_zone, instance_zone

    # ------------------------------------------------------------ instances (admin)
    def register_instance(self, db, instance_id: str, zone: str, name: str = "") -> dict:
        if not instance_id.startswith("i-") or len(instance_id) < 3:
            raise EcsError("InvalidParameter", f"instance id {instance_id!r} must start with 'i-'")
        self._zone(zone)
        existing = db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        if existing is not None:
            if existing["zone"] != zone:
                raise EcsError("InvalidParameter", f"instance {instance_id} is already registered in zone "
                               f"{existing['zone']}, not {zone}")
            return self._render_instance(existing)
        db.execute("INSERT INTO instances VALUES (?, ?, ?, 'Running', ?)",
                   (instance_id, zone, name or instance_id, self.clock()))
        return self._render_instance(self._instance(db, instance_id))

    def deregister_instance(self, db, instance_id: str) -> None:
        self._instance(db, instance_id)
        if db.execute("SELECT 1 FROM attachments WHERE instance_id = ?", (instance_id,)).fetchone():
            raise EcsError("IncorrectInstanceStatus", f"instance {instance_id} still has disks attached")
        db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))

    def delete_instance(self, db, instance_id: str, *, force: bool = False) -> dict:
        """DeleteInstance: only a Stopped instance is released (see ``release_instance``),
        its devices unplugged after the commit. ECS releases a running one with Force; the
        fake refuses it, saying so, so that a node never runs on an instance the cloud no
        longer has."""
        status = self._instance(db, instance_id)["status"]
        if status != "Stopped":
            hint = " (Force is not served here: stop it first with StopInstances)" if force else ""
            raise EcsError("IncorrectInstanceStatus", f"Instance {instance_id} is {status}; DeleteInstance "
                           f"releases a Stopped instance{hint}.")
        held = self.release_instance(db, instance_id)
        if self.devices is None:
            return {}
        return {PENDING_DEVICES: [(False, attachment) for attachment in held]}

    def release_instance(self, db, instance_id: str) -> list[Attachment]:
        """An instance released (deleted), as ECS releases one: its data disks are detached
        at once and kept, but those attached with DeleteWithInstance, which are released with
        it; and the instance is gone. Returns the attachments it held (the caller unplugs their
        devices once this is committed)."""
        self._instance(db, instance_id)
        held = self.all_attachments(db, instance_id)
        doomed = db.execute("SELECT d.disk_id, d.zone FROM disks d JOIN attachments a ON a.disk_id = d.disk_id "
                            "WHERE a.instance_id = ? AND d.delete_with_instance", (instance_id,)).fetchall()
        db.execute("DELETE FROM attachments WHERE instance_id = ?", (instance_id,))
        db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        for disk in doomed:
            db.execute("DELETE FROM disks WHERE disk_id = ?", (disk["disk_id"],))
            if self.storage is not None:  # a released instance is Stopped: its devices are already unplugged
                self.storage.delete(disk["zone"], disk["disk_id"])
        return held

    def power(self, db, instance_ids: tuple[str, ...], on: bool, *, region: str | None = None,
              all_together: bool = True) -> tuple[list[dict], list[PowerChange]]:
        """StopInstances (on=False) or StartInstances (on=True) of the instances: set those
        that can switch to Stopping/Starting; return the ``InstanceResponse`` entries and the
        changes that ``switch_power`` must finish once this transaction is committed.

        All together, the first instance that cannot switch fails the whole call; success
        first, it gets an entry with its error code and the others switch."""
        if region is not None:
            self.check_region(region)
        required, via, final = POWER_PATH[on]
        action = "StartInstances" if on else "StopInstances"
        entries: list[dict] = []
        changes: list[PowerChange] = []
        for instance_id in instance_ids:
            status = ""
            try:
                row = self._instance(db, instance_id)
                status = row["status"]
                self.faults.check_zones([row["zone"]])
                if status != required:
                    raise EcsError("IncorrectInstanceStatus", f"Instance {instance_id} is {status}; {action} "
                                   f"needs a {required} instance.")
            except EcsError as err:
                if all_together:
                    raise
                entries.append({"InstanceId": instance_id, "Code": err.code, "Message": err.message,
                                "PreviousStatus": status, "CurrentStatus": status})
                continue
            entries.append({"InstanceId": instance_id, "Code": "200", "Message": "success",
                            "PreviousStatus": status, "CurrentStatus": via})
            changes.append(PowerChange(instance_id, on, status, via, final))
        db.executemany("UPDATE instances SET status = ? WHERE instance_id = ?",
                       [(c.via, c.instance_id) for c in changes])
        return entries, changes

    def switch_power(self, changes: list[PowerChange]) -> list[tuple[PowerChange, Exception]]:
        """Call the power switch for each committed change (outside any transaction), then
        commit each instance's final status, or its previous one where the switch raised.
        Returns the failures, each already logged."""
        failed: list[tuple[PowerChange, Exception]] = []
        done: set[str] = set()
        try:
            for change in changes:
                try:
                    if self.devices is not None and not change.on:
                        # Cut first: a power cut leaves the guest nothing to write with.
                        self._switch_instance_devices(change.instance_id, plug=False)
                    if self.power_switch is not None:
                        self.power_switch(change.instance_id, change.on)
                    if self.devices is not None and change.on:
                        self._switch_instance_devices(change.instance_id, plug=True)
                except Exception as err:  # noqa: BLE001 - answered as InternalError by the caller
                    log.exception("power switch failed to turn %s instance %s",
                                  "on" if change.on else "off", change.instance_id)
                    failed.append((change, err))
                    continue
                done.add(change.instance_id)
        finally:  # even when interrupted, leave no instance Stopping or Starting
            with self.store.transaction() as db:
                db.executemany("UPDATE instances SET status = ? WHERE instance_id = ? AND status = ?",
                               [(c.final if c.instance_id in done else c.previous, c.instance_id, c.via)
                                for c in changes])
        return failed

    def _switch_instance_devices(self, instance_id: str, *, plug: bool) -> None:
        """The devices of every disk attached to the instance, which keeps its disks while
        stopped: unplugged as its power goes, plugged again as it comes back."""
        with self.store.transaction() as db:
            attachments = self.all_attachments(db, instance_id)
        failed = self.switch_devices([(plug, a) for a in attachments], undo_failed_attach=False)
        if failed:
            raise failed[0][1]

    def _render_instance(self, row: sqlite3.Row) -> dict:
        return {
            "InstanceId": row["instance_id"], "InstanceName": row["name"], "RegionId": self.config.region,
            "ZoneId": row["zone"], "Status": row["status"], "InstanceType": catalog.INSTANCE_TYPE.name,
            "CreationTime": iso(row["created"]),
        }

    # ------------------------------------------------------------ disks
    def create_disk(self, db, args: CreateDiskArgs) -> dict:
        self.check_region(args.region)
        if args.client_token:
            prior = db.execute("SELECT * FROM client_tokens WHERE token = ?", (args.client_token,)).fetchone()
            if prior is not None:
                if prior["action"] != "CreateDisk" or prior["fingerprint"] != args.fingerprint():
                    raise EcsError("IdempotentParameterMismatch")
                return json.loads(prior["result"])
        self._zone(args.zone)
        self.faults.check_zones([args.zone])
        category = catalog.CATEGORIES.get(args.category)
        if category is None or args.category not in self.config.zones[args.zone]:
            raise EcsError("InvalidDataDiskCategory.NotSupported",
                           f"The disk category {args.category!r} is not supported in zone {args.zone}.")
        level = args.performance_level
        if category.performance_levels:
            level = level or "PL1"
            if level not in category.performance_levels:
                raise EcsError("InvalidPerformanceLevel.Malformed",
                               f"PerformanceLevel {level!r} is not one of {', '.join(category.performance_levels)}.")
        elif level:
            raise EcsError("InvalidPerformanceLevel.Malformed",
                           f"PerformanceLevel applies to cloud_essd only, not {args.category}.")
        low, high = category.min_size_for(level), category.max_size
        if not low <= args.size <= high:
            raise EcsError("InvalidDataDiskSize.ValueNotSupported",
                           f"Size {args.size} GiB is outside [{low}, {high}] for {args.category}"
                           f"{' ' + level if level else ''}.")
        if args.multi_attach and not category.multi_attach:
            raise EcsError("InvalidParameter", f"MultiAttach is not supported for {args.category}.")
        if args.kms_key_id and not args.encrypted:
            raise EcsError("InvalidParameter", "KMSKeyId requires Encrypted=true.")
        if self.faults.sold_out(args.zone, args.category):
            raise EcsError("OperationDenied.NoStock")
        now = self.clock()
        disk_id = new_id("d-")
        db.execute(
            "INSERT INTO disks (disk_id, zone, name, description, category, performance_level, size, encrypted,"
            " kms_key_id, multi_attach, created, ready_at, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (disk_id, args.zone, args.name, args.description, args.category, level, args.size,
             int(args.encrypted), args.kms_key_id, int(args.multi_attach), now,
             now + self.config.latencies.create, json.dumps([list(t) for t in args.tags])))
        if self.storage is not None:
            self.storage.create(args.zone, disk_id, args.size)
        result = {"DiskId": disk_id, "OrderId": ""}
        if args.client_token:
            db.execute("INSERT INTO client_tokens VALUES (?, 'CreateDisk', ?, ?)",
                       (args.client_token, args.fingerprint(), json.dumps(result)))
        return result

    def delete_disk(self, db, disk_id: str) -> dict:
        now = self.clock()
        disk = self.disk(db, disk_id)
        self.faults.check_zones([disk["zone"]])
        status = self.disk_status(disk, self.attachments(db, disk_id), now)
        if status == "Creating":
            raise EcsError("IncorrectDiskStatus.Initializing")
        if status != "Available":
            raise EcsError("IncorrectDiskStatus", f"Disk {disk_id} is {status}; only an Available disk can be deleted.")
        db.execute("DELETE FROM disks WHERE disk_id = ?", (disk_id,))
        if self.storage is not None:
            self.storage.delete(disk["zone"], disk_id)
        return {}

    def attach_disk(self, db, disk_id: str, instance_id: str, *, delete_with_instance: bool = False) -> dict:
        now = self.clock()
        disk = self.disk(db, disk_id)
        instance = self._instance(db, instance_id)
        self.faults.check_zones([disk["zone"], instance["zone"]])
        if disk["zone"] != instance["zone"] and "cross-zone-attach" not in self.config.bugs:
            raise EcsError("ResourcesNotInSameZone",
                           f"The specified instance and disk are not in the same zone. (Disk {disk_id} is in "
                           f"{disk['zone']}, instance {instance_id} in {instance['zone']}.)")
        attachments = self.attachments(db, disk_id)
        status = self.disk_status(disk, attachments, now)
        if status == "Creating":
            raise EcsError("IncorrectDiskStatus", f"Disk {disk_id} is still Creating.")
        holders = [a["instance_id"] for a in attachments]
        if instance_id in holders:
            raise EcsError("IncorrectDiskStatus", f"Disk {disk_id} is already attached to {instance_id}.")
        if holders and not disk["multi_attach"] and "multi-attach-without-flag" not in self.config.bugs:
            raise EcsError("IncorrectDiskStatus",
                           f"Disk {disk_id} is {status} on {holders[0]} and does not have MultiAttach enabled.")
        if delete_with_instance and disk["multi_attach"]:
            raise EcsError("InvalidParameter", f"DeleteWithInstance must be false for disk {disk_id}: it has "
                           "MultiAttach enabled.")
        if len(holders) >= catalog.MAX_ATTACHMENTS_MULTI:
            raise EcsError("InvalidOperation.MultiAttachLimitExceeded")
        held = db.execute("SELECT device FROM attachments WHERE instance_id = ?", (instance_id,)).fetchall()
        if len(held) >= catalog.MAX_DISKS_PER_INSTANCE:
            raise EcsError("InstanceDiskLimitExceeded")
        used = {r["device"] for r in held}
        device = next(f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in used)
        latency = self.config.latencies.attach
        db.execute("INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?)",
                   (disk_id, instance_id, "attaching" if latency > 0 else "attached", now + latency, now, device))
        db.execute("UPDATE disks SET delete_with_instance = ? WHERE disk_id = ?", (int(delete_with_instance), disk_id))
        if self.devices is None:
            return {}
        return {PENDING_DEVICES: [(True, Attachment(disk_id, disk["zone"], instance_id, device))]}

    def detach_disk(self, db, disk_id: str, instance_id: str) -> dict:
        disk = self.disk(db, disk_id)
        instance = self._instance(db, instance_id)
        self.faults.check_zones([disk["zone"], instance["zone"]])
        row = db.execute("SELECT * FROM attachments WHERE disk_id = ? AND instance_id = ?",
                         (disk_id, instance_id)).fetchone()
        if row is None:
            raise EcsError("IncorrectDiskStatus", f"Disk {disk_id} is not attached to instance {instance_id}.")
        if row["state"] != "attached":
            raise EcsError("IncorrectDiskStatus", f"Disk {disk_id} is {row['state']} on {instance_id}.")
        latency = self.config.latencies.detach
        if latency > 0:
            db.execute("UPDATE attachments SET state = 'detaching', settle_at = ? WHERE disk_id = ? AND instance_id = ?",
                       (self.clock() + latency, disk_id, instance_id))
        else:
            db.execute("DELETE FROM attachments WHERE disk_id = ? AND instance_id = ?", (disk_id, instance_id))
        if self.devices is None:
            return {}
        # The device goes as the detach starts: the guest cannot write to a disk in Detaching.
        return {PENDING_DEVICES: [(False, Attachment(disk_id, disk["zone"], instance_id, row["device"]))]}

    def resize_disk(self, db, disk_id: str, new_size: int, online: bool) -> dict:
        now = self.clock()
        disk = self.disk(db, disk_id)
        self.faults.check_zones([disk["zone"]])
        status = self.disk_status(disk, self.attachments(db, disk_id), now)
        if status not in ("Available", "In_use") or (status == "In_use" and not online):
            raise EcsError("IncorrectDiskStatus", f"Disk {disk_id} is {status}; "
                           f"{'an In_use disk needs Type=online' if status == 'In_use' else 'wait until it settles'}.")
        if new_size <= disk["size"]:
            raise EcsError("InvalidDiskSize.TooSmall", f"NewSize {new_size} must exceed the current {disk['size']} GiB.")
        if new_size > catalog.CATEGORIES[disk["category"]].max_size:
            raise EcsError("InvalidDataDiskSize.ValueNotSupported", f"NewSize {new_size} GiB is over the maximum.")
        db.execute("UPDATE disks SET size = ? WHERE disk_id = ?", (new_size, disk_id))
        if self.storage is not None:
            self.storage.resize(disk["zone"], disk_id, new_size)
        return {}

    def _attachments_of(self, db, disk_ids: list[str]) -> dict[str, list[sqlite3.Row]]:
        """Attachments of many disks in one query (a query per disk makes listings slow)."""
        out: dict[str, list[sqlite3.Row]] = {d: [] for d in disk_ids}
        for start in range(0, len(disk_ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = disk_ids[start:start + 500]
            rows = db.execute(f"SELECT * FROM attachments WHERE disk_id IN ({','.join('?' * len(chunk))})"
                              " ORDER BY attached_at", chunk)
            for row in rows:
                out[row["disk_id"]].append(row)
        return out

    def render_disk(self, disk: sqlite3.Row, attachments: list[sqlite3.Row], now: float) -> dict:
        status = self.disk_status(disk, attachments, now)
        holders = [a for a in attachments if a["state"] != "detaching"] or attachments
        return {
            "DiskId": disk["disk_id"], "DiskName": disk["name"], "Description": disk["description"],
            "RegionId": self.config.region, "ZoneId": disk["zone"], "Status": status, "Type": "data",
            "Category": disk["category"], "PerformanceLevel": disk["performance_level"] or "",
            "Size": disk["size"], "Encrypted": bool(disk["encrypted"]), "KMSKeyId": disk["kms_key_id"] or "",
            "SerialNumber": serial_number(disk["disk_id"]),
            "MultiAttach": "Enabled" if disk["multi_attach"] else "Disabled",
            "InstanceId": "" if disk["multi_attach"] or not holders else holders[0]["instance_id"],
            "Device": "" if disk["multi_attach"] or not holders else holders[0]["device"],
            "Attachments": {"Attachment": [
                {"InstanceId": a["instance_id"], "Device": a["device"], "AttachedTime": iso(a["attached_at"])}
                for a in holders]},
            "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in json.loads(disk["tags"])]},
            "Portable": True, "DeleteWithInstance": bool(disk["delete_with_instance"]),
            "CreationTime": iso(disk["created"]),
        }

    def render_disks(self, db, rows: list[sqlite3.Row]) -> list[dict]:
        now = self.clock()
        attachments = self._attachments_of(db, [r["disk_id"] for r in rows])
        return [self.render_disk(r, attachments[r["disk_id"]], now) for r in rows]

    def describe_disks(self, db, f: DiskFilter) -> list[sqlite3.Row]:
        """The disks matching a filter, as rows; render only the page you answer with."""
        self.check_region(f.region)
        if f.zone:
            self._zone(f.zone)
            self.faults.check_zones([f.zone])
        sql, args = "SELECT * FROM disks WHERE 1=1", []
        if f.zone:
            sql, args = sql + " AND zone = ?", args + [f.zone]
        if f.disk_ids is not None:
            sql += f" AND disk_id IN ({','.join('?' * len(f.disk_ids))})"
            args += list(f.disk_ids)
        if f.category:
            sql, args = sql + " AND category = ?", args + [f.category]
        if f.name:
            sql, args = sql + " AND name = ?", args + [f.name]
        if f.instance_id:
            sql += " AND disk_id IN (SELECT disk_id FROM attachments WHERE instance_id = ?)"
            args.append(f.instance_id)
        # No zone check for disks named by id: the API is regional, and a batch naming one
        # disk of a dark zone is answered in full (docs/fake-ecs.md, "Faults").
        rows = db.execute(sql + " ORDER BY seq", args).fetchall()
        for key, value in f.tags:
            rows = [r for r in rows if any(k == key and (value is None or v == value)
                                           for k, v in json.loads(r["tags"]))]
        if f.status:
            now = self.clock()
            attachments = self._attachments_of(db, [r["disk_id"] for r in rows])
            rows = [r for r in rows if self.disk_status(r, attachments[r["disk_id"]], now) == f.status]
        return rows

    def describe_instances(self, db, region: str, zone: str | None, instance_ids: tuple[str, ...] | None,
                           status: str | None = None) -> list[dict]:
        self.check_region(region)
        if zone:
            self._zone(zone)
            self.faults.check_zones([zone])
        if status is not None and status not in INSTANCE_STATUSES:
            raise EcsError("InvalidStatus.NotFound", f"The specified Status {status!r} is not one of "
                           f"{', '.join(INSTANCE_STATUSES)}.")
        sql, args = "SELECT * FROM instances WHERE 1=1", []
        if zone:
            sql, args = sql + " AND zone = ?", args + [zone]
        if status:
            sql, args = sql + " AND status = ?", args + [status]
        if instance_ids is not None:
            sql += f" AND instance_id IN ({','.join('?' * len(instance_ids))})"
            args += list(instance_ids)
        return [self._render_instance(r) for r in db.execute(sql + " ORDER BY created, instance_id", args)]

    def describe_available_resource(self, region: str, zone: str | None, destination: str, *,
                                    scope: str = "zone", instance_type: str | None = None) -> dict:
        """What each zone sells. ``scope`` region asks for regional disks (a category
        whose disks span the region's zones): the fake sells none, so nothing is listed."""
        self.check_region(region)
        if instance_type is not None and instance_type not in catalog.INSTANCE_TYPES:
            raise EcsError("InvalidInstanceType.NotFound", f"The specified InstanceType {instance_type!r} does not "
                           "exist.")
        if scope == "region":
            return {"AvailableZones": {"AvailableZone": []}}
        if zone:
            self._zone(zone)
        zones = [zone] if zone else list(self.config.zones)
        out = []
        for z in zones:
            supported = []
            for cat in self.config.zones[z]:
                sold_out = self.faults.sold_out(z, cat)
                c = catalog.CATEGORIES[cat]
                supported.append({"Value": cat, "Status": "SoldOut" if sold_out else "Available",
                                  "StatusCategory": "WithoutStock" if sold_out else "WithStock",
                                  "Min": c.min_size, "Max": c.max_size, "Unit": "GiB"})
            resource = {"Type": "DataDisk", "SupportedResources": {"SupportedResource": supported}}
            out.append({"ZoneId": z, "RegionId": region, "Status": "Available", "StatusCategory": "WithStock",
                        "AvailableResources": {"AvailableResource":
                                               [resource] if destination in ("DataDisk", "Zone") else []}})
        return {"AvailableZones": {"AvailableZone": out}}

    def describe_instance_types(self, names: tuple[str, ...] | None) -> list[dict]:
        """The named instance types (unknown names are left out, as ECS does), or all."""
        types = list(catalog.INSTANCE_TYPES.values()) if names is None else [
            catalog.INSTANCE_TYPES[n] for n in names if n in catalog.INSTANCE_TYPES]
        return [{"InstanceTypeId": t.name, "InstanceTypeFamily": t.name.rsplit(".", 1)[0], "CpuCoreCount": t.cpu_cores,
                 "MemorySize": t.memory_gib, "DiskQuantity": t.disk_quantity} for t in types]

    def describe_regions(self) -> dict:
        r = self.config.region
        return {"Regions": {"Region": [{"RegionId": r, "LocalName": r, "Status": "available",
                                        "RegionEndpoint": f"ecs.{r}.aliyuncs.com"}]}}

    def describe_zones(self, region: str) -> dict:
        self.check_region(region)
        return {"Zones": {"Zone": [
            {"ZoneId": z, "LocalName": z,
             "AvailableDiskCategories": {"DiskCategories": list(cats)},
             "AvailableResourceCreation": {"ResourceTypes": ["Instance", "Disk"]}}
            for z, cats in self.config.zones.items()]}}

    # ------------------------------------------------------------ state for oracles and tests
    def snapshot(self, db) -> dict:
        return {
            "region": self.config.region,
            "zones": {z: list(c) for z, c in self.config.zones.items()},
            "instances": [self._render_instance(r) for r in db.execute("SELECT * FROM instances ORDER BY instance_id")],
            "disks": self.render_disks(db, db.execute("SELECT * FROM disks ORDER BY seq").fetchall()),
        }
