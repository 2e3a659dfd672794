"""Shared pytest configuration.

Hypothesis profiles: ``default`` (CI-sized), ``long`` (the marked long-running
jobs; select with ``HYPOTHESIS_PROFILE=long``) and ``mutation`` (``default`` without
shrinking, for ``benchmarks/mutation/run.py``).  Under CI (``CI`` set) the default
profile is derandomized and keeps no example database, so a clean checkout runs the
same examples every time: a red CI is a real failure, never a lucky draw.  Locally
the examples are random and failures are remembered in ``.hypothesis/``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_IN_CI = bool(os.environ.get("CI"))

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=_IN_CI,
    database=None if _IN_CI else settings.default.database,
)
settings.register_profile(
    "long", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
# mutation testing (benchmarks/mutation/run.py): the default profile without the shrink
# phase, so a mutant a property test kills is reported as soon as an example fails
# instead of after minutes of shrinking; which mutants are killed does not change
settings.register_profile(
    "mutation",
    parent=settings.get_profile("default"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
