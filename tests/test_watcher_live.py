"""The watcher against a real API server: it resumes every watch from the last
resourceVersion, so changes made while a stream was down are not lost; and its history says
when it cannot vouch for what happened (a stream broken for good, no Pod change seen)."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ProtocolError

from zoneproof import watcher as watcher_module
from zoneproof.waiting import wait_for
from zoneproof.watcher import Watcher
from zoneproof.workloads import pod_with_claims

pytestmark = pytest.mark.cluster

CHANGES = 6


def labelled(history, name: str) -> set[str]:
    return {(c.obj["metadata"].get("labels") or {}).get("step", "") for c in history.changes
            if c.kind == "Pod" and c.obj["metadata"]["name"] == name}


def test_changes_made_while_a_stream_was_down_are_not_lost(cluster, namespace, monkeypatch):
    real_stream = watch.Watch.stream

    def one_event_then_drop(self, func, *args, **kwargs):
        for event in real_stream(self, func, *args, **kwargs):
            yield event
            raise ProtocolError("connection dropped by the test")  # after every single event

    monkeypatch.setattr(watch.Watch, "stream", one_event_then_drop)
    w = Watcher(cluster.api_client, namespace, None).start()
    try:
        cluster.core.create_namespaced_pod(namespace, pod_with_claims("app", []))
        for step in range(CHANGES):  # faster than the watcher reconnects
            cluster.core.patch_namespaced_pod("app", namespace, {"metadata": {"labels": {"step": str(step)}}})
        wait_for(lambda: (str(CHANGES - 1) in labelled(w.history, "app"), sorted(labelled(w.history, "app"))),
                 what="the last change to reach the watcher", timeout=30)
    finally:
        history = w.stop()
    assert {str(n) for n in range(CHANGES)} <= labelled(history, "app"), "a change was lost between two streams"
    assert history.problems() == []


def test_a_stream_that_breaks_for_good_is_a_problem(cluster, namespace, monkeypatch):
    def always_down(self, func, *args, **kwargs):
        raise ProtocolError("the API server is unreachable")
        yield  # a generator, as the real one

    monkeypatch.setattr(watch.Watch, "stream", always_down)
    monkeypatch.setattr(watcher_module, "BROKEN_AFTER", 2.0)
    w = Watcher(cluster.api_client, namespace, None).start()
    cluster.core.create_namespaced_pod(namespace, pod_with_claims("app", []))
    wait_for(lambda: (len(w.history.broken) == 5, w.history.broken), what="every stream to give up", timeout=30)
    problems = w.stop().problems()
    assert any("Pod broke" in p for p in problems), problems


def test_answers_of_a_loaded_api_server_are_waited_out(cluster, namespace, monkeypatch):
    """A watch cache behind the resourceVersion answers 504 for a while (as kind's API
    server does under load): the stream resumes and loses nothing."""
    real_stream = watch.Watch.stream
    refusals = {"left": 4 * 5}  # about four refusals for each of the five streams
    lock = threading.Lock()

    def behind_then_caught_up(self, func, *args, **kwargs):
        with lock:
            refuse = refusals["left"] > 0
            refusals["left"] -= refuse
        if refuse:
            raise ApiException(status=504, reason="Too large resource version")
        yield from real_stream(self, func, *args, **kwargs)

    monkeypatch.setattr(watch.Watch, "stream", behind_then_caught_up)
    w = Watcher(cluster.api_client, namespace, None).start()
    try:
        cluster.core.create_namespaced_pod(namespace, pod_with_claims("app", []))
        wait_for(lambda: (w.history.count("Pod") > 0, w.history.count("Pod")), what="the pod's change", timeout=30)
    finally:
        history = w.stop()
    assert refusals["left"] == 0
    assert history.problems() == []


def test_a_history_without_a_pod_change_is_a_problem(cluster, namespace):
    history = Watcher(cluster.api_client, namespace, None).start().stop()
    assert history.problems() == ["the watcher saw no Pod change"]


def test_stop_cuts_the_open_streams(cluster, namespace, monkeypatch):
    """stop() ends the watch at once, not when its open requests run out."""
    monkeypatch.setattr(watcher_module, "WATCH_SECONDS", 60)
    w = Watcher(cluster.api_client, namespace, None).start()
    try:
        before = w.changes_seen()
        cluster.core.create_namespaced_pod(namespace, pod_with_claims("app", []))
        wait_for(lambda: (w.changes_seen() > before, w.changes_seen()), what="the pod's change", timeout=30,
                 interval=30, wake=w)
        assert any(c.kind == "Pod" for c in w.changes_so_far())
    finally:
        asked = time.monotonic()
        history = w.stop()
        stopped_after = time.monotonic() - asked
    assert stopped_after < 3, f"stop() took {stopped_after:.1f}s with {watcher_module.WATCH_SECONDS}s watch requests"
    assert history.problems() == []
