"""The zone map of one placement verdict, as SVG: a column per zone, the zone's nodes in it,
pods on their nodes, each disk beside its pod in the disk's own zone, and a line from pod
to disk. A disk in another zone than its pod's node, a pod in violation, and a disk not
attached to a running pod are red, so a bad placement shows before anything is read.

Drawn with drawsvg (a small, pure-Python SVG library): the layout is our own (columns,
rows, lines between them), which no chart type of a plotting library expresses, and
drawsvg escapes every text and attribute we put in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import drawsvg as dw

RED, GREEN, AMBER, GREY, INK = "#c62828", "#2e7d32", "#ef8f00", "#8a8a8a", "#222222"
COL_W, GAP, MARGIN, HEADER = 330, 14, 10, 30
NODE_X, NODE_W = 8, 150  # node box within its zone column
DISK_X, DISK_W = 184, 140  # disk lane within its zone column (room for an ECS disk id)
ROW_H, NODE_TITLE = 24, 18
LEGEND_H = 40
LEGEND_W = 760  # the legend's length: narrower maps are widened to it


@dataclass
class _Box:
    x: float
    y: float
    w: float
    h: float = ROW_H - 4


@dataclass
class _Column:
    x: float
    y: float = HEADER + 6  # next free height
    disks_below: list = field(default_factory=list)  # disks placed after the nodes (no pod of theirs here)


def _pod_colour(pod: dict) -> str:
    if pod["problems"]:
        return RED
    return {"placed": GREEN, "waiting": GREY}.get(pod["state"], AMBER)


def _volume_bad(pod: dict, volume: dict) -> str:
    """Why the line from a pod to this disk is red ("" when it is not)."""
    if pod["node_zone"] and volume["disk_zone"] and pod["node_zone"] != volume["disk_zone"]:
        return f"disk in {volume['disk_zone']}, pod in {pod['node_zone']}"
    if pod["node"] and pod["phase"] == "Running" and volume["disk"] and not volume["attached_to"]:
        return "pod Running, disk attached nowhere"
    if not pod["node"] and volume["attached_to"]:
        return f"pod on no node, disk attached to {', '.join(volume['attached_to'])}"
    if volume["disk"] and any(volume["disk"] in problem for problem in pod["problems"]):
        return "; ".join(p for p in pod["problems"] if volume["disk"] in p)
    return ""


def zones_of(verdict: dict) -> list[str]:
    zones = {n["zone"] for n in verdict["nodes"].values() if n["zone"]}
    zones |= {v["disk_zone"] for p in verdict["pods"] for v in p["volumes"] if v["disk_zone"]}
    return sorted(zones)


def zone_map(verdict: dict, *, title: str = "") -> str:
    """``verdict``: an oracle Verdict as plain data (dataclasses.asdict). Returns the SVG."""
    zones = zones_of(verdict)
    if not zones:
        zones = [""]
    columns = {z: _Column(MARGIN + i * (COL_W + GAP)) for i, z in enumerate(zones)}
    shapes: list = []  # drawn after the layout, lines last so they sit on top
    lines: list = []
    pods_on: dict[str, list[dict]] = {}
    unscheduled: list[dict] = []
    for pod in verdict["pods"]:
        (pods_on.setdefault(pod["node"], []) if pod["node"] in verdict["nodes"] else unscheduled).append(pod)
    pod_boxes: dict[tuple[str, str], _Box] = {}
    volume_rows: dict[tuple[str, str], tuple[str, float]] = {}  # (pod, claim) -> (disk zone, y of its row)

    def place_pods(col: _Column, pods: list[dict]) -> None:
        for pod in pods:
            rows = max(1, len(pod["volumes"]))
            box = _Box(col.x + NODE_X + 8, col.y, NODE_W - 16, rows * ROW_H - 4)
            pod_boxes[(pod["namespace"], pod["pod"])] = box
            for i, volume in enumerate(pod["volumes"] or [{"claim": ""}]):
                zone = volume.get("disk_zone") or volume.get("pv_zone") or ""
                if volume.get("claim"):
                    volume_rows[(pod["pod"], volume["claim"])] = (zone, col.y + i * ROW_H)
            col.y += rows * ROW_H

    for name in sorted(verdict["nodes"]):
        node = verdict["nodes"][name]
        col = columns.get(node["zone"]) or columns[zones[0]]
        top = col.y
        col.y += NODE_TITLE + 4
        place_pods(col, sorted(pods_on.get(name, []), key=lambda p: p["pod"]))
        col.y = max(col.y, top + NODE_TITLE + ROW_H + 4) + 6
        shapes.append(("node", name, node, _Box(col.x + NODE_X, top, NODE_W, col.y - top - 4)))
        col.y += 4
    for pod in unscheduled:
        zone = next((v["pv_zone"] or v["disk_zone"] for v in pod["volumes"] if v["pv_zone"] or v["disk_zone"]),
                    zones[0])
        col = columns.get(zone) or columns[zones[0]]
        if not any(s[0] == "unscheduled" and s[1] is col for s in shapes):
            shapes.append(("unscheduled", col, None, _Box(col.x + NODE_X, col.y, NODE_W, NODE_TITLE)))
            col.y += NODE_TITLE + 2
        place_pods(col, [pod])

    # Disks: beside their pod when in the same column, else below that zone's nodes.
    disk_boxes: list[tuple[dict, dict, _Box, float]] = []  # pod, volume, disk box, y of the pod's row
    for pod in verdict["pods"]:
        for volume in pod["volumes"]:
            zone, row_y = volume_rows[(pod["pod"], volume["claim"])]
            col = columns.get(zone)
            if col is None:  # a claim not provisioned yet: no disk to draw
                continue
            y = row_y
            if col.x != pod_boxes[(pod["namespace"], pod["pod"])].x - NODE_X - 8:
                y = col.y
                col.y += ROW_H
            disk_boxes.append((pod, volume, _Box(col.x + DISK_X, y, DISK_W), row_y))

    height = max(c.y for c in columns.values()) + 10 + LEGEND_H
    width = max(MARGIN * 2 + len(zones) * COL_W + (len(zones) - 1) * GAP, LEGEND_W)
    drawing = dw.Drawing(width, height, font_family="sans-serif", font_size=11, class_="zone-map")
    if title:
        drawing.append_title(title)
    for zone, col in columns.items():
        drawing.append(dw.Rectangle(col.x, 4, COL_W, height - LEGEND_H - 8, fill="#f4f6f8", stroke="#c9d1d9",
                                    rx=4, class_="zone", data_zone=zone))
        drawing.append(dw.Text(zone or "(no zone)", 13, col.x + 8, 22, font_weight="bold", fill=INK))
    for kind, key, node, box in shapes:
        if kind == "node":
            usable = node["schedulable"]
            rect = dw.Rectangle(box.x, box.y, box.w, box.h, fill="#ffffff" if usable else "#e6e6e6",
                                stroke="#7a8794", stroke_dasharray="" if usable else "4 3", rx=3, class_="node")
            rect.append_title(f"node {key} in {node['zone'] or 'no zone'}"
                              + ("" if usable else " (not schedulable: NotReady, tainted or cordoned)"))
            drawing.append(rect)
            drawing.append(dw.Text(key if usable else f"{key} (down)", 10, box.x + 5, box.y + 13, fill="#444"))
        else:
            drawing.append(dw.Text("on no node:", 10, box.x + 5, box.y + 13, fill="#444", font_style="italic"))
    for (namespace, name), box in pod_boxes.items():
        pod = next(p for p in verdict["pods"] if p["pod"] == name and p["namespace"] == namespace)
        colour = _pod_colour(pod)
        rect = dw.Rectangle(box.x, box.y, box.w, box.h, fill=colour, fill_opacity=0.18, stroke=colour,
                            stroke_width=1.5, rx=3, class_="pod", data_pod=name, data_ok=str(not pod["problems"]))
        rect.append_title("\n".join([f"pod {name}: {pod['phase']} on {pod['node'] or 'no node'} "
                                     f"({pod['node_zone'] or 'no zone'}), {pod['state']}", *pod["problems"]]))
        drawing.append(rect)
        drawing.append(dw.Text(name, 11, box.x + 5, box.y + 14, fill=INK))
    for pod, volume, box, row_y in disk_boxes:
        bad = _volume_bad(pod, volume)
        attached = bool(volume["attached_to"])
        colour = RED if bad else ("#1f5f99" if attached else GREY)
        rect = dw.Rectangle(box.x, box.y, box.w, box.h, fill="#ffffff", stroke=colour, stroke_width=1.5,
                            stroke_dasharray="" if attached else "4 3", rx=8, class_="disk",
                            data_disk=volume["disk"], data_bad=str(bool(bad)))
        rect.append_title(f"disk {volume['disk']} ({volume['claim']}) in {volume['disk_zone']}; PV zone "
                          f"{volume['pv_zone'] or '-'}; attached to {', '.join(volume['attached_to']) or 'nothing'}"
                          + (f"\n{bad}" if bad else ""))
        drawing.append(rect)
        drawing.append(dw.Text(volume["disk"] or volume["claim"], 10, box.x + 6, box.y + 14, fill=INK))
        pod_box = pod_boxes[(pod["namespace"], pod["pod"])]
        start_x = pod_box.x + pod_box.w if box.x > pod_box.x else pod_box.x
        end_x = box.x if box.x > pod_box.x else box.x + box.w
        line = dw.Line(start_x, row_y + box.h / 2, end_x, box.y + box.h / 2,
                       stroke=RED if bad else ("#1f5f99" if attached else GREY), stroke_width=2 if bad else 1.2,
                       stroke_dasharray="" if attached else "4 3", class_="link" + (" bad" if bad else ""))
        if bad:
            line.append_title(bad)
        lines.append(line)
    for line in lines:
        drawing.append(line)
    _legend(drawing, height - LEGEND_H + 8)
    return drawing.as_svg()


def _legend(drawing: dw.Drawing, y: float) -> None:
    x = MARGIN
    for colour, text, dashed in ((GREEN, "pod placed", False), (AMBER, "pod pending", False),
                                 (GREY, "pod waiting for its zone", False), (RED, "violation / cross-zone", False),
                                 ("#1f5f99", "disk attached", False), (GREY, "disk not attached", True)):
        drawing.append(dw.Rectangle(x, y, 14, 12, fill=colour, fill_opacity=0.25, stroke=colour,
                                    stroke_dasharray="3 2" if dashed else ""))
        drawing.append(dw.Text(text, 10, x + 18, y + 10, fill="#444"))
        x += 26 + 6 * len(text)
