"""How many examples a property test draws: the number written beside it under
Hypothesis's default profile (``make test``), scaled down under the ``quick`` profile
that ``make unit`` loads (registered in the root conftest.py)."""

from __future__ import annotations

from hypothesis import settings

DEFAULT_MAX_EXAMPLES = 100  # Hypothesis's own default, which the written numbers are relative to


def examples(written: int) -> int:
    return max(10, written * settings.default.max_examples // DEFAULT_MAX_EXAMPLES)
