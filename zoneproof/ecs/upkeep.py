"""Rules for what drivers call beside creating, attaching and describing: disk tags
(AddTags, RemoveTags, DescribeTags), disk spec changes and their tasks (ModifyDiskSpec,
DescribeTasks) and instance history events (DescribeInstanceHistoryEvents).

The state lives in the same database as the disks (tags in ``disks.tags``, tasks in
``tasks``) and every function runs inside the caller's transaction, like the backend's.
"""

from __future__ import annotations

import json
import sqlite3

from zoneproof.ecs import catalog
from zoneproof.ecs.backend import EcsBackend, iso, new_id
from zoneproof.ecs.errors import EcsError

MAX_TAGS_PER_RESOURCE = 20
# Resource types AddTags documents; the fake keeps tags on disks only.
TAGGABLE = "disk"
RESOURCE_TYPES = ("disk", "instance", "image", "securitygroup", "snapshot", "eni", "ddh", "keypair",
                  "launchtemplate", "reservedinstance", "snapshotpolicy", "elasticityassurance",
                  "capacityreservation", "command", "invocation", "activation", "managedinstance")
TASK_STATUSES = ("Finished", "Processing", "Failed")


def _tagged_disk(backend: EcsBackend, db, region: str, resource_type: str, resource_id: str) -> sqlite3.Row:
    backend.check_region(region)
    if resource_type not in RESOURCE_TYPES:
        raise EcsError("InvalidResourceType.NotFound", f"The ResourceType {resource_type!r} does not exist.")
    if resource_type != TAGGABLE:
        raise EcsError("InvalidResourceType.NotFound", f"The fake ECS keeps tags on disks only, not on "
                       f"{resource_type!r}.")
    disk = db.execute("SELECT * FROM disks WHERE disk_id = ?", (resource_id,)).fetchone()
    if disk is None:
        raise EcsError("InvalidResourceId.NotFound", f"The ResourceId {resource_id!r} is not found.")
    backend.faults.check_zones([disk["zone"]])
    return disk


def add_tags(backend: EcsBackend, db, region: str, resource_type: str, resource_id: str,
             tags: tuple[tuple[str, str | None], ...]) -> dict:
    """Add or overwrite tags (a key already there takes the new value)."""
    disk = _tagged_disk(backend, db, region, resource_type, resource_id)
    current = dict(json.loads(disk["tags"]))
    for key, value in tags:
        current[key] = value or ""
    if len(current) > MAX_TAGS_PER_RESOURCE:
        raise EcsError("InvalidTagCount", f"A resource holds at most {MAX_TAGS_PER_RESOURCE} tags; this call would "
                       f"leave {resource_id} with {len(current)}.")
    db.execute("UPDATE disks SET tags = ? WHERE disk_id = ?", (json.dumps([list(t) for t in current.items()]),
                                                               resource_id))
    return {}


def remove_tags(backend: EcsBackend, db, region: str, resource_type: str, resource_id: str,
                tags: tuple[tuple[str, str | None], ...]) -> dict:
    """Remove the named keys (only where the value matches, when a value is given)."""
    disk = _tagged_disk(backend, db, region, resource_type, resource_id)
    kept = [(k, v) for k, v in json.loads(disk["tags"])
            if not any(k == key and (value is None or v == value) for key, value in tags)]
    db.execute("UPDATE disks SET tags = ? WHERE disk_id = ?", (json.dumps([list(t) for t in kept]), resource_id))
    return {}


def describe_tags(backend: EcsBackend, db, region: str, resource_type: str | None, resource_id: str | None,
                  tags: tuple[tuple[str, str | None], ...]) -> list[dict]:
    """Each distinct tag of the region's disks (matching the filters), with how many
    resources of each type carry it."""
    backend.check_region(region)
    if resource_type is not None and resource_type not in RESOURCE_TYPES:
        raise EcsError("InvalidResourceType.NotFound", f"The ResourceType {resource_type!r} does not exist.")
    if resource_type not in (None, TAGGABLE):
        return []
    sql, args = "SELECT disk_id, tags FROM disks", []
    if resource_id is not None:
        sql, args = sql + " WHERE disk_id = ?", [resource_id]
    counts: dict[tuple[str, str], int] = {}
    for row in db.execute(sql + " ORDER BY seq", args):
        for key, value in json.loads(row["tags"]):
            # Each Tag.N names a tag to list: a tag matching any of them is listed.
            if not tags or any(key == k and (v is None or value == v) for k, v in tags):
                counts[(key, value)] = counts.get((key, value), 0) + 1
    return [{"TagKey": key, "TagValue": value, "ResourceTypeCount": {"Disk": count, "Instance": 0, "Image": 0,
                                                                      "Snapshot": 0, "Securitygroup": 0}}
            for (key, value), count in counts.items()]


def modify_disk_spec(backend: EcsBackend, db, disk_id: str, category: str | None, level: str | None) -> dict:
    """Change a disk's category and/or performance level; the change is done when the
    call answers, and its task is already Finished."""
    now = backend.clock()
    disk = backend.disk(db, disk_id)
    backend.faults.check_zones([disk["zone"]])
    status = backend.disk_status(disk, backend.attachments(db, disk_id), now)
    if status not in ("Available", "In_use"):
        raise EcsError("InvalidStatus.DiskNotReady", f"Disk {disk_id} is {status}.")
    new_category = category or disk["category"]
    spec = catalog.CATEGORIES.get(new_category)
    if spec is None or new_category not in backend.config.zones[disk["zone"]]:
        raise EcsError("InvalidDiskCategory.NotSupported", f"The disk category {new_category!r} is not sold in "
                       f"zone {disk['zone']}.")
    new_level = level or (disk["performance_level"] if spec.performance_levels else None)
    if spec.performance_levels:
        new_level = new_level or "PL1"
        if new_level not in spec.performance_levels:
            raise EcsError("InvalidPerformanceLevel.Malformed", f"PerformanceLevel {new_level!r} is not one of "
                           f"{', '.join(spec.performance_levels)}.")
    elif level:
        raise EcsError("InvalidPerformanceLevel.Malformed", f"PerformanceLevel applies to cloud_essd only, not "
                       f"{new_category}.")
    if (new_category, new_level) == (disk["category"], disk["performance_level"]):
        raise EcsError("NoChangeInDiskCategoryAndPerformanceLevel")
    if disk["size"] < spec.min_size_for(new_level):
        raise EcsError("OperationDenied.PerformanceLevelNotMatch", f"Disk {disk_id} has {disk['size']} GiB; "
                       f"{new_category} {new_level or ''} needs at least {spec.min_size_for(new_level)} GiB.")
    db.execute("UPDATE disks SET category = ?, performance_level = ? WHERE disk_id = ?",
               (new_category, new_level, disk_id))
    task_id = new_id("t-")
    db.execute("INSERT INTO tasks (task_id, action, resource_id, status, created, finished) VALUES (?, ?, ?, ?, ?, ?)",
               (task_id, "ModifyDiskSpec", disk_id, "Finished", now, now))
    return {"TaskId": task_id, "OrderId": ""}


def describe_tasks(backend: EcsBackend, db, region: str, task_ids: tuple[str, ...] | None,
                   resource_ids: tuple[str, ...] | None, action: str | None, status: str | None) -> list[dict]:
    backend.check_region(region)
    if status is not None and status not in TASK_STATUSES:
        raise EcsError("InvalidParameter", f"TaskStatus must be one of {', '.join(TASK_STATUSES)}, got {status!r}.")
    sql, args = "SELECT * FROM tasks WHERE 1=1", []
    for column, values in (("task_id", task_ids), ("resource_id", resource_ids)):
        if values is not None:
            sql += f" AND {column} IN ({','.join('?' * len(values))})"
            args += list(values)
    if action:
        sql, args = sql + " AND action = ?", args + [action]
    if status:
        sql, args = sql + " AND status = ?", args + [status]
    return [{"TaskId": r["task_id"], "TaskAction": r["action"], "TaskStatus": r["status"], "SupportCancel": "false",
             "ResourceId": r["resource_id"], "CreationTime": iso(r["created"]),
             "FinishedTime": iso(r["finished"]) if r["finished"] is not None else ""}
            for r in db.execute(sql + " ORDER BY created DESC, task_id", args)]


def describe_instance_history_events(backend: EcsBackend, region: str) -> list[dict]:
    """The fake ECS schedules no system events (maintenance, retirement): the list is
    empty, for instances it knows. ECS answers an empty list for unknown ids too."""
    backend.check_region(region)
    return []
