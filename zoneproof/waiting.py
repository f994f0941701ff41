"""Waits with progress for people watching and a clear message on time-out.

Every wait in zoneproof goes through here, on top of tenacity, so each one logs what
it is waiting for while it waits and says what it last saw when it gives up. A wait given
something that sees changes as they happen (``wake``, a test's watcher) looks again at
each change; otherwise, and for what no watch sees, it polls."""

from __future__ import annotations

import logging
import time
from typing import Callable, Protocol, TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_INTERVAL = 0.05  # seconds before the first look again; doubling up to a wait's interval
# Looks woken by changes come at most this often: a burst of changes (every pod of a
# StatefulSet at once) costs a few looks, not one each.
LEAST_GAP = 0.1


class WaitTimeout(TimeoutError):
    """A condition did not hold in time; the message says what was last seen."""


class Changes(Protocol):
    """What a wait can wake on: a count of changes seen, and a way to wait for the next
    (zoneproof.watcher.Watcher is one)."""

    def changes_seen(self) -> int: ...

    def wait_for_change(self, after: int, timeout: float) -> None: ...


def wait_for(
    check: Callable[[], tuple[bool, T]],
    *,
    what: str,
    timeout: float,
    interval: float = 0.5,
    progress_every: float = 10.0,
    wake: Changes | None = None,
    explain: Callable[[], list[str]] | None = None,
) -> T:
    """Call ``check`` until it returns ``(True, value)``; return ``value``.

    ``check`` returns ``(done, state)``; ``state`` is what gets reported while waiting
    and in the time-out message, so make it readable (e.g. "2/3 nodes Ready"). With
    ``wake``, ``check`` runs again as soon as a change is seen, and at the latest after
    ``interval``. ``explain`` says, on time-out, what stands in the way (one line each).
    """
    started = time.monotonic()
    last_report = started
    last_state: list = [None]
    changes_before = [0]  # changes seen before the last check, which the next one must follow
    checked_at = [started]

    def attempt() -> bool:
        if wake is not None:
            changes_before[0] = wake.changes_seen()
        checked_at[0] = time.monotonic()
        done, state = check()
        last_state[0] = state
        return done

    def report(retry_state) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report >= progress_every:
            last_report = now
            log.info("waiting for %s (%.0fs): %s", what, now - started, last_state[0])

    def pause(seconds: float) -> None:
        if wake is None:
            time.sleep(seconds)
            return
        # A change seen since the last check began ends the pause, no sooner than LEAST_GAP
        # after that check.
        wake.wait_for_change(changes_before[0], seconds)
        time.sleep(max(0.0, checked_at[0] + min(LEAST_GAP, seconds) - time.monotonic()))

    # Most conditions hold within moments of being asked: look again soon, then less
    # often, up to ``interval``, so a wait ends close to when its condition came true.
    retrying = Retrying(
        retry=retry_if_result(lambda done: not done),
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=FIRST_INTERVAL, max=interval),
        before_sleep=report,
        sleep=pause,
    )
    try:
        retrying(attempt)
    except RetryError as err:
        message = f"timed out after {timeout:g}s waiting for {what}; last seen: {last_state[0]}"
        in_the_way = explain() if explain else []
        if in_the_way:
            message += "\nin the way:\n" + "\n".join(f"  - {line}" for line in in_the_way)
        raise WaitTimeout(message) from err
    return last_state[0]


def hold_for(
    check: Callable[[], tuple[bool, T]],
    *,
    what: str,
    duration: float,
    interval: float = 0.5,
) -> T:
    """Assert that ``check`` keeps returning ``(True, state)`` for ``duration`` seconds.

    The opposite of :func:`wait_for`: used to prove that something does *not* happen
    (a Terminating pod is not finalized, a Pending pod is not attached elsewhere)."""
    deadline = time.monotonic() + duration
    state = None
    while True:
        ok, state = check()
        if not ok:
            raise AssertionError(f"expected {what} to hold for {duration:g}s, but it broke: {state}")
        if time.monotonic() >= deadline:
            return state
        time.sleep(interval)
