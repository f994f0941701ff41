"""The project's own test markers, by the resource a test needs; ``make unit`` runs the
tests that need none of them. Only the project's tests use these: the markers a driver
team's pytest sees are the scheduling ones of the public plugin (zoneproof.pytest_plugin)."""

from __future__ import annotations

import pytest
from hypothesis import settings

# make unit's property tests: a quarter of the examples make test draws (tests/examples.py).
settings.register_profile("quick", max_examples=25)

RESOURCE_MARKERS = {
    "cluster": "needs a real cluster (started once per test session)",
    "kind": "runs a kind cluster: node containers with real kubelets (Docker, built node image)",
    "toolchain": "builds or runs the Go tools zoneproof pins (a Go toolchain, minutes cold)",
    "packaging": "builds the wheels and installs them into a fresh virtualenv (uv)",
    "browser": "opens the report in a headless Chromium (Playwright)",
    "driver": "runs the reference driver's processes against a fake ECS (seconds each)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in RESOURCE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
