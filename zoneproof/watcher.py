"""Records every change to a test's Pods, claims, Events and to all PVs and
VolumeAttachments, plus the fake ECS audit log, while a test runs; then looks for
violations that may have come and gone: a cross-zone attach attempt in ECS, or a pod
Running for a moment on a node outside its volume's zone. The end state alone would
hide both.

Each kind is listed once, then watched from the list's resourceVersion; every watch request
resumes from the last resourceVersion seen (bookmarks included), so nothing is lost between
two requests. A history that may have lost changes (a stream that broke for good, a
resourceVersion that expired) or saw no change of a kind its test makes says so in
``problems()``.

Waits of a test can wake on the watcher (``wait_for(..., wake=watcher)``): a change seen is
the moment to look again, so a wait ends when what it waits for happens, not at its next
polling interval."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ProtocolError

from zoneproof import labels
from zoneproof.ecs.admin import EcsAdmin
from zoneproof.obstacles import obstacles
from zoneproof.oracle import pv_zone

log = logging.getLogger(__name__)

# Server-side length of one watch request; the next resumes where it ended. stop() cuts
# the requests, so this is not how long it waits.
WATCH_SECONDS = 2
# Seconds a stream may fail without receiving anything before it counts as broken for good.
BROKEN_AFTER = 30.0
HTTP_GONE = 410
# Answers of a loaded API server that pass: too many requests, a watch cache that has not
# caught up with the resourceVersion yet (504 "Too large resource version"), a restart.
PASSING_STATUSES = (429, 500, 502, 503, 504)


def describe(err: BaseException) -> str:
    """An error as people read it (ApiException's repr names neither status nor reason)."""
    if isinstance(err, ApiException):
        return f"HTTP {err.status} {err.reason or ''}".strip()
    return repr(err)


@dataclass
class Change:
    at: float
    kind: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict


COMMENTARY = ("Event",)  # kinds watched to explain what happened, not to judge it


@dataclass
class History:
    changes: list[Change] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # streams that failed for good, and why
    gaps: list[str] = field(default_factory=list)  # where changes may have been lost
    # Where Events may have been lost: they explain (a wait's obstacles, a refusal) but no
    # verdict is built on them, so a long test whose quiet Event watch expired still vouches.
    commentary_gaps: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def problems(self, expected: tuple[str, ...] = ("Pod",)) -> list[str]:
        """Why this history cannot vouch for what happened: a watcher that lost changes, or
        saw no change of a kind the test makes (``expected``), proves nothing."""
        found = [f"watch of {b}" for b in self.broken] + [f"changes may be lost: {g}" for g in self.gaps]
        found += [f"the watcher saw no {kind} change" for kind in expected if not self.count(kind)]
        return found


class Watcher:
    def __init__(self, api: client.ApiClient, namespace: str, ecs: EcsAdmin | None, *, nodes: bool = False):
        """``ecs``: the fake ECS's admin API, whose audit log shows refused calls; None
        against a real cloud, which keeps no such log (Kubernetes is watched all the same).
        ``nodes``: also watch every Node (readiness and taints, for chaos timelines)."""
        self.api, self.namespace, self.ecs, self.nodes = api, namespace, ecs, nodes
        self.history = History()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seen = 0  # changes recorded so far, for waits woken by them
        self._streams_open: dict[str, watch.Watch] = {}
        self._threads: list[threading.Thread] = []
        self._audit_after = 0

    def _streams(self):
        core, storage = client.CoreV1Api(self.api), client.StorageV1Api(self.api)
        ns = self.namespace
        streams = {
            "Pod": (core.list_namespaced_pod, (ns,)),
            "PersistentVolumeClaim": (core.list_namespaced_persistent_volume_claim, (ns,)),
            "Event": (core.list_namespaced_event, (ns,)),
            "PersistentVolume": (core.list_persistent_volume, ()),
            "VolumeAttachment": (storage.list_volume_attachment, ()),
        }
        if self.nodes:
            streams["Node"] = (core.list_node, ())
        return streams

    def _record(self, kind: str, type_: str, obj: dict) -> None:
        with self._changed:
            self.history.changes.append(Change(time.time(), kind, type_, obj))
            self._seen += 1
            self._changed.notify_all()

    def changes_seen(self) -> int:
        """How many changes were recorded so far: pass it to :meth:`wait_for_change`."""
        with self._lock:
            return self._seen

    def wait_for_change(self, after: int, timeout: float) -> None:
        """Return once more than ``after`` changes were recorded, or after ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: self._seen > after or self._stop.is_set(), timeout=timeout)

    def _open(self, kind: str) -> watch.Watch | None:
        """A watch stream for ``kind`` that stop() can cut; None once stop() was called."""
        stream = watch.Watch()
        with self._lock:
            if self._stop.is_set():
                return None
            self._streams_open[kind] = stream
        return stream

    def _list(self, kind: str, list_fn, args) -> str:
        """Record what exists now (as ADDED); return the list's resourceVersion."""
        listing = list_fn(*args)
        plain = self.api.sanitize_for_serialization
        for item in listing.items:
            self._record(kind, "ADDED", plain(item))
        return listing.metadata.resource_version

    def _follow(self, kind: str, list_fn, args, version: str) -> None:
        try:
            failures, failing_since = 0, None
            while not self._stop.is_set():
                stream = self._open(kind)
                if stream is None:
                    return
                try:
                    for event in stream.stream(list_fn, *args, resource_version=version, allow_watch_bookmarks=True,
                                               timeout_seconds=WATCH_SECONDS):
                        failures, failing_since = 0, None  # the stream works
                        raw = event["raw_object"]
                        version = raw["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self._record(kind, event["type"], raw)
                        if self._stop.is_set():
                            stream.stop()
                    failures, failing_since = 0, None
                except ApiException as err:
                    if err.status == HTTP_GONE:
                        # Too old to resume from: list again, and say what may be lost.
                        with self._lock:
                            gaps = self.history.commentary_gaps if kind in COMMENTARY else self.history.gaps
                            gaps.append(f"{kind} after resourceVersion {version} (expired; listed again)")
                        version = self._list(kind, list_fn, args)
                        continue
                    if err.status not in PASSING_STATUSES:
                        raise
                    failures, failing_since = self._interrupted(kind, err, version, failures, failing_since)
                except (OSError, ValueError, ProtocolError) as err:
                    if self._stop.is_set():
                        return  # stop() cut the stream
                    failures, failing_since = self._interrupted(kind, err, version, failures, failing_since)
        except BaseException as err:  # noqa: BLE001 - kept for History.problems(), which fails the test
            if self._stop.is_set():
                return  # the connection went down with stop(): nothing was being missed
            log.error("watch of %s broke for good: %s", kind, describe(err))
            with self._lock:
                self.history.broken.append(f"{kind} broke: {describe(err)}")

    def _interrupted(self, kind: str, err: BaseException, version: str, failures: int,
                     failing_since: float | None) -> tuple[int, float]:
        """Back off before resuming; raise once the stream has failed for BROKEN_AFTER
        seconds without receiving anything."""
        now = time.monotonic()
        failing_since = now if failing_since is None else failing_since
        if now - failing_since >= BROKEN_AFTER:
            raise err
        log.info("watch of %s interrupted (%s); resuming from resourceVersion %s", kind, describe(err), version)
        self._stop.wait(min(0.2 * 2 ** failures, 5.0))
        return failures + 1, failing_since

    def start(self) -> "Watcher":
        audit = self.ecs.audit() if self.ecs else []
        self._audit_after = audit[-1]["seq"] if audit else 0
        # Listed before start() returns, so whatever the test does next is watched.
        streams = self._streams()
        versions = {kind: self._list(kind, list_fn, args) for kind, (list_fn, args) in streams.items()}
        for kind, (list_fn, args) in streams.items():
            thread = threading.Thread(target=self._follow, args=(kind, list_fn, args, versions[kind]), daemon=True,
                                      name=f"watch-{kind}")
            thread.start()
            self._threads.append(thread)
        return self

    def changes_so_far(self) -> list[Change]:
        """A copy of the changes recorded so far, safe while the watch runs."""
        with self._lock:
            return list(self.history.changes)

    def audit_so_far(self) -> list[dict]:
        """The ECS calls since start() (empty against a real cloud)."""
        return self.ecs.audit(after=self._audit_after) if self.ecs else []

    def versions(self, kind: str, name: str) -> list[dict]:
        """Every version of one object of the namespace recorded so far, in order; safe
        while the watch runs, for tests that reason about what came before what."""
        with self._lock:
            return [c.obj for c in self.history.changes if c.kind == kind and c.obj["metadata"]["name"] == name]

    def obstacles(self) -> list[str]:
        """What stands in the way of the test's waits now, as far as the watch saw
        (zoneproof.obstacles): pass it to a wait as ``explain``."""
        return obstacles(self.changes_so_far(), self.namespace)

    def stop(self) -> History:
        """End the watch at once: open streams are cut rather than left to run out, so call
        it once the test's own waits have seen what it made happen."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            # Cut again while a thread lives: a stream still connecting at the first cut
            # has no socket to shut down until its response arrives.
            while thread.is_alive() and time.monotonic() < deadline:
                with self._lock:
                    streams = list(self._streams_open.values())
                for stream in streams:
                    stream.stop()  # shuts the socket down, which ends a read blocked on it
                thread.join(timeout=0.1)
        self.history.audit = self.audit_so_far()
        return self.history


def transient_violations(history: History, node_zones: dict[str, str], disks: set[str] | None = None) -> list[str]:
    """Violations seen at any moment of the history (not only at its end); ``disks`` limits
    the ECS audit to the disks of the test when other tests share the service. A node's
    zone is the one its Node had at that moment where the history watched Nodes (a node
    made again under its name may be another machine in another zone), else ``node_zones``
    (the zones at the end)."""
    problems = []
    for entry in history.audit:
        if disks is not None and entry["disk_id"] not in disks:
            continue
        if entry["action"] == "AttachDisk" and entry["disk_zone"] and entry["instance_zone"] \
                and entry["disk_zone"] != entry["instance_zone"]:
            problems.append(f"cross-zone attach attempt: disk {entry['disk_id']} ({entry['disk_zone']}) to "
                            f"{entry['instance_id']} ({entry['instance_zone']}), answered {entry['code']}")
    pv_zones: dict[str, str] = {}
    claim_volumes: dict[str, str] = {}
    zones_then = dict(node_zones)
    seen = set()
    for change in sorted(history.changes, key=lambda c: c.at):
        obj = change.obj
        if change.kind == "Node" and change.type != "DELETED":
            zones_then[obj["metadata"]["name"]] = (obj["metadata"].get("labels") or {}).get(labels.ZONE, "")
        elif change.kind == "PersistentVolume" and change.type != "DELETED":
            zone, _ = pv_zone(obj)
            if zone:
                pv_zones[obj["metadata"]["name"]] = zone
        elif change.kind == "PersistentVolumeClaim" and change.type != "DELETED":
            volume = (obj.get("spec") or {}).get("volumeName")
            if volume:
                claim_volumes[obj["metadata"]["name"]] = volume
        elif change.kind == "Pod" and change.type != "DELETED":
            node = (obj.get("spec") or {}).get("nodeName")
            if not node or (obj.get("status") or {}).get("phase") != "Running":
                continue
            for volume in (obj.get("spec") or {}).get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                zone = pv_zones.get(claim_volumes.get(claim, ""))
                if zone and zones_then.get(node) and zone != zones_then[node]:
                    key = (obj["metadata"]["name"], node, claim)
                    if key not in seen:
                        seen.add(key)
                        problems.append(f"pod {obj['metadata']['name']} Running on {node} ({zones_then[node]}) "
                                        f"while its claim {claim} is bound to a volume in {zone}")
    return problems


def node_zones(api: client.ApiClient) -> dict[str, str]:
    return {n.metadata.name: (n.metadata.labels or {}).get(labels.ZONE, "")
            for n in client.CoreV1Api(api).list_node().items}
