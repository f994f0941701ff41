"""Polling waits with progress for people watching and a clear message on time-out.

Every wait in zoneproof goes through here, on top of tenacity, so each one logs what
it is waiting for while it waits and says what it last saw when it gives up."""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_INTERVAL = 0.05  # seconds before the first look again; doubling up to a wait's interval


class WaitTimeout(TimeoutError):
    """A condition did not hold in time; the message says what was last seen."""


def wait_for(
    check: Callable[[], tuple[bool, T]],
    *,
    what: str,
    timeout: float,
    interval: float = 0.5,
    progress_every: float = 10.0,
) -> T:
    """Poll ``check`` until it returns ``(True, value)``; return ``value``.

    ``check`` returns ``(done, state)``; ``state`` is what gets reported while waiting
    and in the time-out message, so make it readable (e.g. "2/3 nodes Ready").
    """
    started = time.monotonic()
    last_report = started
    last_state: list = [None]

    def attempt() -> bool:
        done, state = check()
        last_state[0] = state
        return done

    def report(retry_state) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report >= progress_every:
            last_report = now
            log.info("waiting for %s (%.0fs): %s", what, now - started, last_state[0])

    # Most conditions hold within moments of being asked: look again soon, then less
    # often, up to ``interval``, so a wait ends close to when its condition came true.
    retrying = Retrying(
        retry=retry_if_result(lambda done: not done),
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=FIRST_INTERVAL, max=interval),
        before_sleep=report,
    )
    try:
        retrying(attempt)
    except RetryError as err:
        raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last seen: {last_state[0]}") from err
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
