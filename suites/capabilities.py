"""Skips by capability: a case the driver under test cannot support is skipped with the
capability named (the profile's), never silently."""

from __future__ import annotations

import pytest

from zoneproof.profile import DriverProfile


def require_scheme(profile: DriverProfile, scheme: str) -> None:
    """Skip a case whose StorageClass scheme the profile does not declare."""
    if scheme not in profile.storage_classes:
        pytest.skip(f"profile {profile.name!r} has no StorageClass for scheme {scheme!r} "
                    f"(storage_classes: {', '.join(profile.storage_classes)})")
