"""The shipped experiments are valid for Chaos Toolkit, call functions that exist with
arguments those functions take, undo in their rollbacks whatever their method breaks, and
their journals are read strictly."""

from __future__ import annotations

import importlib
import json
import os
import inspect
from datetime import datetime, timedelta, timezone

import pytest
from chaoslib.exceptions import InterruptExecution
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

from zoneproof_chaos import control, running

EXPERIMENTS = running.experiments()
# What a method may break, and the rollback function that must be there to mend it.
MENDED_BY = {"power_off": "restore_power", "set_out_of_service": "clear_out_of_service",
             "drain_nodes": "uncordon_node", "inject_cloud_fault": "clear_cloud_faults"}


def activities(experiment: dict) -> list[dict]:
    hypothesis = (experiment.get("steady-state-hypothesis") or {}).get("probes", [])
    return [*hypothesis, *experiment["method"], *experiment.get("rollbacks", [])]


def test_there_are_experiments_for_every_fault_the_suite_promises():
    assert {p.stem for p in EXPERIMENTS} >= {"pod-delete", "node-drain", "zone-drain", "zone-loss",
                                             "partial-zone-loss", "cloud-faults"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_is_valid_for_chaos_toolkit(path):
    ensure_experiment_is_valid(load_experiment(str(path)))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_activity_calls_a_function_with_arguments_it_takes(path):
    for activity in activities(load_experiment(str(path))):
        provider = activity["provider"]
        func = getattr(importlib.import_module(provider["module"]), provider["func"], None)
        assert func is not None, f"{activity['name']!r}: no {provider['module']}.{provider['func']}"
        params = inspect.signature(func).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = set(provider.get("arguments", {})) - set(params)
        assert takes_any or not unknown, f"{activity['name']!r}: {provider['func']} takes no {sorted(unknown)}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_restores_what_it_breaks_and_cleans_up(path):
    experiment = load_experiment(str(path))
    assert experiment["runtime"]["rollbacks"]["strategy"] == "always"
    assert [c["provider"]["module"] for c in experiment["controls"]] == ["zoneproof_chaos.control"]
    broken = {a["provider"]["func"] for a in experiment["method"]} & MENDED_BY.keys()
    mended = {a["provider"]["func"] for a in experiment.get("rollbacks", [])}
    assert {MENDED_BY[f] for f in broken} <= mended, f"rollbacks {sorted(mended)} do not undo {sorted(broken)}"
    assert any(a["name"].startswith(running.RECOVERY_PREFIX) for a in experiment["method"]), \
        "no recovery probe: the run would measure nothing"


def stamp(seconds: float) -> str:
    return (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)).isoformat()


def entry(name: str, kind: str, start: float, end: float, output=None, status="succeeded") -> dict:
    return {"activity": {"name": name, "type": kind}, "status": status, "start": stamp(start), "end": stamp(end),
            "output": output, "exception": ["Traceback ...\n", "ActivityFailed: pods on the wrong node\n"]
            if status == "failed" else None}


def journal(**changes) -> dict:
    base = {"status": "completed", "deviated": False, "start": stamp(0), "duration": 30.0,
            "steady_states": {"before": {"steady_state_met": True}, "after": {"steady_state_met": True}},
            "run": [entry("power off", "action", 1, 14, {"not_ready_after_s": 13.0}),
                    entry("recovery: placed", "probe", 14, 20, {"settled_at": datetime(
                        2026, 1, 1, tzinfo=timezone.utc).timestamp() + 19.5})],
            "rollbacks": [entry("power on every node", "action", 21, 22)]}
    base.update(changes)
    return base


def test_a_clean_journal_has_no_problems():
    assert running.problems(journal()) == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"status": "interrupted"}, "ended 'interrupted'"),
    ({"deviated": True}, "deviated"),
    ({"steady_states": {"before": {"steady_state_met": False}, "after": None}}, "not met before"),
    ({"run": [entry("recovery: placed", "probe", 1, 2, status="failed")]}, "pods on the wrong node"),
    ({"rollbacks": [entry("power on every node", "action", 1, 2, status="failed")]}, "rollback 'power on"),
    ({running.DATA_PROBLEMS: ["pod web-1: volume disk-ssd-web-1 holds 'web-1 b', but 'web-1 a' was written"]},
     "data: pod web-1"),
])
def test_journal_problems_are_named(changes, expected):
    found = running.problems(journal(**changes))
    assert any(expected in p for p in found), found


def test_recovery_is_timed_from_the_start_of_the_action_before_the_probe():
    measured = running.metrics(journal())
    assert measured == {"power off (NotReady after)": 13.0, "recovery: placed": 18.5, "wall time": 30.0}
    assert running.recovery_seconds(measured) == 18.5


def test_a_failed_method_activity_interrupts_the_experiment_but_not_a_rollback():
    failed = {"status": "failed", "exception": ["ActivityFailed: no\n"]}
    control.before_method_control(context={})
    with pytest.raises(InterruptExecution, match="'drain' failed"):
        control.after_activity_control(context={"name": "drain"}, state=failed)
    control.after_activity_control(context={"name": "drain"}, state={"status": "succeeded"})
    control.after_method_control(context={})
    control.after_activity_control(context={"name": "power on every node"}, state=failed)  # rollback: carry on


def test_ctrl_c_during_an_experiment_plays_the_rollbacks_then_stops_the_caller(tmp_path):
    """Chaos Toolkit catches Ctrl-C itself; the run still has to stop after the rollbacks."""
    mended = tmp_path / "mended"
    experiment = {
        "title": "interrupted", "description": "SIGINT in the method",
        "method": [{"type": "action", "name": "Ctrl-C", "provider": {
            "type": "process", "path": "kill", "arguments": f"-INT {os.getpid()}"}, "pauses": {"after": 2}},
            {"type": "action", "name": "never reached", "provider": {
                "type": "process", "path": "touch", "arguments": str(tmp_path / "reached")}}],
        "rollbacks": [{"type": "action", "name": "mend", "provider": {
            "type": "process", "path": "touch", "arguments": str(mended)}}],
    }
    path = tmp_path / "interrupted.json"
    path.write_text(json.dumps(experiment))
    with pytest.raises(KeyboardInterrupt, match="SIGINT during interrupted.json"):
        running.run(path, {})
    assert mended.exists() and not (tmp_path / "reached").exists()


def test_cli_lists_the_experiments_and_names_an_unknown_one():
    from click.testing import CliRunner

    from zoneproof.cli import main

    listed = CliRunner().invoke(main, ["chaos", "list"])
    assert listed.exit_code == 0
    assert {line.split()[0] for line in listed.output.splitlines()} == {p.stem for p in EXPERIMENTS}
    unknown = CliRunner().invoke(main, ["chaos", "run", "zone-los"])
    assert unknown.exit_code == 2 and "no experiment 'zone-los'; known: cloud-faults" in unknown.output
