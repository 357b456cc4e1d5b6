"""Hypothesis profiles and shared test helpers.

Profiles (select with HYPOTHESIS_PROFILE=name):
- ``ci`` (default): bounded examples, no deadline, derandomized (same examples every run), prints
  a ``@reproduce_failure`` blob for each failure.
- ``dev``: more examples, random seeds.
- ``fuzz``: long local fuzzing runs.
With ``dev`` and ``fuzz``, failing examples are saved in ``.hypothesis/examples`` and replayed
first on the next run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_database = DirectoryBasedExampleDatabase(os.path.join(os.path.dirname(__file__), "..", ".hypothesis", "examples"))
_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])

# derandomized: a CI failure reproduces with the same seed, and its blob replays it exactly
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, **_common)
settings.register_profile("dev", max_examples=200, database=_database, **_common)
settings.register_profile("fuzz", max_examples=5000, database=_database, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
