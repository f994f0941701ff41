"""What a running test attaches to its allure result: pictures drawn from what it recorded
(a no-op outside an allure run)."""

from __future__ import annotations

import allure

from zoneproof import tally
from zoneproof.report import zonemap


def record_verdict(verdict) -> None:
    """Count and record a placement verdict (zoneproof.tally), and attach its zone map."""
    plain = tally.record(verdict)
    allure.attach(zonemap.zone_map(plain), name="zone map", attachment_type=allure.attachment_type.SVG)
