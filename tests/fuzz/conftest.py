"""Hypothesis profiles of the fuzz suite.

``default``: a few hundred examples over the whole suite (well under a minute);
``slow``: thousands, selected with ``HYPOTHESIS_PROFILE=slow`` (or pytest's
``--hypothesis-profile=slow``)::

    HYPOTHESIS_PROFILE=slow OMP_NUM_THREADS=1 pytest tests/fuzz
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "derandomize": False,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture]}
settings.register_profile("default", max_examples=25, **_COMMON)
settings.register_profile("slow", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
