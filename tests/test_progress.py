"""Long steps say how far along they are while people wait."""

import threading

from zoneproof.progress import step


def test_a_step_reports_its_status_at_every_tick(caplog):
    asked = threading.Event()
    calls = []

    def status():
        calls.append(1)
        if len(calls) == 2:
            asked.set()
        return f"{len(calls)} of 9 packages compiled"

    with caplog.at_level("INFO", logger="zoneproof.progress"):
        with step("go build of hello", tick=0.01, status=status):
            assert asked.wait(10), "the step never asked how far along it was"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "▶ go build of hello"
    assert any(line.startswith("… go build of hello (") and line.endswith("; 2 of 9 packages compiled)")
               for line in lines), lines
    assert lines[-1].startswith("✓ go build of hello")
