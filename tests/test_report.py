"""The report's parts on runs written here: zone maps that turn red where placement is
wrong, chaos timelines built from a watcher history and a journal, the trend's tolerance,
and a page built from a reports directory (the browser test renders a real run's)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from zoneproof import report
from zoneproof.report import page, timeline, trends, zonemap
from zoneproof.report.run import ReportError, read

SVG = "{http://www.w3.org/2000/svg}"


def volume(claim, disk, zone, attached=("i-1",)):
    return {"claim": claim, "pv": f"pv-{claim}", "disk": disk, "pv_zone": zone, "disk_zone": zone,
            "attached_to": list(attached), "attached_nodes": []}


def pod(name, node, node_zone, volumes, *, phase="Running", state="placed", problems=()):
    return {"namespace": "ns", "pod": name, "phase": phase, "node": node, "node_zone": node_zone, "state": state,
            "terminating": False, "volumes": volumes, "problems": list(problems), "lasting": []}


NODES = {"a-0": {"zone": "zone-a", "schedulable": True}, "b-0": {"zone": "zone-b", "schedulable": True}}


def shapes(svg: str, cls: str) -> list[ET.Element]:
    return [e for e in ET.fromstring(svg).iter() if cls in (e.get("class") or "").split()]


def test_a_placement_in_its_zones_has_no_red_line():
    verdict = {"nodes": NODES, "pods": [pod("web-0", "a-0", "zone-a", [volume("www-web-0", "d-1", "zone-a")]),
                                        pod("web-1", "b-0", "zone-b", [volume("www-web-1", "d-2", "zone-b")])]}
    svg = zonemap.zone_map(verdict)
    assert [z.get("data-zone") for z in shapes(svg, "zone")] == ["zone-a", "zone-b"]
    assert len(shapes(svg, "pod")) == 2 and len(shapes(svg, "link")) == 2
    assert not shapes(svg, "bad")


def test_a_disk_in_another_zone_than_its_pod_is_drawn_red_in_its_own_zone():
    verdict = {"nodes": NODES, "pods": [pod("web-0", "a-0", "zone-a", [volume("www-web-0", "d-9", "zone-b")],
                                            state="violation", problems=["pod runs on a-0 in zone-a but disk d-9 "
                                                                         "is in zone-b"])]}
    svg = zonemap.zone_map(verdict)
    (disk,) = shapes(svg, "disk")
    zone_b = next(z for z in shapes(svg, "zone") if z.get("data-zone") == "zone-b")
    assert float(zone_b.get("x")) <= float(disk.get("x")) <= float(zone_b.get("x")) + float(zone_b.get("width"))
    assert disk.get("data-bad") == "True" and disk.get("stroke") == zonemap.RED
    assert shapes(svg, "bad"), "the pod-to-disk line is not red"
    assert "disk in zone-b, pod in zone-a" in svg  # the line says why
    assert shapes(svg, "pod")[0].get("stroke") == zonemap.RED


def test_a_pod_waiting_for_its_lost_zone_is_grey_and_its_detached_disk_not_red():
    nodes = {**NODES, "b-0": {"zone": "zone-b", "schedulable": False}}
    verdict = {"nodes": nodes, "pods": [pod("web-1", "", "", [volume("www-web-1", "d-2", "zone-b", attached=())],
                                            phase="Pending", state="waiting")]}
    svg = zonemap.zone_map(verdict)
    assert shapes(svg, "pod")[0].get("stroke") == zonemap.GREY
    assert not shapes(svg, "bad")
    assert any("(down)" in (t.text or "") for t in ET.fromstring(svg).iter(f"{SVG}text"))


def test_a_running_pod_whose_disk_is_attached_nowhere_is_red():
    verdict = {"nodes": NODES, "pods": [pod("web-0", "a-0", "zone-a", [volume("www-web-0", "d-1", "zone-a",
                                                                             attached=())])]}
    assert shapes(zonemap.zone_map(verdict), "bad")


def change(at, kind, name, type_="MODIFIED", **obj):
    return SimpleNamespace(at=at, kind=kind, type=type_, obj={"metadata": {"name": name, **obj.pop("meta", {})},
                                                               **obj})


def node_obj(at, name, zone, ready, taints=()):
    return change(at, "Node", name, meta={"labels": {"topology.kubernetes.io/zone": zone,
                                                     "alibabacloud.com/ecs-instance-id": f"i-{name}"}},
                  spec={"taints": [{"key": t, "effect": "NoExecute"} for t in taints]},
                  status={"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]})


def pod_obj(at, name, phase, node="", type_="MODIFIED"):
    return change(at, "Pod", name, type_, spec={"nodeName": node}, status={"phase": phase})


JOURNAL = {
    "start": "2026-01-01T00:00:00", "end": "2026-01-01T00:01:40",
    "run": [
        {"activity": {"type": "action", "name": "power off"}, "start": "2026-01-01T00:00:10",
         "end": "2026-01-01T00:00:11"},
        {"activity": {"type": "action", "name": "power on"}, "start": "2026-01-01T00:01:00",
         "end": "2026-01-01T00:01:01"},
        {"activity": {"type": "probe", "name": "recovery: every pod placed"}, "start": "2026-01-01T00:01:01",
         "end": "2026-01-01T00:01:25", "output": {"settled_at": 1767225685.0}},  # 00:01:25
    ],
    "rollbacks": [],
}
T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_a_timeline_marks_nodes_down_force_detaches_and_the_recovery():
    changes = [pod_obj(T0 + 1, "web-0", "Running", "a-0"), node_obj(T0 + 1, "a-0", "zone-a", True),
               node_obj(T0 + 25, "a-0", "zone-a", False), node_obj(T0 + 30, "a-0", "zone-a", False,
                                                                   ["node.kubernetes.io/out-of-service"]),
               pod_obj(T0 + 31, "web-0", "Pending"), node_obj(T0 + 70, "a-0", "zone-a", True),
               pod_obj(T0 + 84, "web-0", "Running", "a-0")]
    audit = [{"action": "DetachDisk", "code": "OK", "at": T0 + 35, "disk_id": "d-1", "instance_id": "i-a-0"},
             {"action": "AttachDisk", "code": "OK", "at": T0 + 80, "disk_id": "d-1", "instance_id": "i-a-0"}]
    built = timeline.build("zone-loss", JOURNAL, changes, audit)
    assert built["duration"] == 100
    assert built["pods"]["web-0"] == [[1, "Running", "a-0"], [31, "Pending", ""], [84, "Running", "a-0"]]
    assert [s[1] for s in built["nodes"]["a-0"]["states"]] == [True, False, False, True]
    assert built["detaches"] == [{"at": 35, "disk": "d-1", "node": "a-0", "forced": True}]
    assert built["recoveries"] == [{"name": "recovery: every pod placed", "from": 60, "to": 85}]
    assert [a["name"] for a in built["actions"]] == ["power off", "power on"]
    svg = timeline.draw(built)
    assert len(shapes(svg, "recovery")) == 1 and len(shapes(svg, "detach")) == 1
    assert "recovery 25.0s" in svg and "force-detach of d-1" in svg


def test_a_detach_from_a_ready_node_is_not_a_force_detach():
    changes = [node_obj(T0 + 1, "a-0", "zone-a", True)]
    audit = [{"action": "DetachDisk", "code": "OK", "at": T0 + 35, "disk_id": "d-1", "instance_id": "i-a-0"}]
    assert timeline.build("drain", JOURNAL, changes, audit)["detaches"][0]["forced"] is False


def run_entry(started, seconds, *, case_seconds=20.0, outcome="passed", recovery=30.0, provider="local"):
    return {"started": started, "provider": provider, "profile": "reference", "seconds": seconds,
            "cases": {"test_placement.py::case": {"outcome": outcome, "seconds": case_seconds}},
            "recovery": {"zone-loss": recovery}}


def test_a_case_slower_than_its_tolerance_is_flagged_and_one_within_it_is_not():
    history = [run_entry(f"2026-01-0{i}", 300) for i in range(1, 4)]
    slow = run_entry("2026-01-05", 300, case_seconds=20 * 1.5 + 10.5, recovery=30 * 1.25 + 5.5)
    assert [(r.what, r.name) for r in trends.regressions([*history, slow], slow)] == [
        ("duration", "test_placement.py::case"), ("recovery", "zone-loss")]
    within = run_entry("2026-01-05", 300, case_seconds=29.0, recovery=36.0)  # +45 %, +20 %
    assert trends.regressions([*history, within], within) == []
    short = [run_entry(f"2026-01-0{i}", 300, case_seconds=2.0) for i in range(1, 4)]
    noisy = run_entry("2026-01-05", 300, case_seconds=9.0)  # +350 % but only 7 s
    assert trends.regressions([*short, noisy], noisy) == []


def test_a_trend_compares_only_passed_runs_of_the_same_provider():
    history = [run_entry("2026-01-01", 900, case_seconds=80.0, provider="kind"),
               run_entry("2026-01-02", 300, case_seconds=200.0, outcome="failed")]
    entry = run_entry("2026-01-03", 300, case_seconds=70.0)
    assert trends.regressions([*history, entry], entry) == []  # no passed local run before it
    assert trends.comparable([*history, entry], entry) == [history[1]]


JUNIT = """<testsuites><testsuite name="pytest">
<testcase classname="zoneproof.suites.test_placement" name="test_pods_follow_their_disks[static-zone-labels-2zones-3replicas]" time="12.5"/>
<testcase classname="zoneproof.suites.test_placement" name="test_pods_follow_their_disks[wait-for-first-consumer-3zones-6replicas]" time="20.0"><failure message="AssertionError: pod runs on a-0 in zone-a but disk d-9 is in zone-b">trace</failure></testcase>
<testcase classname="zoneproof.suites.test_placement_negative" name="test_other" time="1.0"><skipped message="needs 3 zones"/></testcase>
</testsuite></testsuites>"""


def reports_dir(tmp_path, *, started="2026-01-01T00:00:00+00:00"):
    (tmp_path / "junit-parallel.xml").write_text(JUNIT)
    good = {"nodes": NODES, "pods": [pod("web-0", "a-0", "zone-a", [volume("www-web-0", "d-1", "zone-a")])]}
    bad = {"nodes": NODES, "pods": [pod("web-0", "a-0", "zone-a", [volume("www-web-0", "d-9", "zone-b")],
                                        problems=["pod runs on a-0 in zone-a but disk d-9 is in zone-b"])]}
    lines = [{"counts": {"verdicts": 1, "pods checked": 1, "violations": 0}, "at": T0, "verdict": good,
              "test": "test_placement.py::test_pods_follow_their_disks[static-zone-labels-2zones-3replicas]"},
             {"counts": {"verdicts": 1, "pods checked": 1, "violations": 1}, "at": T0, "verdict": bad,
              "test": "test_placement.py::test_pods_follow_their_disks[wait-for-first-consumer-3zones-6replicas]"}]
    (tmp_path / "placement-verdicts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    tags = [{"test": "test_placement.py::test_pods_follow_their_disks[static-zone-labels-2zones-3replicas]",
             "tags": {"matrix": {"scheme": "static-zone-labels", "zones": 2, "replicas": 3}}},
            {"test": "test_placement.py::test_pods_follow_their_disks[wait-for-first-consumer-3zones-6replicas]",
             "tags": {"matrix": {"scheme": "wait-for-first-consumer", "zones": 3, "replicas": 6}}}]
    (tmp_path / "case-tags.jsonl").write_text("".join(json.dumps(x) + "\n" for x in tags))
    (tmp_path / "environment.json").write_text(json.dumps({"started": started, "provider": "local",
                                                           "profile": "reference", "seconds": 100.0}))
    return tmp_path


def test_a_run_is_read_back_with_its_verdicts_and_matrix(tmp_path):
    run = read(reports_dir(tmp_path))
    assert [c.outcome for c in run.cases] == ["passed", "failed", "skipped"]
    assert not run.ok
    schemes, columns, cells = run.matrix()
    assert schemes == ["static-zone-labels", "wait-for-first-consumer"] and columns == [(2, 3), (3, 6)]
    assert cells[("wait-for-first-consumer", 3, 6)].message.startswith("AssertionError: pod runs on a-0")
    assert [len(c.verdicts) for c in run.cases] == [1, 1, 0]


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(ReportError, match="no JUnit results"):
        read(tmp_path)


def test_the_page_shows_the_verdict_the_matrix_and_a_red_zone_map(tmp_path):
    built = report.build(reports_dir(tmp_path), with_allure=False)
    html = built.page.read_text()
    assert "FAILED: 1 of 3 scenarios failed" in html
    failed = read(tmp_path).cases[1]
    assert f'href="#{failed.anchor}"' in html and f'id="{failed.anchor}"' in html
    assert html.count('class="zone-map"') == 2 and 'data-bad="True"' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/", "")


def test_a_second_build_of_one_run_counts_it_once_and_a_second_run_shows_the_first(tmp_path):
    reports_dir(tmp_path)
    report.build(tmp_path, with_allure=False)
    report.build(tmp_path, with_allure=False)
    assert len(trends.load(tmp_path)) == 1
    reports_dir(tmp_path, started="2026-01-02T00:00:00+00:00")
    built = report.build(tmp_path, with_allure=False)
    assert len(trends.load(tmp_path)) == 2
    assert built.page.read_text().count('<tr class="trend-run">') == 2  # both runs in the trend table
    assert page.CHAOS_CASE.format("x") == "test_chaos.py::test_experiment[x]"


def test_a_node_of_no_zone_has_no_row():
    control_plane = change(T0 + 1, "Node", "control-plane", meta={"labels": {}},
                           status={"conditions": [{"type": "Ready", "status": "True"}]})
    built = timeline.build("pod-delete", JOURNAL, [control_plane, node_obj(T0 + 1, "a-0", "zone-a", True)], [])
    assert list(built["nodes"]) == ["a-0"]
