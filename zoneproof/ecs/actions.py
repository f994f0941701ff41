"""ECS API actions: request parameters in, response documents out.

Parses the string parameters of each action (as both SDK generations send them) into the
backend's typed arguments, answers with the real response shapes, pages lists, and writes
every call, refused or not, to the audit log in the same transaction as its effect.
"""

from __future__ import annotations

import base64
import json
import re
import time
import unicodedata
import uuid
from typing import Callable

from zoneproof.ecs import upkeep
from zoneproof.ecs.backend import PENDING_DEVICES, CreateDiskArgs, DiskFilter, EcsBackend
from zoneproof.ecs.errors import AnswerLost, EcsError

API_VERSION = "2014-05-26"

# Parameters every request may carry that are about the request, not the action.
COMMON = {"Action", "Version", "Format", "AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
          "SignatureNonce", "SignatureType", "Timestamp", "SecurityToken", "OwnerId", "ResourceOwnerAccount",
          "ResourceOwnerId", "OwnerAccount"}

# ECS integers are ASCII digits; int() would also take "+20", " 20 ", "2_0" and "٢٠".
# Nineteen digits at most: beyond that no parameter is in range (and SQLite cannot hold it).
INTEGER = re.compile(r"[0-9]{1,19}", re.ASCII)
# Names and descriptions: ECS's documented rules (CreateDisk's DiskName and Description).
DISK_NAME = re.compile(r"[^\W\d_][\w.:-]{1,127}")
URL_PREFIXES = ("http://", "https://")
MAX_DESCRIPTION = 256
MAX_TAG_TEXT = 128
TAG_INDEX = re.compile(r"[1-9][0-9]?", re.ASCII)  # 1 to 20, no leading zero (Tag.01 is not Tag.1)

# Key under which an action hands the Dispatcher the power changes to finish after commit.
PENDING_POWER = "_pending_power"
MAX_POWER_INSTANCES = 100


class Params:
    """Typed access to string parameters, with the real error codes for bad ones."""

    def __init__(self, raw: dict[str, str]):
        self.raw = raw

    def str(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.raw.get(name)
        if value in (None, ""):
            if required:
                raise EcsError("MissingParameter", f'The input parameter "{name}" that is mandatory for '
                               "processing this request is not supplied.")
            return default
        return value

    def int(self, name: str, *, required: bool = False, default: int | None = None,
            low: int | None = None, high: int | None = None) -> int | None:
        text = self.str(name, required=required)
        if text is None:
            return default
        if not INTEGER.fullmatch(text):
            raise EcsError("InvalidParameter", f"The specified parameter {name!r} is not a whole number of ASCII "
                           f"digits: {text[:40]!r}.")
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise EcsError("InvalidParameter", f"The specified parameter {name!r} must be in "
                           f"[{low}, {high}], got {value}.")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        text = self.str(name)
        if text is None:
            return default
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise EcsError("InvalidParameter", f"The specified parameter {name!r} must be true or false, got {text!r}.")

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        text = self.str(name, default=default)
        if text not in choices:
            raise EcsError("InvalidParameter", f"The specified parameter {name!r} must be one of "
                           f"{', '.join(choices)}, got {text!r}.")
        return text

    def json_list(self, name: str, *, limit: int = 100, code: str = "InvalidParameter") -> tuple[str, ...] | None:
        """A JSON array of strings (``DiskIds``, ``InstanceIds``); ``code`` is ECS's error
        code for a malformed one."""
        text = self.str(name)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested input
            raise EcsError(code, f"The specified parameter {name!r} is not a JSON array: {text[:200]!r}.")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise EcsError(code, f"The specified parameter {name!r} must be a JSON array of strings.")
        if len(value) > limit:
            raise EcsError(code, f"The specified parameter {name!r} holds more than {limit} items.")
        return tuple(value)

    def repeat_list(self, name: str, *, limit: int, required: bool = True) -> tuple[str, ...] | None:
        """A repeat list ``name.1``, ``name.2``, … (N from 1 to ``limit``), in N order,
        without repeats; at least one value is required once any ``name.N`` is given, and
        (``required``) when none is. An optional list that is not given is None."""
        found: dict[int, str] = {}
        given = False
        for key, value in self.raw.items():
            if not key.startswith(name + "."):
                continue
            given = True
            index = key[len(name) + 1:]
            if not (index.isascii() and index.isdigit()) or str(int(index)) != index \
                    or not 1 <= int(index) <= limit:
                raise EcsError("InvalidParameter", f"The specified parameter {key!r} is not valid: N in "
                               f"{name}.N must be between 1 and {limit}.")
            if value:
                found[int(index)] = value
        if not given and not required:
            return None
        if not found:
            raise EcsError("MissingParameter", f'The input parameter "{name}.N" that is mandatory for '
                           "processing this request is not supplied.")
        return tuple(dict.fromkeys(found[n] for n in sorted(found)))

    def tags(self) -> tuple[tuple[str, str | None], ...]:
        """``Tag.N.Key``/``Tag.N.Value`` pairs, in N order (N from 1 to 20, written without
        a leading zero), each key and value within ECS's rules."""
        found = {}
        for key, value in self.raw.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "Tag" and parts[2] in ("Key", "Value"):
                if not TAG_INDEX.fullmatch(parts[1]) or int(parts[1]) > 20:
                    raise EcsError("InvalidParameter", f"The tag index in {key!r} must be a number from 1 to 20 "
                                   "without leading zeros.")
                found.setdefault(int(parts[1]), {})[parts[2]] = value
        tags = []
        for n in sorted(found):
            key, value = found[n].get("Key"), found[n].get("Value")
            if not key:
                raise EcsError("InvalidParameter", f"Tag.{n}.Value is given without Tag.{n}.Key.")
            if not _tag_text_ok(key) or key.startswith(("aliyun", "acs:")):
                raise EcsError("InvalidTagKey.Malformed", f"The specified Tag.{n}.Key is not valid: at most "
                               f"{MAX_TAG_TEXT} characters, no control characters, not starting with aliyun or acs:, "
                               "not containing http:// or https://.")
            if value is not None and (not _tag_text_ok(value) or value.startswith("acs:")):
                raise EcsError("InvalidTagValue.Malformed", f"The specified Tag.{n}.Value is not valid: at most "
                               f"{MAX_TAG_TEXT} characters, no control characters, not starting with acs:, "
                               "not containing http:// or https://.")
            tags.append((key, value))
        return tuple(tags)

    def disk_name(self, name: str = "DiskName") -> str:
        """2 to 128 characters: a letter first, then letters, digits, ``.``, ``_``,
        ``:`` or ``-`` (so never ``http://``)."""
        text = self.str(name, default="")
        if text and not DISK_NAME.fullmatch(text):
            raise EcsError("InvalidDiskName.Malformed", f"The specified {name} {text[:40]!r} is not valid: 2 to 128 "
                           "characters, starting with a letter, then letters, digits, '.', '_', ':' or '-'.")
        return text

    def description(self, name: str = "Description") -> str:
        """2 to 256 characters, not starting with ``http://`` or ``https://``."""
        text = self.str(name, default="")
        if text and (not 2 <= len(text) <= MAX_DESCRIPTION or text.startswith(URL_PREFIXES)
                     or any(unicodedata.category(c) == "Cc" for c in text)):
            raise EcsError("InvalidDescription.Malformed", f"The specified {name} is not valid: 2 to "
                           f"{MAX_DESCRIPTION} characters, no control characters, not starting with http:// or "
                           "https://.")
        return text


def _tag_text_ok(text: str) -> bool:
    return (len(text) <= MAX_TAG_TEXT and not any(unicodedata.category(c) == "Cc" for c in text)
            and not any(prefix in text for prefix in URL_PREFIXES))


def _page(items: list, p: Params, key: str, inner: str, render=lambda chunk: chunk) -> dict:
    """Page a list by NextToken/MaxResults when either is given, else by PageNumber/PageSize;
    ``render`` turns just the page's items into their response form."""
    if p.str("NextToken") is not None or p.str("MaxResults") is not None:
        size = p.int("MaxResults", default=10, low=1, high=500)
        start = 0
        token = p.str("NextToken")
        if token:
            try:
                offset = base64.urlsafe_b64decode(token.encode()).decode("ascii")
            except (ValueError, UnicodeDecodeError):
                offset = ""
            # Only a token this service handed out: "o:" and an offset within the list.
            if not (offset.startswith("o:") and INTEGER.fullmatch(offset[2:]) and int(offset[2:]) <= len(items)):
                raise EcsError("InvalidParameter", f"The specified NextToken {token[:60]!r} is not valid.")
            start = int(offset[2:])
        chunk = render(items[start:start + size])
        more = start + size < len(items)
        return {key: {inner: chunk}, "TotalCount": len(items), "MaxResults": size,
                "NextToken": base64.urlsafe_b64encode(f"o:{start + size}".encode()).decode() if more else ""}
    number = p.int("PageNumber", default=1, low=1, high=10**6)
    size = p.int("PageSize", default=10, low=1, high=100)
    start = (number - 1) * size
    return {key: {inner: render(items[start:start + size])}, "TotalCount": len(items), "PageNumber": number,
            "PageSize": size}


def create_disk(b: EcsBackend, db, p: Params) -> dict:
    multi = p.choice("MultiAttach", ("Enabled", "Disabled"), "Disabled")
    args = CreateDiskArgs(
        region=p.str("RegionId", required=True), zone=p.str("ZoneId", required=True),
        category=p.str("DiskCategory", default="cloud_efficiency"), size=p.int("Size", required=True),
        performance_level=p.str("PerformanceLevel"), name=p.disk_name(), description=p.description(), encrypted=p.bool("Encrypted"),
        kms_key_id=p.str("KMSKeyId"), multi_attach=multi == "Enabled",
        tags=tuple((k, v or "") for k, v in p.tags()), client_token=p.str("ClientToken"))
    return b.create_disk(db, args)


def describe_disks(b: EcsBackend, db, p: Params) -> dict:
    rows = b.describe_disks(db, DiskFilter(
        region=p.str("RegionId", required=True), zone=p.str("ZoneId"), disk_ids=p.json_list("DiskIds", code="InvalidDiskIds.Malformed"),
        instance_id=p.str("InstanceId"), category=p.str("Category"), status=p.str("Status"),
        name=p.str("DiskName"), tags=p.tags()))
    return _page(rows, p, "Disks", "Disk", lambda chunk: b.render_disks(db, chunk))


def describe_instances(b: EcsBackend, db, p: Params) -> dict:
    instances = b.describe_instances(db, p.str("RegionId", required=True), p.str("ZoneId"),
                                     p.json_list("InstanceIds"), p.str("Status"))
    return _page(instances, p, "Instances", "Instance")


def power_instances(on: bool) -> Callable[[EcsBackend, object, Params], dict]:
    """StartInstances (on) / StopInstances: RegionId, InstanceId.N (1 to 100),
    BatchOptimization, DryRun, and for StopInstances ForceStop and StoppedMode (checked,
    then ignored: the power switch is the same)."""
    def handler(b: EcsBackend, db, p: Params) -> dict:
        region = p.str("RegionId", required=True)
        instance_ids = p.repeat_list("InstanceId", limit=MAX_POWER_INSTANCES)
        all_together = p.choice("BatchOptimization", ("AllTogether", "SuccessFirst"), "AllTogether") == "AllTogether"
        dry_run = p.bool("DryRun")
        if not on:
            p.bool("ForceStop")
            p.choice("StoppedMode", ("KeepCharging", "StopCharging"), "KeepCharging")
        entries, changes = b.power(db, instance_ids, on, region=region, all_together=all_together)
        # A dry run that got here passed (SuccessFirst always does, as documented); raising
        # undoes its change (the Dispatcher's savepoint), and no power is switched.
        if dry_run:
            raise EcsError("DRYRUN.SUCCESS")
        return {"InstanceResponses": {"InstanceResponse": entries}, PENDING_POWER: changes}
    return handler


def power_instance(on: bool) -> Callable[[EcsBackend, object, Params], dict]:
    """The older StartInstance (on) / StopInstance: one InstanceId, an empty answer."""
    def handler(b: EcsBackend, db, p: Params) -> dict:
        instance_id = p.str("InstanceId", required=True)
        dry_run = p.bool("DryRun")
        if not on:
            p.bool("ForceStop")
            p.bool("ConfirmStop")
            p.choice("StoppedMode", ("KeepCharging", "StopCharging"), "KeepCharging")
        _, changes = b.power(db, (instance_id,), on)
        if dry_run:  # undone, as for StopInstances
            raise EcsError("DryRunOperation")
        return {PENDING_POWER: changes}
    return handler


def delete_instance(b: EcsBackend, db, p: Params) -> dict:
    """DeleteInstance: InstanceId, Force, TerminateSubscription, DryRun (see
    ``EcsBackend.delete_instance``)."""
    instance_id = p.str("InstanceId", required=True)
    force = p.bool("Force")
    p.bool("TerminateSubscription")
    dry_run = p.bool("DryRun")
    result = b.delete_instance(db, instance_id, force=force)
    if dry_run:  # undone by the Dispatcher's savepoint
        raise EcsError("DryRunOperation")
    return result


def resize_disk(b: EcsBackend, db, p: Params) -> dict:
    online = p.choice("Type", ("offline", "online"), "offline") == "online"
    return b.resize_disk(db, p.str("DiskId", required=True), p.int("NewSize", required=True), online)


def region_or_endpoints(b: EcsBackend, p: Params) -> str:
    """RegionId, or the endpoint's own region when absent: the Alibaba disk plugin sends
    DescribeTags and DescribeTasks without one to the regional endpoint, and its volume
    modification works against ECS, so ECS takes the region from the endpoint there."""
    return p.str("RegionId", default=b.config.region)


def tag_change(change) -> Callable[[EcsBackend, object, Params], dict]:
    """AddTags / RemoveTags: RegionId, ResourceType, ResourceId, Tag.N (1 to 20)."""
    def handler(b: EcsBackend, db, p: Params) -> dict:
        tags = p.tags()
        if not tags:
            raise EcsError("MissingParameter", 'The input parameter "Tag.N.Key" that is mandatory for processing '
                           "this request is not supplied.")
        return change(b, db, p.str("RegionId", required=True), p.str("ResourceType", required=True),
                      p.str("ResourceId", required=True), tags)
    return handler


def describe_tags(b: EcsBackend, db, p: Params) -> dict:
    found = upkeep.describe_tags(b, db, region_or_endpoints(b, p), p.str("ResourceType"), p.str("ResourceId"),
                                 p.tags())
    return _page(found, p, "Tags", "Tag")


def modify_disk_spec(b: EcsBackend, db, p: Params) -> dict:
    """ModifyDiskSpec: DiskId, DiskCategory, PerformanceLevel, DryRun (a passing dry run
    answers DryRunOperation and changes nothing)."""
    result = upkeep.modify_disk_spec(b, db, p.str("DiskId", required=True), p.str("DiskCategory"),
                                     p.str("PerformanceLevel"))
    if p.bool("DryRun"):
        raise EcsError("DryRunOperation")  # the Dispatcher's savepoint undoes the change and its task
    return result


def describe_tasks(b: EcsBackend, db, p: Params) -> dict:
    """DescribeTasks: TaskIds (comma-separated, at most 100), ResourceIds.N, TaskAction,
    TaskStatus, PageNumber/PageSize."""
    task_ids = p.str("TaskIds")
    ids = tuple(t.strip() for t in task_ids.split(",") if t.strip()) if task_ids else None
    if ids is not None and len(ids) > 100:
        raise EcsError("InvalidParameter", "TaskIds names more than 100 tasks.")
    resource_ids = p.repeat_list("ResourceIds", limit=100, required=False)
    region = region_or_endpoints(b, p)
    tasks = upkeep.describe_tasks(b, db, region, ids, resource_ids, p.str("TaskAction"), p.str("TaskStatus"))
    return {"RegionId": region, **_page(tasks, p, "TaskSet", "Task")}


def describe_instance_history_events(b: EcsBackend, db, p: Params) -> dict:
    """DescribeInstanceHistoryEvents: the fake schedules no system events, so the set is
    empty; the parameters the disk plugin sends are still checked."""
    region = p.str("RegionId", required=True)
    p.choice("ResourceType", ("instance", "ddh", "managedhost"), "instance")
    p.repeat_list("ResourceId", limit=100, required=False)
    statuses = p.repeat_list("InstanceEventCycleStatus", limit=7, required=False)
    if statuses is not None:
        unknown = set(statuses) - EVENT_CYCLE_STATUSES
        if unknown:
            raise EcsError("InvalidParameter", f"InstanceEventCycleStatus {sorted(unknown)} is not one of "
                           f"{', '.join(sorted(EVENT_CYCLE_STATUSES))}.")
    return _page(upkeep.describe_instance_history_events(b, region), p, "InstanceSystemEventSet",
                 "InstanceSystemEventType")


EVENT_CYCLE_STATUSES = {"Scheduled", "Avoided", "Executing", "Executed", "Canceled", "Failed", "Inquiring"}


ACTIONS: dict[str, Callable[[EcsBackend, object, Params], dict]] = {
    "CreateDisk": create_disk,
    "DeleteDisk": lambda b, db, p: b.delete_disk(db, p.str("DiskId", required=True)),
    "AttachDisk": lambda b, db, p: b.attach_disk(db, p.str("DiskId", required=True),
                                                 p.str("InstanceId", required=True),
                                                 delete_with_instance=p.bool("DeleteWithInstance")),
    "DetachDisk": lambda b, db, p: b.detach_disk(db, p.str("DiskId", required=True),
                                                 p.str("InstanceId", required=True)),
    "DescribeDisks": describe_disks,
    "ResizeDisk": resize_disk,
    "DescribeInstances": describe_instances,
    "StopInstances": power_instances(on=False),
    "StartInstances": power_instances(on=True),
    "StopInstance": power_instance(on=False),
    "StartInstance": power_instance(on=True),
    "DeleteInstance": delete_instance,
    "DescribeAvailableResource": lambda b, db, p: b.describe_available_resource(
        p.str("RegionId", required=True), p.str("ZoneId"),
        p.choice("DestinationResource", ("Zone", "DataDisk", "SystemDisk", "InstanceType"), "DataDisk"),
        scope=p.choice("Scope", ("zone", "region"), "zone"), instance_type=p.str("InstanceType")),
    "DescribeInstanceTypes": lambda b, db, p: {
        "InstanceTypes": {"InstanceType": b.describe_instance_types(
            p.repeat_list("InstanceTypes", limit=10, required=False))},
        "NextToken": ""},
    "DescribeRegions": lambda b, db, p: b.describe_regions(),
    "AddTags": tag_change(upkeep.add_tags),
    "RemoveTags": tag_change(upkeep.remove_tags),
    "DescribeTags": describe_tags,
    "ModifyDiskSpec": modify_disk_spec,
    "DescribeTasks": describe_tasks,
    "DescribeInstanceHistoryEvents": describe_instance_history_events,
    "DescribeZones": lambda b, db, p: b.describe_zones(p.str("RegionId", required=True)),
}


def _instance_param(params: dict[str, str]) -> str | None:
    """The instance a call names, for the audit log: ``InstanceId``, or the one value of
    an ``InstanceId.N`` list (a call naming several records none; its parameters list them)."""
    if params.get("InstanceId"):
        return params["InstanceId"]
    named = {v for k, v in params.items() if re.fullmatch(r"InstanceId\.\d+", k) and v}
    return named.pop() if len(named) == 1 else None


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


class Dispatcher:
    """Runs one API call against the backend and records it in the audit log."""

    def __init__(self, backend: EcsBackend):
        self.backend = backend

    def call(self, action: str, raw: dict[str, str], *, style: str, request_id: str) -> dict:
        """Return the response document (with RequestId) or raise EcsError."""
        params = {k: v for k, v in raw.items() if k not in COMMON}
        handler = ACTIONS.get(action)
        try:
            if handler is None:
                raise EcsError("InvalidAction.NotFound", f"Specified api {action!r} is not found.")
            version = raw.get("Version", API_VERSION)
            if version != API_VERSION:
                raise EcsError("InvalidVersion", f"Version {version!r} is not served; use {API_VERSION}.")
            delay = self.backend.faults.before_call(action, params)
            if delay:
                time.sleep(delay)
        except EcsError as err:
            self.record(action, params, err, style, request_id)
            raise
        store = self.backend.store
        with store.transaction() as db:
            self.backend.settle(db, self.backend.clock())
            disk_id, instance_id = params.get("DiskId"), _instance_param(params)
            # Zones are looked up before the call, so a deleted disk's zone is still recorded.
            disk_zone, instance_zone = self.backend.zones_of(db, disk_id, instance_id)
            failure = None
            try:
                with store.savepoint():
                    result = handler(self.backend, db, Params(params))
            except EcsError as err:
                failure = err  # the action is undone; its audit row is still committed below
            if failure is None and action == "CreateDisk":
                disk_id, disk_zone = result["DiskId"], self.backend.zones_of(db, result["DiskId"], None)[0]
            seq = self._audit(db, action, params, failure, style, request_id, disk_id, disk_zone, instance_id,
                              instance_zone)
        if failure is not None:
            raise failure
        pending = result.pop(PENDING_POWER, None)
        if pending:
            self._switch_power(pending, seq)
        devices = result.pop(PENDING_DEVICES, None)
        if devices:
            self._switch_devices(devices, seq)
        if self.backend.faults.answer_lost(action, params):
            raise AnswerLost(f"{action} {request_id} carried out; its answer is lost")
        return {"RequestId": request_id, **result}

    def _switch_devices(self, changes, seq: int) -> None:
        """After the commit: the guest's devices of the attachments the call changed. A
        failure is answered as InternalError, and the call's audit row says so."""
        failed = self.backend.switch_devices(changes)
        if failed:
            self._fail_audited(seq, "the disk's device in the instance failed: " + "; ".join(
                f"{a.disk_id} on {a.instance_id} ({type(e).__name__}: {e})" for a, e in failed))

    def _switch_power(self, changes, seq: int) -> None:
        """After the commit: the power switch for each changed instance. A failure is
        answered as InternalError, and the call's audit row says so."""
        failed = self.backend.switch_power(changes)
        if failed:
            self._fail_audited(seq, "the power switch failed for " + "; ".join(
                f"{c.instance_id} ({type(e).__name__}: {e})" for c, e in failed))

    def _fail_audited(self, seq: int, what: str) -> None:
        """Answer InternalError for a call already committed, and mark its audit row so."""
        err = EcsError("InternalError", f"The request processing has failed due to some unknown error: {what}.")
        with self.backend.store.transaction() as db:
            db.execute("UPDATE audit SET code = ?, status = ? WHERE seq = ?", (err.code, err.status, seq))
        raise err

    def record(self, action: str, params: dict, err: EcsError, style: str, request_id: str) -> None:
        """Audit a call refused before it reached the backend (signature, throttling, …)."""
        with self.backend.store.transaction() as db:
            disk_id, instance_id = params.get("DiskId"), _instance_param(params)
            disk_zone, instance_zone = self.backend.zones_of(db, disk_id, instance_id)
            self._audit(db, action, params, err, style, request_id, disk_id, disk_zone, instance_id, instance_zone)

    def _audit(self, db, action, params, err, style, request_id, disk_id, disk_zone, instance_id,
               instance_zone) -> int:
        """Write the call's audit row; return its sequence number."""
        if action == "CreateDisk" and disk_zone is None:
            disk_zone = params.get("ZoneId")  # a refused create still names the zone it asked for
        return db.execute(
            "INSERT INTO audit (at, request_id, action, params, code, status, disk_id, disk_zone,"
            " instance_id, instance_zone, style) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.backend.clock(), request_id, action or "", json.dumps(params, sort_keys=True),
             err.code if err else "OK", err.status if err else 200, disk_id, disk_zone, instance_id,
             instance_zone, style)).lastrowid
