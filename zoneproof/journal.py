"""Time in a Chaos Toolkit journal: its stamps in epoch seconds, and the span of each probe
that waited for the workload to settle (``zoneproof_chaos.probes.placement_settled``), from
the start of the action before it to the moment it saw every pod placed. The chaos metrics
and the report's timelines both read recoveries from here, so they measure them alike."""

from __future__ import annotations

from datetime import datetime, timezone

RECOVERY_PREFIX = "recovery"  # probes named so measure fault -> every pod back in its disk's zone


def epoch(stamp: str) -> float:
    """A journal stamp (chaoslib writes naive UTC ISO times) in epoch seconds; 0 for none."""
    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp() if stamp else 0.0


def settle_spans(journal: dict) -> list[tuple[dict, float, float]]:
    """(journal entry, start of the action before it, settled at) for each probe of the
    method that waited for the workload to settle, in the order they ran."""
    spans = []
    last_action_start = epoch(journal.get("start", ""))
    for entry in journal.get("run") or []:
        output = entry.get("output")
        if isinstance(output, dict) and "settled_at" in output:
            spans.append((entry, last_action_start, output["settled_at"]))
        if entry["activity"].get("type") == "action":
            last_action_start = epoch(entry.get("start", ""))
    return spans
