"""Waits end close to when their condition came true, not a whole interval later."""

import threading
import time

from zoneproof.waiting import FIRST_INTERVAL, WaitTimeout, wait_for


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


class Counter:
    """Changes as a watcher counts them, made by the test."""

    def __init__(self):
        self.seen = 0
        self.changed = threading.Condition()

    def changes_seen(self) -> int:
        with self.changed:
            return self.seen

    def wait_for_change(self, after: int, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.seen > after, timeout=timeout)

    def change(self) -> None:
        with self.changed:
            self.seen += 1
            self.changed.notify_all()


def test_a_wait_with_wake_looks_again_at_the_change_not_at_its_next_poll():
    changes, came_true = Counter(), []

    def make_it_true():
        came_true.append(time.monotonic())
        changes.change()

    def check():
        # By the sixth look the polling pause has grown to 1.6 s; the change comes 0.2 s in.
        if len(asked) == 5:
            threading.Timer(0.2, make_it_true).start()
        asked.append(time.monotonic())
        return bool(came_true), f"asked {len(asked)} times"

    asked: list[float] = []
    wait_for(check, what="the change", timeout=60, interval=30, wake=changes)
    assert came_true and asked[-1] - came_true[0] < 0.8, (asked, came_true)


def test_a_wait_that_times_out_says_what_stands_in_the_way():
    def never():
        return False, "web-0@-:Pending"

    try:
        wait_for(never, what="1 Running pod", timeout=0.2, explain=lambda: ["claim data-web-0 Pending: boom"])
    except WaitTimeout as err:
        assert "last seen: web-0@-:Pending" in str(err)
        assert str(err).endswith("in the way:\n  - claim data-web-0 Pending: boom"), str(err)
    else:
        raise AssertionError("the wait did not time out")
