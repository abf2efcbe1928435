"""pyspark for the Spark tests: skipped where it is not installed, except under CI=true, where the [test]
extra installs it and its absence is a failure (the Spark path must really run in CI)."""

from __future__ import annotations

import os
from types import ModuleType

import pytest


def require_pyspark() -> ModuleType:
    if os.environ.get("CI") == "true":
        import pyspark
        import pyspark.sql

        return pyspark
    return pytest.importorskip("pyspark")
