"""Shared pytest configuration.

Hypothesis profiles: ``default`` (CI-sized) and ``long`` (the marked long-running
jobs; select with ``HYPOTHESIS_PROFILE=long``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
