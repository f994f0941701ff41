"""``reports/kill-matrix.html``: the kill matrix of a ``make mutants`` run as a page, bugs
down and cases across, each cell coloured by what it proves (a case that failed with its
bug on caught it; one that passed let it through; the clean run must pass everywhere).
Self-contained, like the run's page."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from zoneproof import bugs as bug_catalogue
from zoneproof.report.page import TEMPLATES

KILLING = ("failure", "error")


def render(matrix: dict) -> str:
    runs = [{**matrix["clean"], "bug": "(no bug)", "clean": True}]
    runs += [{**run, "clean": False} for run in matrix["bugs"]]
    cases = list(dict.fromkeys(r["case"] for run in runs for r in run["results"]))
    rows = []
    for run in runs:
        by_case = {r["case"]: r for r in run["results"]}
        cells = []
        for case in cases:
            result = by_case.get(case)
            if result is None:
                cells.append({"text": "", "class": "skipped", "title": "the bug does not name this case"})
                continue
            killed = result["outcome"] in KILLING
            good = (not killed and result["outcome"] == "passed") if run["clean"] else killed
            text = ("failed" if killed else result["outcome"]) if run["clean"] else ("caught" if killed else
                                                                                     result["outcome"])
            cells.append({"text": text, "class": "passed" if good else "failed", "title": result["first_line"]})
        known = bug_catalogue.BY_NAME.get(run["bug"])
        rows.append({"bug": run["bug"], "layer": run["layer"], "seconds": run["seconds"], "cells": cells,
                     "effect": known.effect if known else "every case the catalogue names, with no bug on",
                     "ok": all(c["class"] != "failed" for c in cells) if run["clean"] else run.get("caught", False)})
    clean_ok = rows[0]["ok"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("kill-matrix.html.j2").render(
        rows=rows, cases=cases, seconds=matrix["seconds"], survivors=matrix["survivors"],
        caught=len(matrix["bugs"]) - len(matrix["survivors"]), total=len(matrix["bugs"]), clean_ok=clean_ok)


def write(matrix_json: Path) -> Path:
    page = matrix_json.with_suffix(".html")
    page.write_text(render(json.loads(matrix_json.read_text())))
    return page
