"""snapper: forensic snapshots of Docker overlay2 storage, diffed over time with DuckDB."""

from __future__ import annotations

__version__ = "0.1.0"
