"""The zoneproof pytest plugin (entry point ``pytest11``): the cluster options and
fixtures, a fresh namespace per test, and the scheduling markers the suites use. Installed with the
package, so a driver's own repository runs the suites with its own pytest:

    pytest --pyargs zoneproof.suites --driver-profile my-driver.yaml
"""

from __future__ import annotations

import signal

import pytest

pytest_plugins = ["zoneproof.fixtures.cluster", "zoneproof.fixtures.driver", "zoneproof.fixtures.namespaces"]

MARKERS = {
    "serial": "redeploys the driver (another zone policy), so never runs beside other tests",
    "disruptive": "breaks nodes, zones or the cloud for the whole cluster, so runs alone, after the parallel suites",
    "zone_policy": "zone_policy(name): the driver zone policy the test needs when not the default (topology); "
                   "such tests run last in their session, grouped by policy",
}
_PREVIOUS_SIGTERM = pytest.StashKey[object]()


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    # CI runners and `timeout` send SIGTERM: treat it like Ctrl-C so fixture teardown
    # (cluster down, namespace deletion, disks) still runs.
    raise KeyboardInterrupt


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_sessionfinish(session: pytest.Session) -> None:
    previous = session.config.stash.get(_PREVIOUS_SIGTERM, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need another zone policy than the default run last, grouped by policy
    (the sort is stable), so a session redeploys the driver once per policy at most and
    first uses the deployment it may find running."""
    def policy(item: pytest.Item) -> str:
        marker = item.get_closest_marker("zone_policy")
        return marker.args[0] if marker else ""
    items.sort(key=policy)
