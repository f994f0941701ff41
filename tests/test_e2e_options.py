"""`zoneproof e2e` refuses bad options before anything starts: no cluster, no driver, no
reports of a run that did not happen."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoneproof.commands.run import e2e
from zoneproof.e2e import PHASE_MARKS
from zoneproof_chaos import running


@pytest.mark.parametrize(("args", "message"), [
    (["--profile", "alibaba"], "pass --driver-binary PATH"),
    (["--zone-categories", "bogus"], "zone categories 'bogus': write ZONE=CATEGORY"),
    (["--zone-categories", "cn-beijing-a=floppy"], "unknown categories floppy"),
    (["--static-disk", "cn-beijing-q=d-1"], "--static-disk 'cn-beijing-q=d-1': write ZONE=DISK_ID"),
    (["--provider", "existing"], "--provider existing needs --kubeconfig PATH"),
    (["--kubeconfig", "kubeconfig.yaml"], "--kubeconfig and --context go with --provider existing"),
    (["--profile", "no-such-profile"], "no driver profile 'no-such-profile'"),
])
def test_bad_options_are_refused_before_anything_starts(tmp_path, monkeypatch, args, message):
    state = tmp_path / "state"
    monkeypatch.setenv("ZONEPROOF_STATE_DIR", str(state))
    run = CliRunner().invoke(e2e, ["--name", "zp-refused", "--reports", str(tmp_path / "reports"), *args])
    assert run.exit_code in (1, 2), run.output
    assert message in run.stderr, run.stderr
    assert not state.exists(), "a cluster was started for a run that was refused"
    assert not (tmp_path / "reports").exists(), "reports were touched for a run that was refused"


def test_the_summary_says_where_the_time_went():
    from zoneproof.e2e import SLOWEST, time_breakdown
    from zoneproof.report.run import Case

    cases = [Case(f"test_placement.py::test_{n}", "parallel", "passed", n) for n in range(SLOWEST + 2)]
    by_phase, slowest = time_breakdown({"bring-up": 6.1, "parallel": 120.4, "serial": 150.0}, cases)
    assert by_phase == "time by phase: bring-up 6s, parallel 120s, serial 150s"
    named = [f"test_{n} {n}s" for n in range(SLOWEST + 1, 1, -1)]
    assert slowest == "slowest scenarios: " + ", ".join(named)


def test_what_each_deployment_left_in_the_cloud_is_read_by_phase(tmp_path):
    import json

    from zoneproof import leftovers

    (tmp_path / "serial").mkdir()
    (tmp_path / "serial" / "cloud-leftovers.jsonl").write_text(
        json.dumps({"zone_policy": "round-robin", "disks": [], "stopped instances": []}) + "\n"
        + json.dumps({"zone_policy": "topology", "disks": ["d-1 (cn-beijing-a, Available)"],
                      "stopped instances": ["i-9"]}) + "\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "cloud-leftovers.jsonl").write_text(
        json.dumps({"zone_policy": "topology", "disks": [], "stopped instances": []}) + "\n"
        # a fake ECS killed before it released its disks' devices (kind)
        + json.dumps({"zone_policy": "topology", "loop devices": ["/dev/loop3"]}) + "\n")
    found = leftovers.in_cloud(tmp_path)
    assert found == {"disks": ["d-1 (cn-beijing-a, Available) (the topology deployment logged in serial/)"],
                     "stopped instances": ["i-9 (the topology deployment logged in serial/)"],
                     "loop devices": ["/dev/loop3 (the topology deployment logged in shared/)"]}
    assert leftovers.lines(found) == ["  disks: d-1 (cn-beijing-a, Available) (the topology deployment logged in serial/)",
                                      "  stopped instances: i-9 (the topology deployment logged in serial/)",
                                      "  loop devices: /dev/loop3 (the topology deployment logged in shared/)"]


def test_the_serial_phase_runs_the_chaos_experiments_and_the_tests_of_another_zone_policy_last():
    """So `zoneproof e2e`'s serial phase, one session, uses the running deployment first
    (the chaos experiments among them) and redeploys the driver once."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "zoneproof.suites", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "-m", PHASE_MARKS["serial"]],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tests = [line for line in proc.stdout.splitlines() if "::" in line]
    round_robin = [n for n, t in enumerate(tests) if "round-robin" in t or "zoneid_zones_in_turn" in t]
    assert len(round_robin) == 5 and len(tests) > 5, tests
    assert round_robin == list(range(len(tests) - 5, len(tests))), tests
    experiments = [t for t in tests if "test_chaos.py::" in t]
    assert len(experiments) == len(running.experiments()) + 1, tests  # and the Ctrl-C test


@pytest.mark.parametrize("args, rest, marks", [
    (["-k", "zone", "-m", "not disruptive"], ["-k", "zone"], "not disruptive"),
    (["-mnot serial", "-x"], ["-x"], "not serial"),
    (["-m", "a", "-m", "b"], [], "b"),
    (["--maxfail=2"], ["--maxfail=2"], ""),
])
def test_the_users_marker_expression_is_taken_apart_from_the_other_arguments(args, rest, marks):
    from zoneproof.e2e import without_marks
    assert without_marks(args) == (rest, marks)


def test_a_users_marker_expression_narrows_each_phase_instead_of_being_replaced():
    """`-m "not disruptive"` must leave the disruptive cases out of the serial phase."""
    from zoneproof.e2e import phase_marks
    serial = phase_marks("serial", "not disruptive")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "zoneproof.suites", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "-m", serial], capture_output=True, text=True, timeout=120)
    tests = [line for line in proc.stdout.splitlines() if "::" in line]
    assert tests and not [t for t in tests if "test_node_lifecycle.py" in t or "test_chaos.py" in t], tests
    assert phase_marks("serial", "") == PHASE_MARKS["serial"]


def test_the_summary_counts_outcomes_and_skip_reasons_from_the_junit_of_each_phase(tmp_path, capsys):
    from zoneproof.e2e import E2eOptions, summarise
    from zoneproof.profile import load_profile

    case = '<testcase classname="zoneproof.suites.{module}" name="{name}" time="2.0">{body}</testcase>'
    skipped = '<skipped message="Skipped: needs 4 zones; the cluster under test has 3"/>'
    (tmp_path / "junit-parallel.xml").write_text("<testsuites><testsuite>" + "".join([
        case.format(module="test_placement", name="test_a", body=""),
        case.format(module="test_placement", name="test_b", body=skipped),
        case.format(module="test_cloud_rules", name="test_c", body=skipped)]) + "</testsuite></testsuites>")
    (tmp_path / "junit-serial.xml").write_text("<testsuites><testsuite>" + case.format(
        module="test_chaos", name="test_d", body='<failure message="boom">boom</failure>') + "</testsuite></testsuites>")
    opts = E2eOptions(profile=load_profile("reference"), reports=tmp_path)
    assert summarise(opts, "local cluster 'x'", [0, 1], 10.0, {"parallel": 5.0}) == 1
    out = capsys.readouterr().out
    assert "scenarios 4 (1 passed, 1 failed, 2 skipped)" in out, out
    assert "skipped 2: needs 4 zones; the cluster under test has 3" in out, out
