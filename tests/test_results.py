"""A run's results directory: what a run clears, where its processes add records, and the
records read back as they went in."""

from __future__ import annotations

import os
import subprocess
import sys

from zoneproof import results
from zoneproof.results import Results


def test_a_new_run_clears_what_an_earlier_one_left(tmp_path):
    earlier = Results(tmp_path)
    for stale in (earlier.verdicts_file, earlier.chaos_file, earlier.environment_file, earlier.junit("serial")):
        stale.write_text("{}\n")
    (earlier.driver_logs / "shared").mkdir(parents=True)
    kept = tmp_path / "history.jsonl"  # the trend's history outlives runs
    kept.write_text("{}\n")
    earlier.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl"]


def test_records_of_parallel_processes_come_back_whole_and_in_order(tmp_path):
    run = Results(tmp_path)
    run.clear()
    code = ("import sys; from zoneproof import results\n"
            "for n in range(200): results.add_verdict({'worker': sys.argv[1], 'n': n, 'pad': 'x' * 3000})")
    env = dict(os.environ, **run.env())
    workers = [subprocess.Popen([sys.executable, "-c", code, str(w)], env=env) for w in range(3)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    found = run.verdicts()
    assert len(found) == 600
    for worker in ("0", "1", "2"):
        assert [r["n"] for r in found if r["worker"] == worker] == list(range(200))


def test_nothing_is_recorded_outside_a_run(tmp_path, monkeypatch):
    monkeypatch.delenv(results.CHAOS_ENV, raising=False)
    results.add_chaos({"experiment": "zone-loss"})
    monkeypatch.setenv(results.CHAOS_ENV, str(tmp_path / results.CHAOS_FILE))
    results.add_chaos({"experiment": "zone-loss"})
    assert Results(tmp_path).chaos() == [{"experiment": "zone-loss"}]
    Results(tmp_path).write_environment({"provider": "local"})
    assert Results(tmp_path).environment() == {"provider": "local"}
