"""The built-in sample snapshot: collected by snapper from a real dockerd 20.10 with real leaks.

Re-record it with ``cd tests && python3 -m integration.record_demo ../snapper/demo/sample``.
"""

from __future__ import annotations

from pathlib import Path


def sample_path() -> Path:
    return Path(__file__).resolve().parent / "sample"
