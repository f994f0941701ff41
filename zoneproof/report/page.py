"""``reports/index.html``: one self-contained page per run (no script, no font, no picture
fetched at view time, so it opens from ``file://`` and as a CI artifact). The run's
verdict first; then the placement matrix coloured by outcome, each cell linking to its
case; the chaos experiments with their recovery next to the cluster's configured timings
and their timelines; the trend of the last runs; the environment; and every case with its
failure and the zone maps of its verdicts.

Rendered with Jinja2 (escaping every value; the SVG pictures, made by drawsvg, which
escapes its own text, are the only markup passed through)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import drawsvg as dw
import jinja2

from zoneproof.report import timeline, trends, zonemap
from zoneproof.report.run import Case, Run

TEMPLATES = Path(__file__).parent / "templates"
MAPS_PER_CASE = 6  # a chaos case makes dozens of verdicts; its timeline tells the story
CHAOS_CASE = "test_chaos.py::test_experiment[{}]"
OUTCOME_CLASS = {"passed": "passed", "failed": "failed", "error": "failed", "skipped": "skipped"}


def _svg_inline(svg: str) -> str:
    """An SVG document as markup for an HTML page (the XML declaration dropped)."""
    return svg.split("?>", 1)[1].strip() if svg.startswith("<?xml") else svg


def _maps(case: Case) -> tuple[list[dict], int]:
    """The verdicts of a case worth a picture: all, or for a long run the first and the last ones."""
    verdicts = case.verdicts
    if len(verdicts) <= MAPS_PER_CASE:
        return verdicts, 0
    shown = [verdicts[0], *verdicts[-(MAPS_PER_CASE - 1):]]
    return shown, len(verdicts) - len(shown)


def trend_chart(entries: list[dict]) -> str:
    """Total seconds of the last runs as bars, the latest last (red when it failed)."""
    if not entries:
        return ""
    width, height, bar, pitch = 40 + 64 * len(entries), 140, 28, 64
    top = max(e.get("seconds") or 0 for e in entries) or 1
    drawing = dw.Drawing(width, height, font_family="sans-serif", font_size=10, class_="trend-chart")
    for i, entry in enumerate(entries):
        seconds = entry.get("seconds") or 0
        h = 100 * seconds / top
        x = 30 + i * pitch
        rect = dw.Rectangle(x, 110 - h, bar, h, fill="#c62828" if entry.get("failed") else "#5b7fa6")
        rect.append_title(f"{entry.get('started', '?')}: {seconds:.0f} s, {entry.get('passed', 0)} passed, "
                          f"{entry.get('failed', 0)} failed")
        drawing.append(rect)
        drawing.append(dw.Text(f"{seconds:.0f}", 9, x + 2, 106 - h, fill="#333"))
        drawing.append(dw.Text(str(entry.get("started", ""))[5:16].replace("T", " "), 9, x - 8, 124, fill="#666"))
    drawing.append(dw.Line(28, 110, width - 4, 110, stroke="#999"))
    drawing.append(dw.Text("seconds per run", 10, 30, 138, fill="#444"))
    return drawing.as_svg()


def render(run: Run, history: list[dict], entry: dict, *, allure_report: str = "") -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    schemes, columns, cells = run.matrix()
    cases_by_id = {c.id: c for c in run.cases}
    chaos = []
    for result in run.chaos:
        case = cases_by_id.get(CHAOS_CASE.format(result["experiment"]))
        not_ready = {k: v for k, v in result["seconds"].items() if "NotReady after" in k}
        chaos.append({"experiment": result["experiment"], "recovery": result["recovery"],
                      "wall": result["seconds"].get("wall time", 0.0), "not_ready": not_ready,
                      "outcome": case.outcome if case else "unknown", "anchor": case.anchor if case else "",
                      "timeline": _svg_inline(timeline.draw(result["timeline"])) if result.get("timeline") else ""})
    details = []
    for case in run.cases:
        shown, hidden = _maps(case)
        maps = [{"at": datetime.fromtimestamp(v["at"], timezone.utc).strftime("%H:%M:%S"),
                 "pods": len(v["verdict"]["pods"]), "violations": v["counts"]["violations"],
                 "svg": _svg_inline(zonemap.zone_map(v["verdict"], title=case.id))} for v in shown]
        details.append({"case": case, "maps": maps, "hidden": hidden})
    earlier = trends.comparable(history, entry)
    template = env.get_template("index.html.j2")
    return template.render(
        run=run, env=run.environment, schemes=schemes, columns=columns, cells=cells,
        outcome_class=OUTCOME_CLASS, chaos=chaos, details=details, timings=run.environment.get("timings", {}),
        trend=[*earlier, entry], trend_svg=_svg_inline(trend_chart([*earlier, entry])),
        regressions=trends.regressions(history, entry), duration_tolerance=trends.DURATION,
        recovery_tolerance=trends.RECOVERY, allure_report=allure_report,
    )
