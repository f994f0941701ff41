"""Root pytest configuration: shared fixtures for the suites and the project's tests."""

import signal

pytest_plugins = ["fixtures.cluster", "fixtures.namespaces"]


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    # CI runners and `timeout` send SIGTERM: treat it like Ctrl-C so fixture teardown
    # (cluster down, namespace deletion) still runs.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
