"""The timeline of one chaos experiment: what every pod and node went through while the
fault lasted, from the watcher's history of the run, the experiment's journal and the fake
ECS's audit log. ``build`` turns those into plain data (kept with the run's records);
``draw`` turns that into SVG: one row per pod (upper band its phase, lower band its node's
zone), one row per node (Ready or not, tainted or not), the method's actions as shaded
bands, every disk detach as a tick (a force-detach when its node was down), and each
recovery drawn as an arrow from the fault to the moment every pod was placed again.
"""

from __future__ import annotations

import drawsvg as dw

from zoneproof import labels
from zoneproof.cluster.nodes import instance_of
from zoneproof.journal import RECOVERY_PREFIX, epoch, settle_spans

PHASE_COLOURS = {"Running": "#2e7d32", "Pending": "#ef8f00", "Terminating": "#8a8a8a", "Succeeded": "#5b7fa6",
                 "Failed": "#c62828", "Unknown": "#c62828"}
ZONE_COLOURS = ("#4e79a7", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7", "#bab0ac")
LABEL_W, PLOT_W, ROW_H = 190, 760, 20
RECOVERY_ROW = 16  # each recovery arrow gets a row of its own above the plot
RECOVERY = "#6a1b9a"


def _pod_state(change) -> str:
    if change.type == "DELETED":
        return ""
    if (change.obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return (change.obj.get("status") or {}).get("phase") or "Pending"


def _node_state(obj: dict) -> tuple[bool, list[str]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = sorted({t["key"] for t in (obj.get("spec") or {}).get("taints") or []
                     if t.get("effect") in ("NoExecute", "NoSchedule")})
    return ready, taints


def build(experiment: str, journal: dict, changes: list, audit: list[dict]) -> dict:
    """The timeline's data, times in seconds from the experiment's start. ``changes``: the
    watcher's history (Pods of the namespace and all Nodes); ``audit``: ECS calls."""
    t0, t1 = epoch(journal.get("start", "")), epoch(journal.get("end", ""))
    rel = lambda t: round(max(0.0, t - t0), 2)  # noqa: E731 - a unit conversion
    pods: dict[str, list] = {}
    nodes: dict[str, dict] = {}
    instances: dict[str, str] = {}  # ECS instance -> node
    for change in sorted(changes, key=lambda c: c.at):
        name = change.obj["metadata"]["name"]
        if change.kind == "Pod":
            node = (change.obj.get("spec") or {}).get("nodeName") or ""
            step = [rel(change.at), _pod_state(change), node]
            if not pods.get(name) or pods[name][-1][1:] != step[1:]:
                pods.setdefault(name, []).append(step)
        elif change.kind == "Node" and change.type != "DELETED":
            node_labels = change.obj["metadata"].get("labels") or {}
            if not node_labels.get(labels.ZONE):
                continue  # a node of no zone (kind's control plane) holds no disk
            entry = nodes.setdefault(name, {"zone": node_labels[labels.ZONE], "states": []})
            instances[instance_of(change.obj, required=False)] = name
            ready, taints = _node_state(change.obj)
            if not entry["states"] or entry["states"][-1][1:] != [ready, taints]:
                entry["states"].append([rel(change.at), ready, taints])
    actions = [{"name": entry["activity"]["name"], "start": rel(epoch(entry.get("start", ""))),
                "end": rel(epoch(entry.get("end", ""))), "rollback": section == "rollbacks"}
               for section in ("run", "rollbacks") for entry in journal.get(section) or []
               if entry["activity"].get("type") == "action"]
    recoveries = [{"name": entry["activity"]["name"], "from": rel(start), "to": rel(end)}
                  for entry, start, end in settle_spans(journal)
                  if entry["activity"]["name"].startswith(RECOVERY_PREFIX)]
    detaches = []
    for call in audit:
        if call["action"] == "DetachDisk" and call["code"] == "OK" and call["at"] <= t1:
            node = instances.get(call["instance_id"] or "", "")
            detaches.append({"at": rel(call["at"]), "disk": call["disk_id"], "node": node,
                             "forced": bool(node) and not _ready_at(nodes[node]["states"], rel(call["at"]))})
    return {"experiment": experiment, "duration": round(max(t1 - t0, 0.0), 2), "pods": pods, "nodes": nodes,
            "actions": actions, "recoveries": recoveries, "detaches": detaches}


def _ready_at(states: list, at: float) -> bool:
    ready = True
    for when, is_ready, _ in states:
        if when > at:
            break
        ready = is_ready
    return ready


def _segments(steps: list, end: float):
    """(start, stop, *values) for each step, until the next one or ``end``."""
    for i, (start, *values) in enumerate(steps):
        stop = steps[i + 1][0] if i + 1 < len(steps) else end
        if stop > start:
            yield start, stop, *values


def _tick_every(duration: float) -> int:
    return next((t for t in (5, 10, 20, 30, 60, 120, 300) if duration / t <= 12), 600)


def draw(timeline: dict) -> str:
    duration = max(timeline["duration"], 1.0)
    zones = sorted({n["zone"] for n in timeline["nodes"].values()})
    zone_colour = {z: ZONE_COLOURS[i % len(ZONE_COLOURS)] for i, z in enumerate(zones)}
    node_zone = {name: n["zone"] for name, n in timeline["nodes"].items()}
    rows = len(timeline["pods"]) + len(timeline["nodes"]) + 1
    top = 34 + RECOVERY_ROW * len(timeline["recoveries"])
    height = top + rows * ROW_H + 30 + 18 * (len(timeline["actions"]) + 2)
    width = LABEL_W + PLOT_W + 100  # room for the last recovery label
    x = lambda t: LABEL_W + PLOT_W * min(t, duration) / duration  # noqa: E731 - a scale
    drawing = dw.Drawing(width, height, font_family="sans-serif", font_size=11, class_="chaos-timeline")
    drawing.append_title(f"{timeline['experiment']}: pods and nodes over time")
    plot_bottom = top + rows * ROW_H
    # The method's actions (and rollbacks) as numbered bands behind everything.
    for n, action in enumerate(timeline["actions"], 1):
        x0, x1 = x(action["start"]), max(x(action["end"]), x(action["start"]) + 2)
        drawing.append(dw.Rectangle(x0, top - 14, x1 - x0, plot_bottom - top + 14,
                                    fill="#9e9e9e" if action["rollback"] else "#ffb74d", fill_opacity=0.35,
                                    class_="action"))
        drawing.append(dw.Text(str(n), 10, x0 + 1, top - 4, fill="#5d4037"))
    # Time axis.
    step = _tick_every(duration)
    for t in range(0, int(duration) + 1, step):
        drawing.append(dw.Line(x(t), top - 2, x(t), plot_bottom, stroke="#e0e0e0"))
        drawing.append(dw.Text(f"{t}s", 9, x(t) - 6, plot_bottom + 12, fill="#666"))
    y = top
    for pod, steps in sorted(timeline["pods"].items()):
        drawing.append(dw.Text(pod, 11, 8, y + 14, fill="#222"))
        for start, stop, phase, node in _segments(steps, duration):
            if not phase:
                continue  # deleted: nothing to draw until the next pod of that name
            zone = node_zone.get(node, "")
            band = dw.Rectangle(x(start), y + 3, x(stop) - x(start), 8, fill=PHASE_COLOURS.get(phase, "#c62828"),
                                class_="pod-phase")
            band.append_title(f"{pod}: {phase} on {node or 'no node'} ({zone or 'no zone'}), "
                              f"{start:.1f}s to {stop:.1f}s")
            drawing.append(band)
            if zone:
                drawing.append(dw.Rectangle(x(start), y + 11, x(stop) - x(start), 5, fill=zone_colour[zone]))
        y += ROW_H
    y += ROW_H / 2
    for name, node in sorted(timeline["nodes"].items()):
        drawing.append(dw.Text(name, 10, 8, y + 14, fill="#444"))
        drawing.append(dw.Rectangle(LABEL_W - 14, y + 4, 8, 12, fill=zone_colour[node["zone"]]))
        for start, stop, ready, taints in _segments(node["states"], duration):
            band = dw.Rectangle(x(start), y + 4, x(stop) - x(start), 8, fill="#a5d6a7" if ready else "#c62828",
                                class_="node-state")
            band.append_title(f"{name}: {'Ready' if ready else 'NotReady'}"
                              + (f", tainted {', '.join(taints)}" if taints else "")
                              + f", {start:.1f}s to {stop:.1f}s")
            drawing.append(band)
            if taints:
                drawing.append(dw.Rectangle(x(start), y + 13, x(stop) - x(start), 4, fill="#ff6f00"))
        for detach in (d for d in timeline["detaches"] if d["node"] == name):
            tick = dw.Line(x(detach["at"]), y + 1, x(detach["at"]), y + 19, stroke="#000", stroke_width=2,
                           class_="detach")
            tick.append_title(f"{'force-' if detach['forced'] else ''}detach of {detach['disk']} at "
                              f"{detach['at']:.1f}s")
            drawing.append(tick)
        y += ROW_H
    # Recoveries: an arrow from the fault to every pod placed again, labelled with its length.
    for n, recovery in enumerate(timeline["recoveries"]):
        x0, x1 = x(recovery["from"]), x(recovery["to"])
        seconds = recovery["to"] - recovery["from"]
        level = top - 20 - RECOVERY_ROW * (len(timeline["recoveries"]) - 1 - n)
        arrow = dw.Line(x0, level, x1, level, stroke=RECOVERY, stroke_width=2, class_="recovery")
        arrow.append_title(f"{recovery['name']}: {seconds:.1f}s")
        drawing.append(arrow)
        drawing.append(dw.Lines(x1 - 5, level - 4, x1, level, x1 - 5, level + 4, fill=RECOVERY, close=True))
        drawing.append(dw.Line(x0, level - 5, x0, level + 5, stroke=RECOVERY, stroke_width=2))
        drawing.append(dw.Text(f"recovery {seconds:.1f}s", 10, x1 + 6, level + 4, fill=RECOVERY,
                               font_weight="bold"))
    # Key: the actions by number, then the colours.
    y = plot_bottom + 30
    for n, action in enumerate(timeline["actions"], 1):
        drawing.append(dw.Text(f"{n}. {'rollback: ' if action['rollback'] else ''}{action['name']} "
                               f"({action['start']:.1f}s to {action['end']:.1f}s)", 10, 8, y, fill="#5d4037"))
        y += 18
    key = [(c, p) for p, c in PHASE_COLOURS.items() if p in ("Running", "Pending", "Terminating")]
    key += [(zone_colour[z], z) for z in zones] + [("#c62828", "node NotReady"), ("#ff6f00", "node tainted")]
    kx = 8
    for colour, text in key:
        drawing.append(dw.Rectangle(kx, y, 12, 10, fill=colour))
        drawing.append(dw.Text(text, 10, kx + 16, y + 9, fill="#444"))
        kx += 24 + 6 * len(text)
    drawing.append(dw.Text("| detach (force-detach when its node was down)", 10, kx, y + 9, fill="#444"))
    return drawing.as_svg()
