"""Waits end close to when their condition came true, not a whole interval later."""

import time

from zoneproof.waiting import FIRST_INTERVAL, wait_for


def test_a_wait_looks_again_soon_then_less_often():
    asked = []

    def check():
        asked.append(time.monotonic())
        return len(asked) == 4, f"asked {len(asked)} times"

    assert wait_for(check, what="the fourth look", timeout=60, interval=10) == "asked 4 times"
    gaps = [later - earlier for earlier, later in zip(asked, asked[1:])]
    # 50 ms, then 100, then 200: with a fixed interval each gap would be 10 s.
    assert len(gaps) == 3 and sum(gaps) < 10, gaps
    assert gaps[0] >= FIRST_INTERVAL and gaps[2] > gaps[0], gaps
