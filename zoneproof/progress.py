"""Progress of long steps for people watching: a line when a step starts, a line with the
elapsed time (and, when the step can tell, how far along it is) every half minute while it
runs, and one when it ends."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

log = logging.getLogger("zoneproof.progress")

TICK_SECONDS = 30.0


@contextmanager
def step(what: str, *, tick: float = TICK_SECONDS, status: Callable[[], str] | None = None) -> Iterator[None]:
    """``status``: how far along the step is, in words, asked at every tick."""
    started = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(tick):
            log.info("… %s (%s elapsed%s)", what, _clock(time.monotonic() - started),
                     f"; {status()}" if status else "")

    log.info("▶ %s", what)
    thread = threading.Thread(target=ticker, name=f"progress: {what[:40]}", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        log.info("✗ %s failed after %s", what, _clock(time.monotonic() - started))
        raise
    finally:
        done.set()
        thread.join()
    log.info("✓ %s (%s)", what, _clock(time.monotonic() - started))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
